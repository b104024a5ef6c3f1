"""The feature benchmarks run in --quick mode and write the JSON fields their readers use (no speed assertions)."""

from __future__ import annotations

import importlib.util
import json

from conftest import REPO


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_features_quick_writes_ratios(tmp_path):
    out = tmp_path / "features.json"
    assert _load("bench_features").main(["--quick", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert [r["config"]["n_channels"] for r in res["runs"]] == [64, 256]
    for run in res["runs"]:
        m = run["methods"]["closedloop sliding_dft + all quality checks"]
        assert m["median_us"] > 0 and m["ratio_vs_scipy_welch"] > 0
        assert run["methods"]["scipy welch"]["ratio_vs_scipy_welch"] == 1.0
    assert set(res["summary"]) == {"64ch@1000Hz", "256ch@2000Hz"}


def test_quality_calibration_quick_reports_flag_rates(tmp_path):
    out = tmp_path / "quality.json"
    assert _load("quality_calibration").main(["--quick", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["defaults"]["amplitude_uV"] > 0
    for name, entry in res["recordings"].items():  # whichever recordings this machine has
        assert set(entry["after"]) >= {"ARTIFACT", "FLAT", "NONFINITE", "EMG", "GAP", "SATURATION", "any"}, name
    assert "eegmat" in res["recordings"] or "eegmat" in res["skipped"]
