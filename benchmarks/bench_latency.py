"""Loop latency against the LSL transport floor, measured in the same run.

A synthetic EEG outlet runs in another process (``closedloop synth``, chunks of
10 samples). For each configuration this script first measures the
*transport floor* — a passthrough pylsl consumer of the same stream (pull
time minus the newest sample's time) — then runs the full closedloop pipeline
(band power on every channel, threshold controller, safety layer, simulated
adapter) on that stream with :class:`closedloop.live.runtime.LiveSession`, whose
in-product telemetry gives the loop latency (command issue time minus the
frame time it was based on) and the per-stage times.

Usage::

    python benchmarks/bench_latency.py [--duration 60] [--configs 64x1000,256x2000] [--json out.json]

``--publish-compare`` instead runs :func:`compare_publish`: the loop latency
with the session's LSL publishing (``[output] publish``, on by default) on
and off, alternated on one stream (docs/dashboard.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np

from closedloop.lslconfig import configure_lsl

configure_lsl()

import pylsl  # noqa: E402

from closedloop.config import load_pipeline  # noqa: E402
from closedloop.live.runtime import LiveSession  # noqa: E402
from closedloop.synthetic.eeg import standard_channel_names  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHUNK = 10

PIPELINE = """
[pipeline]
name = "bench_latency"

[source]
kind = "lsl"
name = "{name}"
source_id = "{name}"
sfreq = {rate}
n_channels = {channels}
resolve_timeout_s = 10.0

[features]
channels = {picks}
combine = "each"
window_samples = {rate}
hop_samples = {hop}
bands = {{ theta = [4.0, 8.0], alpha = [8.0, 13.0] }}
ratios = {{}}
log10 = true
{method}

[controller]
kind = "threshold"
feature = "alpha_O1"
lower = 1.0
upper = 1.5
amplitude_mA = 1.0
frequency_Hz = 10.0

[device]
profile = "{profile}"
"""


def stats_ms(x_s: np.ndarray) -> dict[str, float]:
    x = np.asarray(x_s) * 1e3
    return {
        "median_ms": float(np.median(x)),
        "p99_ms": float(np.percentile(x, 99)),
        "max_ms": float(x.max()),
        "n": int(x.size),
    }


def measure_floor(name: str, channels: int, duration: float) -> np.ndarray:
    """Passthrough consumer: for every pull, local_clock() minus the newest sample's (corrected) time."""
    info = pylsl.resolve_bypred(f"source_id='{name}'", 1, 10.0)[0]
    inlet = pylsl.StreamInlet(info, max_buflen=30, max_chunklen=0, recover=False, processing_flags=0)
    inlet.open_stream(timeout=10.0)
    offset = inlet.time_correction(timeout=5.0)
    buf = np.zeros((4096, channels), dtype=np.float32)
    inlet.flush()
    ages = []
    end = pylsl.local_clock() + duration
    while pylsl.local_clock() < end:
        _, ts = inlet.pull_chunk(timeout=0.05, max_samples=4096, dest_obj=buf, min_samples=1)
        now = pylsl.local_clock()
        if len(ts):
            ages.append(now - (ts[-1] + offset))
    inlet.close_stream()
    return np.array(ages)


def run_config(channels: int, rate: int, duration: float, method: str | None) -> dict:
    name = f"bench-latency-{uuid.uuid4().hex[:8]}"
    synth = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "closedloop",
            "synth",
            "--name",
            name,
            "--source-id",
            name,
            "--channels",
            str(channels),
            "--rate",
            str(rate),
            "--chunk",
            str(CHUNK),
            "--duration",
            str(2 * duration + 60),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        floor = measure_floor(name, channels, duration)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            (tmp / "pipelines").mkdir()
            picks = standard_channel_names(channels)
            text = PIPELINE.format(
                name=name,
                rate=float(rate),
                channels=channels,
                picks=json.dumps(picks),
                hop=CHUNK,
                profile=REPO / "devices" / "sim_tacs.toml",
                method=f'method = "{method}"' if method else "",
            )
            (tmp / "pipelines" / "bench.toml").write_text(text)
            resolved = load_pipeline(tmp / "pipelines" / "bench.toml")
            summary = LiveSession(resolved, duration, tmp / "out", show_status=False).run()
    finally:
        synth.kill()
        synth.wait(10)
    lat = summary["latency_ms"]
    loop = {"median_ms": lat["median"], "p99_ms": lat["p99"], "max_ms": lat["max"], "n": summary["frames"]}
    fl = stats_ms(floor)
    return {
        "config": {
            "channels": channels,
            "rate_hz": rate,
            "chunk": CHUNK,
            "hop": CHUNK,
            "window": rate,
            "features": f"theta+alpha band power on all {channels} channels",
            "method": resolved.config.features.method,
            "duration_s": duration,
        },
        "loop": loop,
        "floor": fl,
        "overhead_median_ms": loop["median_ms"] - fl["median_ms"],
        "stage_ms": summary["stage_ms"],
        "loop_behind": summary["loop_behind"],
    }


def compare_publish(channels: int, rate: int, duration: float, method: str | None, rounds: int) -> dict:
    """Return the loop latency with ``[output] publish`` off and on, alternated ``rounds`` times on one stream.

    Each round runs a session with publishing off, then one with it on, on
    the same synthetic stream, so that a drift in the machine's load falls
    on both; the overhead is the median of the per-round differences of the
    median latencies (and of the 99th percentiles). The sessions with
    publishing on also time the loop thread's own calls into the outputs
    (:class:`closedloop.live.outputs.SessionOutputs`): what the loop spends
    on publishing per chunk, whatever the machine's load.
    """
    from time import perf_counter

    from closedloop.live.outputs import SessionOutputs

    spent = {"on_chunk": [], "on_frames": [], "on_applied": []}

    def timed(name, fn):
        def wrapper(self, *a, **k):
            t0 = perf_counter()
            fn(self, *a, **k)
            spent[name].append(perf_counter() - t0)

        return wrapper

    name = f"bench-publish-{uuid.uuid4().hex[:8]}"
    total = rounds * 2 * (duration + 30) + 60
    args = ["--name", name, "--source-id", name, "--channels", str(channels), "--rate", str(rate)]
    args += ["--chunk", str(CHUNK), "--duration", str(total)]
    synth = subprocess.Popen(
        [sys.executable, "-m", "closedloop", "synth", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    try:
        if not pylsl.resolve_bypred(f"source_id='{name}'", 1, 60.0):
            raise RuntimeError(f"the synthetic stream {name} did not appear")
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            (tmp / "pipelines").mkdir()
            text = PIPELINE.format(
                name=name,
                rate=float(rate),
                channels=channels,
                picks=json.dumps(standard_channel_names(channels)),
                hop=CHUNK,
                profile=REPO / "devices" / "sim_tacs.toml",
                method=f'method = "{method}"' if method else "",
            )
            (tmp / "pipelines" / "bench.toml").write_text(text)
            for r in range(rounds):
                for flag in ("off", "on"):
                    resolved = load_pipeline(tmp / "pipelines" / "bench.toml", {"output.publish": flag == "on"})
                    originals = {n: getattr(SessionOutputs, n) for n in spent}
                    if flag == "on":
                        for n, fn in originals.items():
                            setattr(SessionOutputs, n, timed(n, fn))
                    try:
                        summary = LiveSession(resolved, duration, tmp / f"{flag}{r}", show_status=False).run()
                    finally:
                        for n, fn in originals.items():
                            setattr(SessionOutputs, n, fn)
                    lat = summary["latency_ms"]
                    runs[flag].append({"median_ms": lat["median"], "p99_ms": lat["p99"], "n": summary["frames"]})
                    print(f"  round {r + 1} publish {flag}: median {lat['median']:.3f} ms, p99 {lat['p99']:.3f} ms")
    finally:
        synth.kill()
        synth.wait(10)
    diff = {k: [on[k] - off[k] for on, off in zip(runs["on"], runs["off"])] for k in ("median_ms", "p99_ms")}
    calls = {
        n: {"median_us": float(np.median(v)) * 1e6, "p99_us": float(np.percentile(v, 99)) * 1e6, "n": len(v)}
        for n, v in spent.items()
        if v
    }
    return {
        "config": {"channels": channels, "rate_hz": rate, "chunk": CHUNK, "duration_s": duration, "rounds": rounds},
        "runs": runs,
        "overhead_median_ms": float(np.median(diff["median_ms"])),
        "overhead_p99_ms": float(np.median(diff["p99_ms"])),
        "loop_calls": calls,
    }


def publish_main(args, method: str | None) -> None:
    """Print (and write with ``--json``) the publishing on/off comparison for the first of ``--configs``."""
    ch, rate = (int(v) for v in args.configs.split(",")[0].lower().split("x"))
    print(f"# publish on/off: {ch} channels at {rate} Hz, {args.rounds} rounds of {args.duration:g} s each ...")
    r = compare_publish(ch, rate, args.duration, method, args.rounds)
    print(
        f"\nmachine: {platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores, "
        f"Python {platform.python_version()}, pylsl {pylsl.__version__}"
    )
    for flag in ("off", "on"):
        med = np.median([x["median_ms"] for x in r["runs"][flag]])
        p99 = np.median([x["p99_ms"] for x in r["runs"][flag]])
        print(f"publish {flag:<4} median {med:.3f} ms  p99 {p99:.3f} ms  (median over rounds)")
    print(
        f"overhead: median {r['overhead_median_ms']:+.3f} ms, p99 {r['overhead_p99_ms']:+.3f} ms "
        "(on - off, median over rounds)"
    )
    for name, c in r["loop_calls"].items():
        print(f"loop thread in SessionOutputs.{name}: median {c['median_us']:.1f} µs, p99 {c['p99_us']:.1f} µs")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
        print(f"wrote {args.json}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds per phase (floor, loop)")
    ap.add_argument("--configs", default="64x1000,256x2000", help="CHANNELSxRATE,...")
    ap.add_argument("--method", default="auto", help="feature method (auto: fastest available)")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--publish-compare", action="store_true", help="compare [output] publish on and off instead")
    ap.add_argument("--rounds", type=int, default=3, help="--publish-compare: off/on rounds")
    args = ap.parse_args()
    method = args.method
    if method == "auto":
        from closedloop.config.features import FeaturesConfig

        allowed = FeaturesConfig.model_fields["method"].annotation.__args__
        method = next((m for m in ("sliding_dft", "iir", "periodogram", "welch") if m in allowed), None)
    if args.publish_compare:
        publish_main(args, method)
        return
    results = []
    for cfg in args.configs.split(","):
        ch, rate = (int(v) for v in cfg.lower().split("x"))
        print(f"# {ch} channels at {rate} Hz, chunks of {CHUNK}, {args.duration:g} s per phase ...", flush=True)
        results.append(run_config(ch, rate, args.duration, method))
    print(
        f"\nmachine: {platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores, "
        f"Python {platform.python_version()}, pylsl {pylsl.__version__}"
    )
    print(f"{'config':<16}{'':8}{'median ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for r in results:
        c = r["config"]
        label = f"{c['channels']}ch@{c['rate_hz']}Hz"
        for key in ("floor", "loop"):
            m = r[key]
            print(f"{label:<16}{key:<8}{m['median_ms']:>10.3f}{m['p99_ms']:>10.3f}{m['max_ms']:>10.3f}")
        print(
            f"{label:<16}{'overhead':<8}{r['overhead_median_ms']:>10.3f}   (median loop - median floor; "
            f"method {c['method']}; behind {r['loop_behind']}x)"
        )
        stages = "  ".join(f"{k}={v['median']:.3f}" for k, v in r["stage_ms"].items())
        print(f"{'':16}stages  {stages}  (median ms)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
