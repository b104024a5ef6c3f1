"""Loop latency against the LSL transport floor and against the loops labs write instead, in the same run.

A synthetic EEG outlet runs in another process (``closedloop synth``, chunks of
10 samples). For each configuration (channels x rate) this script measures,
one after the other on that same stream, ``--duration`` seconds each:

- the *transport floor*: a passthrough pylsl consumer (pull time minus the
  newest sample's corrected time);
- closedloop, ``[source] poll = "wait"`` (the default) and ``poll = "busy"``:
  the full pipeline (theta and alpha band power on every channel with the
  default quality checks, threshold controller, safety layer, simulated
  adapter, recording to XDF) run by :class:`closedloop.live.runtime.LiveSession`,
  whose in-product telemetry gives the loop latency (command issue time minus
  the time of the newest sample its frame used) and the time of each stage;
- **mne-lsl**: a ``StreamLSL`` ring buffer (its acquisition thread every 1 ms),
  polled every 1 ms for new samples; on each, ``get_data`` of the 1-s window and
  ``scipy.signal.welch`` (Hann, one 1-s segment) for theta and alpha on every channel;
- **pylsl**: ``pull_chunk`` (waiting in liblsl) into a numpy ring of the 1-s
  window, then the same ``scipy.signal.welch``.

Latency is always "result ready" minus the newest sample's time; compute time
is the work per update after the samples arrived (closedloop: the sum of its
stage medians). closedloop also reports its loop's own share of each command's
latency, from the moment the pull returned to the moment the command was
issued (``in_process``): the loop latency minus the time the sample spent in
transport. Its p99 is what the loop adds at the tail; the total's p99 also
holds the transport's, which on a shared VM is several milliseconds (the
floor's own p99). The ratios (``ratio_vs``) divide the other loop's figure by
closedloop's (default mode): above 1, closedloop is faster.

Usage::

    python benchmarks/bench_latency.py [--quick] [--duration 60] [--configs 64x1000,256x2000] [--json out.json]

``--publish-compare`` instead runs :func:`compare_publish`: the loop latency
with the session's LSL publishing (``[output] publish``, on by default) on
and off, alternated on one stream (docs/dashboard.md).
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from closedloop.lslconfig import configure_lsl, configure_mne_lsl  # noqa: E402

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
poll = "{poll}"

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


BANDS = {"theta": (4.0, 8.0), "alpha": (8.0, 13.0)}


def stats_ms(x_s) -> dict[str, float]:
    """Median, p99 and max (ms) of durations in seconds."""
    x = np.asarray(x_s, dtype=float) * 1e3
    if x.size == 0:
        return {"median_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan"), "n": 0}
    return {
        "median_ms": float(np.median(x)),
        "p99_ms": float(np.percentile(x, 99)),
        "max_ms": float(x.max()),
        "n": int(x.size),
    }


def _inlet(name: str):
    info = pylsl.resolve_bypred(f"source_id='{name}'", 1, 10.0)[0]
    inlet = pylsl.StreamInlet(info, max_buflen=30, max_chunklen=0, recover=False, processing_flags=0)
    inlet.open_stream(timeout=10.0)
    return inlet, inlet.time_correction(timeout=5.0)


def measure_floor(name: str, channels: int, duration: float) -> np.ndarray:
    """Passthrough consumer: for every pull, local_clock() minus the newest sample's (corrected) time."""
    inlet, offset = _inlet(name)
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


class _Welch:
    """What the labs' loops compute on each update: scipy welch (one Hann segment) -> theta, alpha per channel."""

    def __init__(self, rate: int) -> None:
        from scipy import signal

        self.signal, self.rate = signal, rate
        freqs = np.fft.rfftfreq(rate, 1.0 / rate)
        self.masks = {b: (freqs >= lo) & (freqs < hi) for b, (lo, hi) in BANDS.items()}

    def __call__(self, window: np.ndarray, axis: int) -> dict[str, np.ndarray]:
        _, p = self.signal.welch(window, self.rate, window="hann", nperseg=self.rate, axis=axis)
        return {b: np.log10(np.take(p, np.flatnonzero(m), axis=axis).mean(axis=axis)) for b, m in self.masks.items()}


def run_pylsl_loop(name: str, channels: int, rate: int, duration: float) -> dict:
    """Run a lab's plain loop: pull_chunk into a numpy ring of the window, scipy welch on each update."""
    inlet, offset = _inlet(name)
    welch = _Welch(rate)
    buf = np.zeros((4096, channels), dtype=np.float32)
    ring = np.zeros((rate, channels))
    inlet.flush()
    latency, compute = [], []
    end = pylsl.local_clock() + duration
    while pylsl.local_clock() < end:
        _, ts = inlet.pull_chunk(timeout=0.05, max_samples=4096, dest_obj=buf, min_samples=1)
        n = len(ts)
        if not n:
            continue
        t0 = time.perf_counter()
        n = min(n, rate)
        ring = np.roll(ring, -n, axis=0)
        ring[-n:] = buf[len(ts) - n : len(ts)]
        welch(ring, axis=0)
        compute.append(time.perf_counter() - t0)
        latency.append(pylsl.local_clock() - (ts[-1] + offset))
    inlet.close_stream()
    return {"loop": stats_ms(latency), "compute": stats_ms(compute)}


def run_mne_lsl_loop(name: str, rate: int, duration: float, offset: float) -> dict:
    """Run a lab's mne-lsl loop: StreamLSL ring buffer polled every 1 ms, get_data of the window, scipy welch."""
    configure_mne_lsl()
    from mne_lsl.lsl import local_clock
    from mne_lsl.stream import StreamLSL

    welch = _Welch(rate)
    stream = StreamLSL(bufsize=2.0, source_id=name).connect(acquisition_delay=0.001, timeout=10)
    latency, compute = [], []
    try:
        deadline = local_clock() + 10.0
        while stream.n_new_samples < rate and local_clock() < deadline:  # a full window first
            time.sleep(0.01)
        end = local_clock() + duration
        while local_clock() < end:
            if stream.n_new_samples == 0:
                time.sleep(0.001)
                continue
            t0 = time.perf_counter()
            data, ts = stream.get_data(winsize=1.0)  # (channels, times), marks the samples as seen
            welch(data, axis=-1)
            compute.append(time.perf_counter() - t0)
            latency.append(local_clock() - (ts[-1] + offset))
    finally:
        stream.disconnect()
    return {"loop": stats_ms(latency), "compute": stats_ms(compute)}


def write_pipeline(folder: Path, name: str, channels: int, rate: int, method: str | None, poll: str) -> Path:
    """Write the benchmark's pipeline for the stream ``name`` into ``folder``/pipelines; return its path."""
    (folder / "pipelines").mkdir(exist_ok=True)
    path = folder / "pipelines" / "bench.toml"
    text = PIPELINE.format(
        name=name,
        rate=float(rate),
        channels=channels,
        picks=json.dumps(standard_channel_names(channels)),
        hop=CHUNK,
        profile=REPO / "devices" / "sim_tacs.toml",
        method=f'method = "{method}"' if method else "",
        poll=poll,
    )
    path.write_text(text)
    return path


def run_closedloop(name: str, channels: int, rate: int, duration: float, method: str | None, poll: str) -> dict:
    """Run the full closedloop pipeline as a live session on the stream; return its own telemetry."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        resolved = load_pipeline(write_pipeline(tmp, name, channels, rate, method, poll))
        summary = LiveSession(resolved, duration, tmp / "out", show_status=False).run()
    lat = summary["latency_ms"]
    stages = summary["stage_ms"]
    compute = sum(
        (stages[k]["median"] or 0.0)
        for k in ("preprocess", "features", "controller", "safety", "adapter")
        if k in stages
    )
    return {
        "loop": {"median_ms": lat["median"], "p99_ms": lat["p99"], "max_ms": lat["max"], "n": summary["frames"]},
        "in_process": {k + "_ms": summary["in_process_ms"][k] for k in ("median", "p99", "max")},
        "compute": {"median_ms": compute},
        "stage_ms": stages,
        "loop_behind": summary["loop_behind"],
        "method": resolved.config.features.method,
    }


def _spin(n: int) -> float:
    """Run ``n`` dependent multiply-adds in registers (compiled by :func:`measure_pace`): busy, touching nothing."""
    a = 0.0
    for _ in range(n):
        a = a * 0.999999 + 1.0
    return a


def measure_pace(channels: int, rate: int, method: str | None, seconds: float) -> dict:
    """Time the loop's compute per chunk without LSL: back to back, and one chunk per chunk period.

    The pipeline of the live runs drives a simulated device through the
    session driver (no recording, no other thread) on ``seconds`` of
    synthetic EEG in chunks of :data:`CHUNK`, four times: fed back to back;
    fed one chunk per chunk period, sleeping in between like a loop waiting
    for its stream (``at_stream_pace``); fed one chunk per chunk period
    with the thread *computing* in between instead of sleeping — a numba
    loop of register arithmetic, no memory traffic, no system call
    (``at_stream_pace_computing``); and fed one chunk per chunk period with
    a second, identical pipeline (its own state and simulated device) fed
    back to back in between, round and round the same data with its own
    timestamps increasing lap after lap (``at_stream_pace_warm``): the same code runs all the time, only the
    timed pipeline's own state waits. ``ratio``, ``ratio_computing`` and
    ``ratio_warm`` divide each by back to back. The slowdown is in every
    live figure and in no replay figure; the third mode tells whether it
    comes from waking from idle (then ``ratio_computing`` is near 1) or from
    the time between chunks itself (then it is near ``ratio``, and a loop
    cannot avoid it by spinning); the fourth whether that time costs because
    the pipeline's code and the interpreter's state for it go cold in the
    core's caches and predictors (then ``ratio_warm`` is near 1: keeping the
    same code running keeps it fast) or whatever runs in between.
    """
    from time import perf_counter, sleep

    import numba

    from closedloop.adapters.base import Adapter
    from closedloop.adapters.simulated import simulated_adapter
    from closedloop.pipeline import Pipeline
    from closedloop.session.driver import SessionDriver
    from closedloop.synthetic.eeg import SyntheticEEG
    from closedloop.types import Chunk

    with tempfile.TemporaryDirectory() as tmp:
        resolved = load_pipeline(write_pipeline(Path(tmp), "pace", channels, rate, method, "wait"))
    n_chunks = int(seconds * rate) // CHUNK
    warm = rate // CHUNK  # the first second fills the window: no frames yet
    data = SyntheticEEG(n_channels=channels, sfreq=rate, seed=3).generate((warm + n_chunks) * CHUNK)
    stamps = np.arange(data.shape[0]) / rate
    period = CHUNK / rate
    # the "computing" pause: `spin_iterations` steps of a loop-carried multiply-add take one chunk period
    spin = numba.njit(_spin)
    spin(1)
    t0 = perf_counter()
    spin(1_000_000)
    spin_iterations = int(period / ((perf_counter() - t0) / 1_000_000))
    total_chunks = warm + n_chunks

    def new_driver() -> tuple[SessionDriver, Adapter]:
        pipe = Pipeline(resolved, list(standard_channel_names(channels)))
        adapter = simulated_adapter(resolved.profile, clock=time.monotonic)
        adapter.connect()
        adapter.arm()
        driver = SessionDriver(pipe, adapter, time.monotonic, lambda t: t, duration_s=None)
        driver.warmup()
        return driver, adapter

    out: dict[str, dict] = {}
    for mode in ("back_to_back", "at_stream_pace", "at_stream_pace_computing", "at_stream_pace_warm"):
        driver, adapter = new_driver()
        twin, twin_adapter = new_driver() if mode == "at_stream_pace_warm" else (None, None)
        twin_fed = 0
        spent = []
        next_at = perf_counter()
        for k in range(total_chunks):
            rows = slice(k * CHUNK, (k + 1) * CHUNK)
            chunk = Chunk(data[rows], stamps[rows])
            if mode == "at_stream_pace" and k >= warm:
                next_at += period
                pause = next_at - perf_counter()
                if pause > 0:
                    sleep(pause)
            elif mode == "at_stream_pace_computing" and k >= warm:
                spin(spin_iterations)
            elif twin is not None and k >= warm:
                until = perf_counter() + period
                while perf_counter() < until:  # the twin laps the data; its own timestamps keep increasing
                    lap, j = divmod(twin_fed, total_chunks)
                    twin_rows = slice(j * CHUNK, (j + 1) * CHUNK)
                    twin_stamps = stamps[twin_rows] + lap * (total_chunks * period)
                    twin.feed(Chunk(data[twin_rows], twin_stamps), data[twin_rows], twin_stamps)
                    twin_fed += 1
            t0 = perf_counter()
            steps = driver.feed(chunk, data[rows], stamps[rows])
            if k >= warm and steps:
                spent.append(perf_counter() - t0)
        adapter.stop()
        if twin_adapter is not None:
            twin_adapter.stop()
        out[mode] = {"median_ms": float(np.median(spent)) * 1e3, "p99_ms": float(np.percentile(spent, 99)) * 1e3}
    out["ratio"] = out["at_stream_pace"]["median_ms"] / out["back_to_back"]["median_ms"]
    out["ratio_computing"] = out["at_stream_pace_computing"]["median_ms"] / out["back_to_back"]["median_ms"]
    out["ratio_warm"] = out["at_stream_pace_warm"]["median_ms"] / out["back_to_back"]["median_ms"]
    out["chunk_period_ms"] = period * 1e3
    return out


def run_config(channels: int, rate: int, duration: float, method: str | None, lab_loops: bool) -> dict:
    name = f"bench-latency-{uuid.uuid4().hex[:8]}"
    phases = 2 + (2 if lab_loops else 0) + 1
    synth = subprocess.Popen(
        [sys.executable, "-m", "closedloop", "synth", "--name", name, "--source-id", name]
        + ["--channels", str(channels), "--rate", str(rate), "--chunk", str(CHUNK)]
        + ["--duration", str(phases * (duration + 15) + 60)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    out: dict = {}
    try:
        floor = measure_floor(name, channels, duration)
        _, offset = _inlet(name)
        out["closedloop"] = run_closedloop(name, channels, rate, duration, method, "wait")
        out["closedloop_busy"] = run_closedloop(name, channels, rate, duration, method, "busy")
        if lab_loops:
            out["mne_lsl"] = run_mne_lsl_loop(name, rate, duration, offset)
            out["pylsl"] = run_pylsl_loop(name, channels, rate, duration)
    finally:
        synth.kill()
        synth.wait(10)
    fl = stats_ms(floor)
    ours = out["closedloop"]
    result = {
        "config": {
            "channels": channels,
            "rate_hz": rate,
            "chunk": CHUNK,
            "hop": CHUNK,
            "window": rate,
            "features": f"theta+alpha band power on all {channels} channels",
            "method": ours["method"],
            "duration_s": duration,
        },
        "floor": fl,
        "loop": ours["loop"],
        "overhead_median_ms": ours["loop"]["median_ms"] - fl["median_ms"],
        "in_process": ours["in_process"],
        "busy": {
            "loop": out["closedloop_busy"]["loop"],
            "in_process": out["closedloop_busy"]["in_process"],
            "overhead_median_ms": out["closedloop_busy"]["loop"]["median_ms"] - fl["median_ms"],
            "stage_ms": out["closedloop_busy"]["stage_ms"],
        },
        "compute_ms": ours["compute"]["median_ms"],
        "stage_ms": ours["stage_ms"],
        "loop_behind": ours["loop_behind"],
        "pace": measure_pace(channels, rate, method, min(duration, 10.0)),
        "others": {},
    }
    for key in ("mne_lsl", "pylsl"):
        if key in out:
            other = out[key]
            result["others"][key] = {
                "loop": other["loop"],
                "compute_ms": other["compute"]["median_ms"],
                "ratio_vs": {
                    "latency_median": other["loop"]["median_ms"] / ours["loop"]["median_ms"],
                    "latency_p99": other["loop"]["p99_ms"] / ours["loop"]["p99_ms"],
                    "compute": other["compute"]["median_ms"] / ours["compute"]["median_ms"],
                },
            }
    return result


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
            bench = write_pipeline(tmp, name, channels, rate, method, "wait")
            for r in range(rounds):
                for flag in ("off", "on"):
                    resolved = load_pipeline(bench, {"output.publish": flag == "on"})
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
        f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
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
    ap.add_argument("--duration", type=float, default=60.0, help="seconds per phase (floor, each loop)")
    ap.add_argument("--configs", default="64x1000,256x2000", help="CHANNELSxRATE,...")
    ap.add_argument("--method", default="auto", help="feature method (auto: fastest available)")
    ap.add_argument("--no-lab-loops", action="store_true", help="skip the mne-lsl and pylsl loops")
    ap.add_argument("--quick", action="store_true", help="3 s per phase, 64x1000 only (a smoke test)")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--publish-compare", action="store_true", help="compare [output] publish on and off instead")
    ap.add_argument("--rounds", type=int, default=3, help="--publish-compare: off/on rounds")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.configs = min(args.duration, 3.0), "64x1000"
    method = args.method
    if method == "auto":
        from closedloop.config.features import FeaturesConfig

        allowed = FeaturesConfig.model_fields["method"].annotation.__args__
        method = next((m for m in ("sliding_dft", "iir", "periodogram", "welch") if m in allowed), None)
    if args.publish_compare:
        publish_main(args, method)
        return
    lab = not args.no_lab_loops
    if lab:
        try:
            import mne_lsl  # noqa: F401
        except ImportError:
            print("mne-lsl is not installed: the side-by-side loops are skipped")
            lab = False
    results = []
    for cfg in args.configs.split(","):
        ch, rate = (int(v) for v in cfg.lower().split("x"))
        print(f"# {ch} channels at {rate} Hz, chunks of {CHUNK}, {args.duration:g} s per phase ...", flush=True)
        results.append(run_config(ch, rate, args.duration, method, lab))
    print(
        f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, pylsl {pylsl.__version__}, load {os.getloadavg()[0]:.2f}"
    )
    print(f"{'config':<16}{'':22}{'median ms':>10}{'p99 ms':>10}{'max ms':>10}{'compute ms':>12}")
    for r in results:
        c = r["config"]
        label = f"{c['channels']}ch@{c['rate_hz']}Hz"
        rows = [("transport floor", r["floor"], None), ("closedloop", r["loop"], r["compute_ms"])]
        rows.append(('closedloop poll="busy"', r["busy"]["loop"], None))
        for key, other in r["others"].items():
            rows.append((key.replace("_", "-") + " + scipy welch", other["loop"], other["compute_ms"]))
        for what, m, comp in rows:
            comp_s = f"{comp:12.3f}" if comp is not None else ""
            print(f"{label:<16}{what:<22}{m['median_ms']:>10.3f}{m['p99_ms']:>10.3f}{m['max_ms']:>10.3f}{comp_s}")
        print(
            f"{'':16}overhead over the floor (median): {r['overhead_median_ms']:.3f} ms (wait), "
            f"{r['busy']['overhead_median_ms']:.3f} ms (busy); method {c['method']}; behind {r['loop_behind']}x"
        )
        pace = r["pace"]
        print(
            f"{'':16}the same chunks without LSL (driver.feed): {pace['back_to_back']['median_ms']:.3f} ms back to "
            f"back, {pace['at_stream_pace']['median_ms']:.3f} ms at the stream's pace (one chunk per "
            f"{pace['chunk_period_ms']:.0f} ms, idle between): {pace['ratio']:.1f}x; "
            f"{pace['at_stream_pace_computing']['median_ms']:.3f} ms computing between chunks instead of idling: "
            f"{pace['ratio_computing']:.1f}x; {pace['at_stream_pace_warm']['median_ms']:.3f} ms with a second, "
            f"identical pipeline fed between chunks: {pace['ratio_warm']:.1f}x"
        )
        own, own_busy = r["in_process"], r["busy"]["in_process"]
        print(
            f"{'':16}the loop's own share (pull returned -> command issued): median {own['median_ms']:.3f} ms, "
            f"p99 {own['p99_ms']:.3f} ms (wait); median {own_busy['median_ms']:.3f} ms, "
            f"p99 {own_busy['p99_ms']:.3f} ms (busy; target p99 < 1 ms)"
        )
        for key, other in r["others"].items():
            ratio = other["ratio_vs"]
            print(
                f"{'':16}{key}: latency {ratio['latency_median']:.1f}x closedloop's (p99 {ratio['latency_p99']:.1f}x), "
                f"compute {ratio['compute']:.0f}x"
            )
        stages = "  ".join(f"{k}={v['median']:.3f}" for k, v in r["stage_ms"].items() if v["median"] is not None)
        print(f"{'':16}stages  {stages}  (median ms)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
