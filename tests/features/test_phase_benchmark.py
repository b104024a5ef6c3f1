"""bench_phase runs in --quick mode and writes the JSON fields its readers (README renderer) use; no speed asserts."""

from __future__ import annotations

import importlib.util
import json

from conftest import REPO


def test_bench_phase_quick_writes_every_estimator_and_the_table(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_phase", REPO / "benchmarks" / "bench_phase.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "phase.json"
    assert bench.main(["--quick", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["benchmark"] == "phase" and res["published"]
    assert "eegmat" in res["datasets"] or "eegmat" in res["skipped"]  # whichever this machine has
    synthetic = res["datasets"]["synthetic"]["channels"]["10 Hz"]["estimators"]
    assert set(synthetic) == {"ar", "etp", "echt", "offline"}
    for name, m in synthetic.items():
        assert len(m["accuracy_by_amplitude_tercile_pct"]) == 3 and m["n"] > 1000
        # on a known-phase signal every real-time estimator is far better than chance (50 %)
        assert m["accuracy_pct"] > 80.0, name
    assert all(m["us_per_estimate"] > 0 for n, m in synthetic.items() if n != "offline")
    table = res["table"]
    assert all(len(r) == len(table["columns"]) for r in table["rows"])
    assert bench.markdown(table).count("\n") == len(table["rows"]) + 1
