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
        assert run["methods"]["closedloop sliding_dft + all quality checks, one dead channel"]["median_us"] > 0
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


def test_bench_pain_features_quick_reports_agreement_and_cost(tmp_path):
    out = tmp_path / "pain.json"
    assert _load("bench_pain_features").main(["--quick", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    for mode in ("fixed", "knee"):
        r = res[mode]
        assert r["windows"] > 0 and 0 <= r["exponent_abs_diff"]["within_0.05"] <= 1
        assert r["fit_us"]["closedloop"]["median"] > 0 and r["fit_us"]["specparam"]["median"] > 0
    assert res["update"]["median_us"] > 0 and res["update"]["bins"] > 10
    assert set(res["step"]) == {"band power only", "+ aperiodic, IAF, expressions"}
    assert res["paf"]["cog_vs_plain_welch_same_windows_max_hz"] >= 0
