"""Accuracy and cost of closedloop's real-time phase estimators, against the offline phase and a known phase.

Issue 16. For every estimator of :mod:`closedloop.features.phase` (``ar``: AR
forward prediction, Zrenner et al. 2018; ``etp``: educated temporal
prediction, Shirinpour et al. 2020; ``echt``: endpoint-corrected Hilbert
transform, Schreglmann et al. 2021, calibrated after Osmers & Kolossa 2026),
run causally on the sample clock exactly as in a session (window 0.5 s, a
frame every 10 ms, the defaults of ``[features.phase]``), the phase at each
frame's newest sample is compared with a reference:

- ``eegmat``: the shared real resting recording (PhysioNet EEG During Mental
  Arithmetic, Zyma et al. 2019, subject 00, 182 s at 500 Hz;
  ``../shared/data/eegmat_subject00_rest.edf`` or ``--edf``), posterior alpha
  8–13 Hz at O2 and at a Hjorth Laplacian around Pz (minus the mean of P3,
  P4, O1, O2). Reference: the offline, acausal phase — a zero-phase FIR
  band-pass over the whole recording (MNE's default design) and the Hilbert
  transform. Skipped, with the reason, when the file is absent.
- ``synthetic``: a 9.5–10.5 Hz oscillation, amplitude-modulated, in 1/f-like
  noise, whose phase is known exactly (the reference); the offline phase's
  own error against it is reported as the ``offline`` row.

Estimates are compared from 60 s on (after ETP's calibration block) to 1 s
before the end. Per estimator: circular mean error (°), circular standard
deviation (°, sqrt(-2 ln R)), accuracy = mean of 1 - |error|/π (%), the
accuracy by tercile of the reference amplitude, and µs per estimate (the
stage's time over the recording divided by the frames, kernels compiled
beforehand: phase, amplitude, frequency and SNR).

``--e2e`` adds the end-to-end figure: ``closedloop play`` publishes the
recording over LSL in real time, a live phase-triggered session (trough of
O2 alpha, ``pipelines/phase_alpha_play.toml``, ecHT) fires single pulses
through a timestamping adapter — the TTL adapter on pyserial's ``loop://``
port, which stamps each edge on the local clock from its own thread
(default), or the simulated stimulator (``--e2e-adapter sim``) — and the
phase at which each pulse actually occurred is read from the offline phase
of the EEG the session recorded, at the pulse time: every real delay
(transport, loop, adapter thread) is in it. It runs for ``--e2e-s``
seconds (real time).

    python benchmarks/bench_phase.py [--quick] [--json PATH] [--markdown] [--e2e] [--e2e-s S] [--readme README.md]
    python benchmarks/bench_phase.py --render benchmarks/results/phase.json --readme README.md

Prints the table; ``--json`` writes ``{"benchmark": "phase", "config",
"datasets": {name: {"reference", "channels": {channel: {"estimators":
{name: metrics}}}}}, "e2e", "published", "table": {"columns", "rows"}}``
(``table`` is what a README renderer prints; ``--markdown`` prints it as
Markdown; ``--readme`` rewrites the ``<!-- bench:phase -->`` block of a file).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from scipy import signal

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from closedloop.config.features import PhaseConfig  # noqa: E402
from closedloop.features.phase import PhaseEstimator  # noqa: E402

EDF = REPO.parent / "shared" / "data" / "eegmat_subject00_rest.edf"
BAND = (8.0, 13.0)
WINDOW_S = 0.5
HOP = 5  # 10 ms at 500 Hz
EVAL_FROM_S = 60.0
ESTIMATORS = ("ar", "etp", "echt")

#: Published figures on comparable data, each with its source (docs/phase.md discusses them).
PUBLISHED = [
    {
        "method": "PEAP (AR padding)",
        "figure": "median accuracy 84.6 %",
        "data": "72 participants (young and elderly controls, stroke patients), Laplacian around the motor hot spot, "
        "mu 9-13 Hz",
        "source": "Phase Estimation with Autoregressive Padding (PEAP), arXiv:2604.02212 (2026), abstract",
    },
    {
        "method": "ETP vs AR and FFT",
        "figure": "ETP more accurate than AR and FFT prediction, in silico and in real time",
        "data": "prerecorded resting EEG and real-time experiments, with short prerecorded training data",
        "source": "Shirinpour et al. 2020, J Neural Eng 17:046002 (PMC8293904), abstract",
    },
    {
        "method": "calibrated ecHT",
        "figure": "near-zero mean phase error after calibration",
        "data": "analysis and simulations",
        "source": "Osmers & Kolossa 2026, arXiv:2601.13962, abstract",
    },
]


# -- data -----------------------------------------------------------------------------------------


def load_eegmat(path: Path) -> tuple[float, dict[str, np.ndarray]]:
    """Return (sfreq, {"O2": µV, "Pz-Laplacian": µV}) of the shared recording."""
    import mne

    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    fs = float(raw.info["sfreq"])
    d = {name.replace("EEG ", ""): raw.get_data(picks=[name])[0] * 1e6 for name in raw.ch_names}
    lap = d["Pz"] - np.mean([d["P3"], d["P4"], d["O1"], d["O2"]], axis=0)
    return fs, {"O2": d["O2"], "Pz-Laplacian": lap}


def synthetic(seconds: float, fs: float = 500.0, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Return (signal µV, known phase rad): 9.5-10.5 Hz, amplitude 5-15 µV, 1/f-like noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    freq = 10.0 + 0.5 * np.sin(2 * np.pi * 0.05 * t)
    phase = np.cumsum(2 * np.pi * freq / fs)
    amp = 10.0 * (1 + 0.5 * np.sin(2 * np.pi * 0.1 * t))
    noise = signal.lfilter([1.0], [1.0, -0.95], rng.standard_normal(t.size)) * 2.0
    return amp * np.cos(phase) + noise, np.angle(np.exp(1j * phase))


def offline_phase(x: np.ndarray, fs: float, band: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Return the offline (acausal) phase and amplitude: zero-phase FIR band-pass, Hilbert transform."""
    import mne

    y = mne.filter.filter_data(x[None, :] - x.mean(), fs, band[0], band[1], phase="zero", verbose="error")[0]
    z = signal.hilbert(y)
    return np.angle(z), np.abs(z)


# -- estimation -----------------------------------------------------------------------------------


def estimate(x: np.ndarray, fs: float, cfg: PhaseConfig) -> tuple[np.ndarray, np.ndarray, float]:
    """Run one estimator causally over ``x`` in 20-ms chunks; return (frames (k, 4), frame samples, µs/estimate)."""
    window = int(round(WINDOW_S * fs))
    warm = PhaseEstimator("b", cfg, fs, 1, window, HOP)  # compile outside the timing
    warm.process(np.ascontiguousarray(x[: window + HOP, None]), np.zeros((2, 1, 4)), 0)
    est = PhaseEstimator("b", cfg, fs, 1, window, HOP)
    xx = np.ascontiguousarray(x[:, None])
    out = np.full((xx.shape[0] // HOP + 2, 1, 4), np.nan)
    tmp = np.full((64, 1, 4), np.nan)
    step = int(round(0.02 * fs))
    k = 0
    spent = 0.0
    for a in range(0, xx.shape[0], step):
        t0 = time.perf_counter_ns()
        got = est.process(xx[a : a + step], tmp, 0)
        spent += time.perf_counter_ns() - t0
        out[k : k + got] = tmp[:got]
        k += got
    return out[:k, 0, :], window - 1 + HOP * np.arange(k), spent / 1e3 / max(k, 1)


def metrics(est_phase: np.ndarray, ref_phase: np.ndarray, ref_amp: np.ndarray) -> dict:
    """Circular mean error, circular SD, accuracy overall and by reference-amplitude tercile."""
    ok = np.isfinite(est_phase)
    err = np.angle(np.exp(1j * (est_phase[ok] - ref_phase[ok])))
    z = np.mean(np.exp(1j * err))
    acc = 1 - np.abs(err) / np.pi
    edges = np.quantile(ref_amp, [1 / 3, 2 / 3])
    tercile = np.digitize(ref_amp[ok], edges)
    return {
        "n": int(ok.sum()),
        "valid_fraction": float(ok.mean()),
        "mean_error_deg": float(np.degrees(np.angle(z))),
        "circular_sd_deg": float(np.degrees(np.sqrt(-2 * np.log(np.abs(z))))),
        "accuracy_pct": float(100 * acc.mean()),
        "accuracy_by_amplitude_tercile_pct": [float(100 * acc[tercile == i].mean()) for i in range(3)],
    }


def evaluate(x: np.ndarray, fs: float, ref_phase: np.ndarray, ref_amp: np.ndarray) -> dict:
    """Metrics and cost of every estimator on one channel."""
    out = {}
    for name in ESTIMATORS:
        cfg = PhaseConfig(band=BAND, estimator=name, window_s=WINDOW_S)
        frames, idx, us = estimate(x, fs, cfg)
        use = (idx >= EVAL_FROM_S * fs) & (idx < x.size - fs)
        m = metrics(frames[use, 0], ref_phase[idx[use]], ref_amp[idx[use]])
        m["us_per_estimate"] = us
        out[name] = m
    return out


# -- end to end over LSL --------------------------------------------------------------------------


def live_phase_session(
    recording: Path,
    seconds: float,
    out_dir: Path,
    adapter: str = "sim",
    pipeline: Path = REPO / "pipelines" / "phase_alpha_play.toml",
    overrides: dict | None = None,
) -> tuple[dict, list[float], object]:
    """Play ``recording`` with ``closedloop play`` and run a live phase-triggered session on it.

    ``adapter``: ``"sim"`` (the simulated stimulator: a pulse at the moment its command is applied) or
    ``"ttl"`` (the TTL adapter on pyserial's ``loop://`` port: a pulse when its thread raises the line).
    Returns (summary, pulse times on the local clock, the resolved pipeline).
    """
    import tomllib

    from closedloop.config import load_pipeline
    from closedloop.live.runtime import LiveSession
    from closedloop.lslconfig import configure_lsl

    configure_lsl()
    name = f"bench-phase-{uuid.uuid4().hex[:8]}"
    over = {"source.name": name, "source.resolve_timeout_s": 60.0, **(overrides or {})}
    if adapter == "ttl":  # the shipped TTL profile, its port replaced by pyserial's loopback
        profile = tomllib.loads((REPO / "devices" / "ttl_trigger.toml").read_text())
        profile["adapter_options"]["port"] = "loop://"
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "ttl_loop.toml"
        path.write_text(_toml(profile))
        over["device.profile"] = str(path)
    resolved = load_pipeline(pipeline, over)
    player = subprocess.Popen(
        [sys.executable, "-m", "closedloop", "play", str(recording), "--name", name, "--wait-consumer", "120"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        session = LiveSession(resolved, seconds, out_dir / "session", show_status=False)
        summary = session.run()
        dev = session.adapter
        pulses = list(dev.pulse_times) if adapter == "ttl" else [t for t, *_ in dev.trains]
    finally:
        player.terminate()
        player.wait(timeout=30)
    return summary, pulses, resolved


def _toml(doc: dict) -> str:
    """Write a device profile's dict back as TOML (tables of scalars, as profiles are)."""
    lines = []
    for section, body in doc.items():
        tables = {k: v for k, v in body.items() if isinstance(v, dict)}
        if len(tables) < len(body):
            lines.append(f"[{section}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in body.items() if not isinstance(v, dict)]
        for key, table in tables.items():
            lines.append(f"[{section}.{key}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def pulse_phases(session_xdf: Path, pulses: list[float], channel: str, band: tuple[float, float], target_deg: float):
    """Return the offline phase (rad) at each pulse and the pulses' metrics against ``target_deg``.

    The reference is computed on the EEG the session recorded (its raw LSL stamps are on this machine's
    clock, as are the pulse times); pulses within 2 s of either end (filter edges) are left out.
    """
    from closedloop.recording.reader import XDFReader

    reader = XDFReader(session_xdf)
    [eeg] = reader.find(type="EEG")
    values, stamps = reader.read_stream(eeg.stream_id)
    fs = eeg.nominal_srate
    x = np.asarray(values[:, eeg.ch_names.index(channel)], dtype=float)
    ref_phase, _ = offline_phase(x, fs, band)
    inside = np.array([p for p in pulses if stamps[0] + 2.0 < p < stamps[-1] - 2.0])
    at = np.interp(inside, stamps, np.unwrap(ref_phase)) if inside.size else np.zeros(0)
    err = np.angle(np.exp(1j * (at - np.radians(target_deg))))
    z = np.mean(np.exp(1j * err)) if err.size else np.nan
    return at, {
        "pulses": int(err.size),
        "target_deg": target_deg,
        "phases_deg": [float(v) for v in np.degrees(np.angle(np.exp(1j * at))) % 360.0],
        "mean_error_deg": float(np.degrees(np.angle(z))) if err.size else None,
        "circular_sd_deg": float(np.degrees(np.sqrt(-2 * np.log(np.abs(z))))) if err.size > 1 else None,
        "accuracy_pct": float(100 * np.mean(1 - np.abs(err) / np.pi)) if err.size else None,
    }


def pulse_timing(session_xdf: Path, adapter: str) -> dict:
    """Return how far each pulse came from the time the controller predicted for it (ms) and the delays used.

    The predicted time is the fire's ``note_pulse_time``; the actual one the TTL edge in the device I/O
    stream (``ttl``) or the applied command's issue time (``sim``: the simulated stimulator fires then).
    """
    from closedloop.recording.reader import XDFReader
    from closedloop.recording.session import APPLIED_EXTRA_STREAM, DEVICE_IO_STREAM

    reader = XDFReader(session_xdf)
    [extra] = reader.find(name=APPLIED_EXTRA_STREAM)
    fires = [(t, json.loads(v[0])) for v, t in zip(extra.strings, extra.string_stamps) if '"fire": true' in v[0]]
    if adapter == "ttl":
        [io] = reader.find(name=DEVICE_IO_STREAM)
        actual = [t for v, t in zip(io.strings, io.string_stamps) if '"pulse 1/' in v[0]]
    else:
        actual = [t for t, _doc in fires]
    err = np.array([1e3 * (a - doc["note_pulse_time"]) for a, (_t, doc) in zip(actual, fires)])
    delay = np.array([1e3 * doc["note_delay_s"] for _t, doc in fires])
    if not err.size:
        return {}
    return {
        "pulse_time_error_ms": {"median": float(np.median(err)), "max_abs": float(np.max(np.abs(err)))},
        "predicted_over_ms": {"median": float(np.median(delay)), "max": float(np.max(delay))},
    }


def end_to_end(edf: Path, seconds: float, adapter: str) -> dict:
    """Return the end-to-end figure: the phase at which each delivered pulse actually occurred."""
    out = Path(tempfile.mkdtemp(prefix="bench-phase-"))
    summary, pulses, resolved = live_phase_session(edf, seconds, out, adapter)
    ctl = resolved.config.controller
    _, m = pulse_phases(out / "session" / "session.xdf", pulses, "EEG O2", BAND, ctl.target_deg)
    m.update(pulse_timing(out / "session" / "session.xdf", adapter))
    lat = summary.get("latency_ms") or {}
    age = summary.get("data_age_ms") or {}
    m.update(
        adapter=adapter,
        session_s=seconds,
        stop_reason=summary.get("stop_reason"),
        delivered=len(pulses),
        loop_latency_ms={k: lat.get(k) for k in ("median", "p99")},
        data_age_ms={k: age.get(k) for k in ("median", "p99")},
        min_amplitude_uV=ctl.min_amplitude_uV,
        hop_samples=resolved.config.features.hop_samples,
    )
    return m


# -- report ----------------------------------------------------------------------------------------

COLUMNS = [
    "data",
    "reference",
    "estimator",
    "mean error (°)",
    "circular SD (°)",
    "accuracy (%)",
    "accuracy low / mid / high amplitude (%)",
    "µs / estimate",
]


def table(result: dict) -> dict:
    """Return the rows a README renderer prints (per data set, channel and estimator; then the end-to-end row)."""
    rows = []
    for dname, d in result["datasets"].items():
        for ch, c in d["channels"].items():
            for est, m in c["estimators"].items():
                terc = " / ".join(f"{v:.1f}" for v in m["accuracy_by_amplitude_tercile_pct"])
                us = f"{m['us_per_estimate']:.1f}" if "us_per_estimate" in m else "–"
                rows.append(
                    [
                        f"{dname} {ch}",
                        d["reference"],
                        est,
                        f"{m['mean_error_deg']:+.1f}",
                        f"{m['circular_sd_deg']:.1f}",
                        f"{m['accuracy_pct']:.1f}",
                        terc,
                        us,
                    ]
                )
    e2e = result.get("e2e")
    if e2e and e2e.get("pulses"):
        device = "TTL on loop://" if e2e["adapter"] == "ttl" else "simulated rTMS"
        rows.append(
            [
                f"eegmat O2 played over LSL, live ({e2e['pulses']} pulses)",
                "offline phase at each delivered pulse",
                f"echt → phase trigger (trough) → {device}",
                f"{e2e['mean_error_deg']:+.1f}",
                f"{e2e['circular_sd_deg']:.1f}",
                f"{e2e['accuracy_pct']:.1f}",
                "–",
                "–",
            ]
        )
    return {"columns": COLUMNS, "rows": rows}


def markdown(tab: dict) -> str:
    """Render a table as GitHub Markdown."""
    lines = ["| " + " | ".join(tab["columns"]) + " |", "|" + "---|" * len(tab["columns"])]
    lines += ["| " + " | ".join(r) + " |" for r in tab["rows"]]
    return "\n".join(lines)


#: The README block this benchmark owns: everything between these two lines is rewritten by ``--readme``.
README_MARKERS = ("<!-- bench:phase -->", "<!-- /bench:phase -->")


def readme_block(result: dict) -> str:
    """Return the README's phase block: the table, then the published figures it is compared with."""
    lines = [
        f"`{result['command']}` ({result['machine']['platform']}, Python {result['machine']['python']}):",
        "",
        markdown(result["table"]),
        "",
    ]
    e2e = result.get("e2e") or {}
    if e2e.get("pulse_time_error_ms"):
        t, over = e2e["pulse_time_error_ms"], e2e["predicted_over_ms"]
        lines += [
            f"End to end: {e2e['pulses']} pulses in {e2e['session_s']:g} s; each came {t['median']:.2f} ms (median; "
            f"at most {t['max_abs']:.1f} ms) from the time the controller predicted for it, a prediction over "
            f"{over['median']:.1f} ms (median: mostly the wait of a chunk's older frames in the player's 20-ms "
            f"chunks, which also makes the chances to fire 20 ms apart, ±{180 * 10.5 * 0.02:.0f}° at 10.5 Hz).",
            "",
        ]
    lines += [
        "Published figures on comparable data (docs/phase.md compares them with care):",
        "",
    ]
    lines += [f"- {p['method']}: {p['figure']} — {p['data']} ({p['source']})." for p in result["published"]]
    return "\n".join(lines)


def write_readme(result: dict, path: Path) -> None:
    """Replace the text between :data:`README_MARKERS` in ``path`` with :func:`readme_block`."""
    text = path.read_text()
    start, end = README_MARKERS
    if start not in text or end not in text:
        raise SystemExit(f"{path}: no {start} ... {end} block to fill")
    head, rest = text.split(start, 1)
    _old, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{readme_block(result)}\n{end}{tail}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter synthetic signal, real data cut to 120 s")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--edf", type=Path, default=EDF, help="the shared recording")
    ap.add_argument("--e2e", action="store_true", help="add the end-to-end run over LSL (real time)")
    ap.add_argument("--e2e-s", type=float, default=170.0, help="seconds of the end-to-end session")
    ap.add_argument("--e2e-adapter", choices=["sim", "ttl"], default="ttl", help="the timestamping adapter")
    ap.add_argument("--render", type=Path, help="print (and --readme) a saved JSON result instead of running")
    ap.add_argument("--readme", type=Path, help="rewrite this file's <!-- bench:phase --> block with the table")
    args = ap.parse_args(argv)
    if args.render:
        result = json.loads(args.render.read_text())
        print(readme_block(result))
        if args.readme:
            write_readme(result, args.readme)
        return 0
    result: dict = {
        "benchmark": "phase",
        "title": "Real-time phase estimation: accuracy against the offline phase and a known phase, cost",
        "command": "python benchmarks/bench_phase.py"
        + (" --quick" if args.quick else "")
        + (" --e2e" if args.e2e else ""),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "config": {
            "band_hz": list(BAND),
            "window_s": WINDOW_S,
            "hop_samples": HOP,
            "evaluated_from_s": EVAL_FROM_S,
            "defaults": {e: PhaseConfig(band=BAND, estimator=e).model_dump(exclude_unset=False) for e in ESTIMATORS},
        },
        "datasets": {},
        "skipped": {},
        "e2e": None,
        "published": PUBLISHED,
    }
    if args.edf.exists():
        fs, chans = load_eegmat(args.edf)
        entry = {"reference": "offline zero-phase FIR + Hilbert", "sfreq": fs, "channels": {}}
        for ch, x in chans.items():
            if args.quick:
                x = x[: int(120 * fs)]
            ref_phase, ref_amp = offline_phase(x, fs, BAND)
            entry["channels"][ch] = {"seconds": x.size / fs, "estimators": evaluate(x, fs, ref_phase, ref_amp)}
        result["datasets"]["eegmat"] = entry
    else:
        result["skipped"]["eegmat"] = f"{args.edf} is absent"
    fs = 500.0
    x, known = synthetic(120.0 if args.quick else 240.0, fs)
    _, known_amp = offline_phase(x, fs, BAND)  # terciles of the band's amplitude
    est = evaluate(x, fs, known, known_amp)
    off_phase, _ = offline_phase(x, fs, BAND)
    idx = np.arange(int(EVAL_FROM_S * fs), x.size - int(fs))
    est["offline"] = metrics(off_phase[idx], known[idx], known_amp[idx])
    result["datasets"]["synthetic"] = {
        "reference": "known phase",
        "sfreq": fs,
        "channels": {"10 Hz": {"estimators": est}},
    }
    if args.e2e:
        if args.edf.exists():
            result["e2e"] = end_to_end(args.edf, args.e2e_s, args.e2e_adapter)
        else:
            result["skipped"]["e2e"] = f"{args.edf} is absent"
    result["table"] = table(result)
    tab = result["table"]
    if args.markdown:
        print(markdown(tab))
    else:
        widths = [max(len(str(r[i])) for r in [tab["columns"], *tab["rows"]]) for i in range(len(tab["columns"]))]
        for r in [tab["columns"], *tab["rows"]]:
            print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))
    for name, why in result["skipped"].items():
        print(f"skipped {name}: {why}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    if args.readme:
        write_readme(result, args.readme)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
