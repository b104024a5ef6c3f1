"""How often the quality checks flag real resting EEG, before and after the calibrated defaults.

Recordings (each skipped, with the reason printed, when it is not on this machine):

- ``eegmat``: PhysioNet "EEG During Mental Arithmetic Tasks" (Zyma et al. 2019,
  doi 10.13026/C2JQ1P), subject 00 at rest: 19 EEG channels, 500 Hz, 182 s —
  ``../shared/data/eegmat_subject00_rest.edf`` beside the repository, or ``--edf``.
  Its ``ECG ECG`` and ``EEG A2-A1`` channels are left out (not scalp EEG);
  ``eegmat+ECG`` keeps the ECG channel in, as a stream whose channel types are
  ignored would.
- ``phyaat``: the 14-channel Emotiv recording (128 Hz, 16 s, PhyAAt dataset)
  shipped inside the ``spkit`` wheel (``spkit/data/files/EEG16SecData.pkl``);
  ``pip download --no-deps spkit==0.0.9.7 -d DIR`` and pass ``--spkit DIR/spkit-0.0.9.7-py3-none-any.whl``
  (or have spkit installed). Read with a pickle loader that only admits numpy arrays.

Every channel is checked (features per channel), after the preprocessing the
example pipelines use (1 Hz high-pass, 50 Hz notch, no re-reference; ``phyaat,
no high-pass`` leaves the high-pass out, as a pipeline may), with a
1-s window and a frame every 50 ms. "before" recomputes the old defaults
directly (ARTIFACT |x| > 100 µV, EMG: RMS of a 30 Hz Butterworth high-pass
> 5 µV, FLAT: peak-to-peak <= 1 µV); "after" runs the extractor's
QualityMonitor with the new defaults.

Injected events (known truth) on eegmat: blinks on Fp1/Fp2 (and, weaker, F7/F8),
electrode pops, a channel at an amplifier rail, one 1e30 sample, muscle bursts
on T3/T4, and 50 Hz mains without a notch. For each kind: the share of frames
whose window holds the event that carry the expected flag, and the share of
event-free frames flagged.

    python benchmarks/quality_calibration.py [--quick] [--json PATH] [--edf PATH] [--spkit PATH]
"""

from __future__ import annotations

import argparse
import io
import json
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np
from scipy import signal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from closedloop.config.features import QualityConfig  # noqa: E402
from closedloop.features.quality import QualityMonitor, emg_filter  # noqa: E402
from closedloop.preprocess import Preprocessor  # noqa: E402
from closedloop.types import Chunk, Quality  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EDF = REPO.parent / "shared" / "data" / "eegmat_subject00_rest.edf"
KINDS = ("ARTIFACT", "FLAT", "NONFINITE", "EMG", "GAP", "SATURATION")
RAIL_UV = 187_500.0  # ADS1299 full scale at gain 24: ±4.5 V / 24 (TI ADS1299 datasheet)


class _NumpyOnly(pickle.Unpickler):
    """Unpickle numpy arrays and plain containers only (never arbitrary code)."""

    def find_class(self, module: str, name: str):
        allowed = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct")}
        allowed |= {("numpy._core.multiarray", "_reconstruct")}
        if (module, name) in allowed:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name}")


def load_eegmat(path: Path, with_ecg: bool = False):
    """Return (data µV (n, ch), sfreq, names) of the eegmat EDF, EEG channels only unless ``with_ecg``."""
    import mne

    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    picks = [c for c in raw.ch_names if c.startswith("EEG") and "A2-A1" not in c]
    if with_ecg:
        picks.append("ECG ECG")
    return raw.get_data(picks=picks).T * 1e6, float(raw.info["sfreq"]), picks


def load_phyaat(spkit: Path | None):
    """Return (data µV, 128.0, names) of spkit's 14-channel Emotiv sample, or raise FileNotFoundError."""
    member = "spkit/data/files/EEG16SecData.pkl"
    if spkit is not None and spkit.suffix == ".whl":
        with zipfile.ZipFile(spkit) as z:
            blob = z.read(member)
    else:
        root = spkit
        if root is None:
            import importlib.util

            spec = importlib.util.find_spec("spkit")
            if spec is None or spec.origin is None:
                raise FileNotFoundError("spkit is neither installed nor given with --spkit")
            root = Path(spec.origin).parents[1]
        blob = (root / member).read_bytes()
    x, names = _NumpyOnly(io.BytesIO(blob)).load()
    return np.asarray(x, dtype=float), 128.0, list(names)


def frames_stats(x: np.ndarray, fs: float, q: QualityConfig, highpass: float | None = 1.0, notch: float | None = 50.0):
    """Return flags per frame from the real preprocessor and QualityMonitor (1-s window, 50-ms hop)."""
    names = [f"c{i}" for i in range(x.shape[1])]
    pre = Preprocessor(
        names, names, fs, combine="each", highpass_hz=highpass, notch_hz=notch if notch and notch < fs / 2 else None
    )
    y = pre.step(Chunk(x, np.arange(x.shape[0]) / fs)).data.copy()
    window, hop = int(round(fs)), max(int(round(fs / 20)), 1)
    mon = QualityMonitor(fs, x.shape[1], window, hop, q)
    out = np.zeros(x.shape[0] // hop + 2, dtype=np.int64)
    k = mon.process(y, np.arange(x.shape[0]) / fs, out)
    ends = window + hop * np.arange(k)
    return out[:k], ends, window, y


def old_flags(y: np.ndarray, fs: float, ends: np.ndarray, window: int) -> np.ndarray:
    """Recompute the old defaults directly: |x| > 100 µV, 30 Hz high-pass RMS > 5 µV, flat ±0.5 µV."""
    sos = signal.butter(2, 30.0, "highpass", fs=fs, output="sos")
    hp = signal.sosfilt(sos, y, axis=0, zi=signal.sosfilt_zi(sos)[:, :, None] * y[0][None, None, :])[0]
    csum = np.vstack([np.zeros((1, y.shape[1])), np.cumsum(hp * hp, axis=0)])
    out = np.zeros(ends.size, dtype=np.int64)
    for j, e in enumerate(ends):
        w = y[e - window : e]
        bits = 0
        if np.any(np.abs(w) > 100.0):
            bits |= Quality.ARTIFACT
        if np.any(np.ptp(w, axis=0) <= 1.0):
            bits |= Quality.FLAT
        if np.any((csum[e] - csum[e - window]) / window > 25.0):
            bits |= Quality.EMG
        out[j] = bits
    return out


def percent(flags: np.ndarray) -> dict[str, float]:
    """Percentage of frames carrying each flag, and any flag."""
    res = {k: round(100.0 * float(np.mean(flags & Quality[k] != 0)), 1) for k in KINDS}
    bad = sum(Quality[k] for k in KINDS)
    res["any"] = round(100.0 * float(np.mean(flags & bad != 0)), 1)
    return res


def inject(x: np.ndarray, fs: float, names: list[str], rng: np.random.Generator):
    """Return a copy of ``x`` with artefacts of known kind and position, and the events [(kind, channel, i0, i1)]."""
    x = x.copy()
    n = x.shape[0]
    idx = {nm.replace("EEG ", ""): i for i, nm in enumerate(names)}
    events = []
    seconds = n / fs
    starts = np.arange(8.0, seconds - 8.0, 6.0)
    rng.shuffle(starts)
    kinds = ["blink", "pop", "muscle", "blink", "pop", "muscle", "rail", "garbage"]
    for j, s0 in enumerate(starts):
        kind = kinds[j % len(kinds)]
        i0 = int(s0 * fs)
        if kind == "blink":  # ~300 ms, 150-300 µV at Fp1/Fp2, a third of it at F7/F8
            amp = rng.uniform(150, 300)
            t = np.arange(int(0.6 * fs)) / fs
            wave = amp * np.exp(-0.5 * ((t - 0.3) / 0.07) ** 2)
            for ch, g in (("Fp1", 1.0), ("Fp2", 1.0), ("F7", 0.35), ("F8", 0.35)):
                x[i0 : i0 + wave.size, idx[ch]] += g * wave
            events.append(("blink", idx["Fp1"], i0 + int(0.3 * fs), i0 + int(0.3 * fs) + 1))  # its peak
        elif kind == "pop":  # a jump of 200-600 µV relaxing with a 0.5 s time constant
            ch = idx[rng.choice(["C3", "C4", "P3", "P4", "O1", "O2"])]
            t = np.arange(int(3 * fs)) / fs
            x[i0 : i0 + t.size, ch] += rng.uniform(200, 600) * np.exp(-t / 0.5)
            events.append(("pop", ch, i0, i0 + 1))  # the jump
        elif kind == "muscle":  # 1.5 s of broadband (20-150 Hz) activity, 15-40 µV RMS, on a temporal channel
            ch = idx[rng.choice(["T3", "T4"])]
            m = int(1.5 * fs)
            band = [20.0, min(150.0, 0.45 * fs)]
            burst = signal.sosfilt(signal.butter(4, band, "bandpass", fs=fs, output="sos"), rng.standard_normal(m))
            x[i0 : i0 + m, ch] += burst * rng.uniform(15, 40) / burst.std()
            events.append(("muscle", ch, i0, i0 + m))
        elif kind == "rail":  # 2 s at the rail of an ADS1299 at gain 24
            ch = idx["Cz"]
            x[i0 : i0 + int(2 * fs), ch] = RAIL_UV
            events.append(("rail", ch, i0, i0 + 1))
        else:  # one garbage sample
            ch = idx["Pz"]
            x[i0, ch] = 1e30
            events.append(("garbage", ch, i0, i0 + 1))
    return x, events


EXPECTED = {
    "blink": Quality.ARTIFACT,
    "pop": Quality.ARTIFACT,
    "muscle": Quality.EMG,
    "rail": Quality.SATURATION,
    "garbage": Quality.SATURATION,
}
#: how long after an event the preprocessed signal still shows it (the 1 Hz high-pass forgets a 1e30
#: sample only after ~13 s), so that frames count as clean only after this
SETTLE_S = {"blink": 0.5, "pop": 3.0, "muscle": 0.5, "rail": 20.0, "garbage": 20.0}


def event_frames(ends: np.ndarray, window: int, events, fs: float):
    """Frames whose window holds each event (muscle: at least half the window inside the burst), and clean frames."""
    hits: dict[str, np.ndarray] = {}
    near = np.zeros(ends.size, dtype=bool)
    for kind, _ch, i0, i1 in events:
        if kind == "muscle":
            inside = np.minimum(ends, i1) - np.maximum(ends - window, i0)
            hit = inside >= window // 2
        else:
            hit = (ends > i0) & (ends - window < i1)
        hits[kind] = hits.get(kind, np.zeros(ends.size, dtype=bool)) | hit
        near |= (ends > i0) & (ends - window < i1 + int(SETTLE_S[kind] * fs))
    return hits, ~near


def detection(flags: np.ndarray, ends: np.ndarray, window: int, events, fs: float) -> dict:
    """Per event kind: % of frames holding the event flagged as expected; % of clean frames flagged at all."""
    hits, clean = event_frames(ends, window, events, fs)
    res = {kind: round(100.0 * float(np.mean(flags[hit] & EXPECTED[kind] != 0)), 1) for kind, hit in hits.items()}
    bad = sum(Quality[k] for k in KINDS)
    res["clean frames flagged"] = round(100.0 * float(np.mean(flags[clean] & bad != 0)), 1)
    return res


def window_stats(y: np.ndarray, fs: float, ends: np.ndarray, window: int, q: QualityConfig):
    """Peak-to-peak and EMG-band RMS per frame and channel, recomputed directly (for the threshold sweep)."""
    from numpy.lib.stride_tricks import sliding_window_view

    w = sliding_window_view(y, window, axis=0)[ends - window]  # (frames, channels, window)
    ptp = w.max(axis=-1) - w.min(axis=-1)
    z = signal.sosfilt(emg_filter(fs, q.emg_hz, q.emg_high_hz), y, axis=0)
    csum = np.vstack([np.zeros((1, y.shape[1])), np.cumsum(z * z, axis=0)])
    rms = np.sqrt(np.maximum(csum[ends] - csum[ends - window], 0) / window)
    return ptp, rms


AMP_SWEEP = (100.0, 150.0, 200.0, 250.0, 300.0)
EMG_SWEEP = (3.0, 4.0, 5.0, 6.0, 8.0)


def sweep(ptp: np.ndarray, rms: np.ndarray, hits: dict | None = None) -> dict:
    """% of frames flagged ARTIFACT / EMG for each candidate threshold (or % of event frames caught)."""
    out = {}
    for a in AMP_SWEEP:
        flagged = np.any(ptp > a, axis=1)
        out[f"ARTIFACT ptp>{a:g}"] = _share(flagged, hits, ("blink", "pop"))
    for e in EMG_SWEEP:
        flagged = np.any(rms > e, axis=1)
        out[f"EMG rms>{e:g}"] = _share(flagged, hits, ("muscle",))
    return out


def _share(flagged: np.ndarray, hits: dict | None, kinds: tuple[str, ...]):
    if hits is None:
        return round(100.0 * float(np.mean(flagged)), 1)
    return {k: round(100.0 * float(np.mean(flagged[hits[k]])), 1) for k in kinds if k in hits}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the first 40 s of each recording")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--edf", type=Path, default=EDF, help="eegmat subject 00 rest EDF")
    ap.add_argument("--spkit", type=Path, help="spkit wheel or installed package folder (PhyAAt sample)")
    args = ap.parse_args(argv)
    q = QualityConfig()
    recordings = {}
    skipped = {}
    try:
        recordings["eegmat"] = load_eegmat(args.edf)
        recordings["eegmat+ECG"] = load_eegmat(args.edf, with_ecg=True)
    except (FileNotFoundError, OSError) as exc:
        skipped["eegmat"] = f"{args.edf}: {exc.__class__.__name__}"
    try:
        recordings["phyaat"] = load_phyaat(args.spkit)
    except (FileNotFoundError, OSError, KeyError) as exc:
        skipped["phyaat"] = str(exc)
    results: dict = {"defaults": q.model_dump(), "recordings": {}, "skipped": skipped}
    if "phyaat" in recordings:  # Emotiv data carry ~4 mV electrode offsets: a pipeline without a high-pass
        recordings["phyaat, no high-pass"] = recordings["phyaat"]
    for name, (x, fs, names) in recordings.items():
        if args.quick:
            x = x[: int(40 * fs)]
        flags, ends, window, y = frames_stats(x, fs, q, highpass=None if "no high-pass" in name else 1.0)
        before = percent(old_flags(y, fs, ends, window))
        after = percent(flags)
        entry = {"channels": len(names), "sfreq": fs, "seconds": round(x.shape[0] / fs, 1), "frames": int(ends.size)}
        entry.update(before=before, after=after)
        entry["sweep"] = sweep(*window_stats(y, fs, ends, window, q))
        if name == "eegmat":
            rng = np.random.default_rng(0)
            xi, events = inject(x, fs, names, rng)
            fl, en, win, yi = frames_stats(xi, fs, q)
            entry["injected"] = detection(fl, en, win, events, fs)
            hits, clean = event_frames(en, win, events, fs)
            ptp, rms = window_stats(yi, fs, en, win, q)
            entry["injected sweep"] = sweep(ptp, rms, hits)
            entry["injected sweep"]["clean frames"] = sweep(ptp[clean], rms[clean])
            mains = x + 30.0 * np.sin(2 * np.pi * 50.0 * np.arange(x.shape[0]) / fs)[:, None]
            fl, _, _, ym = frames_stats(mains, fs, q, notch=None)
            entry["50 Hz mains 30 µV, no notch"] = {"after": percent(fl), "before": percent(old_flags(ym, fs, en, win))}
        results["recordings"][name] = entry
    for name, why in skipped.items():
        print(f"{name}: skipped ({why})")
    for name, e in results["recordings"].items():
        print(f"\n{name}: {e['channels']} channels, {e['sfreq']:g} Hz, {e['seconds']} s, {e['frames']} frames")
        print(f"  {'% of frames':14s}" + "".join(f"{k:>11s}" for k in (*KINDS, "any")))
        for when in ("before", "after"):
            print(f"  {when:14s}" + "".join(f"{e[when][k]:11.1f}" for k in (*KINDS, "any")))
        print("  threshold sweep, % of frames:", e["sweep"])
        if "injected" in e:
            print("  injected events, % of their frames flagged as expected:", e["injected"])
            sw = e["injected sweep"]
            clean = sw.pop("clean frames")
            for key, val in sw.items():
                print(f"    {key:16s} caught {val}; clean frames flagged {clean[key]} %")
            m = e["50 Hz mains 30 µV, no notch"]
            print(f"  50 Hz mains 30 µV without notch: EMG before {m['before']['EMG']} %, after {m['after']['EMG']} %")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
