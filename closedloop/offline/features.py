"""Extract a pipeline's features from a recording offline: no controller, no device.

The samples go through the same preprocessor and feature extractor a live
session builds (:func:`closedloop.features.build_chain`), in the same chunks
a replay feeds, on the recording's own timestamps, so the frames equal the
replay's frame for frame. A pipeline without ``[controller]`` and
``[device]`` is enough.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from closedloop.config import ResolvedPipeline
from closedloop.features import build_chain
from closedloop.offline.files import RecordingFile, chunk_samples_for, open_recording, plan_channels
from closedloop.types import Chunk, Quality

__all__ = ["FeatureTable", "detect_line_frequency", "extract_features", "open_source_file"]


@dataclass
class FeatureTable:
    """The frames of an offline extraction.

    Attributes
    ----------
    feature_names : tuple of str
        Column names of ``values``.
    time : ndarray (n,)
        Frame times (s, the pipeline's time base).
    values : ndarray (n, n_features)
        Feature values.
    flags : ndarray of int64 (n,)
        Quality flags (:class:`~closedloop.types.Quality`).
    file : Path
        The recording.
    """

    feature_names: tuple[str, ...]
    time: np.ndarray
    values: np.ndarray
    flags: np.ndarray
    file: Path

    def __len__(self) -> int:
        return int(self.time.shape[0])

    def flag_counts(self) -> dict[str, int]:
        """Return how many frames carry each quality flag (flags that never occur are left out)."""
        out = {}
        for q in Quality:
            if q.value and q.name:
                n = int(np.count_nonzero(self.flags & int(q)))
                if n:
                    out[q.name] = n
        return out

    def write_csv(self, path: str | os.PathLike) -> Path:
        """Write ``time, <features>, flags, flag_names`` per frame; return the path."""
        path = Path(path)
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["time", *self.feature_names, "flags", "flag_names"])
            for t, row, fl in zip(self.time, self.values, self.flags):
                names = "|".join(q.name for q in Quality if q.value and q.name and int(fl) & int(q))
                w.writerow([repr(float(t)), *(repr(float(v)) for v in row), int(fl), names])
        return path


def open_source_file(path: str | os.PathLike, resolved: ResolvedPipeline, encoding: str | None = None) -> RecordingFile:
    """Open a recording with the stream selection (and encoding) of the pipeline's ``[source]``.

    ``encoding`` (EDF+ annotations) overrides ``source.encoding``.
    """
    src = resolved.config.source
    kwargs = {"name": getattr(src, "name", None), "type": getattr(src, "type", None)}
    kwargs["source_id"] = getattr(src, "source_id", None)
    return open_recording(path, **kwargs, encoding=encoding or getattr(src, "encoding", None))


def extract_features(
    path: str | os.PathLike,
    resolved: ResolvedPipeline,
    *,
    recording: RecordingFile | None = None,
    chunk_samples: int | None = None,
) -> FeatureTable:
    """Run a pipeline's preprocessing and feature extraction over a recording.

    Parameters
    ----------
    path : str or Path
        An XDF file or any file :func:`mne.io.read_raw` reads.
    resolved : ResolvedPipeline
        The pipeline; its ``[controller]`` and ``[device]`` are not used.
    recording : RecordingFile, optional
        An already opened recording (``path`` is then only a label).
    chunk_samples : int, optional
        Samples per chunk (default as in a replay:
        :func:`~closedloop.offline.files.chunk_samples_for`). Frames do not depend on it.

    Returns
    -------
    FeatureTable

    Raises
    ------
    closedloop.offline.files.RecordingError
        If the file's rate or channels do not fit the pipeline.
    """
    cfg = resolved.config
    rec = recording or open_source_file(path, resolved)
    plan = plan_channels(rec, resolved)
    pre, ext = build_chain(cfg.features, cfg.preprocess, cfg.sfreq, plan.names, plan.types or None)
    step = chunk_samples or chunk_samples_for(cfg)
    if step < 1:
        raise ValueError("chunk_samples must be >= 1")
    n_max = rec.n_samples // cfg.features.hop_samples + 1
    times = np.empty(n_max)
    values = np.empty((n_max, len(ext.names)))
    flags = np.empty(n_max, dtype=np.int64)
    k = 0
    for data, raw_ts in rec.blocks(plan.picks):
        stamps = raw_ts + rec.time_offset
        for a in range(0, data.shape[0], step):
            b = min(a + step, data.shape[0])
            for frame in ext.step(pre.step(Chunk(data[a:b], stamps[a:b]))):
                if k == times.shape[0]:  # more samples than the header said (a cut XDF file)
                    times, values, flags = _grow(times), _grow(values), _grow(flags)
                times[k], values[k], flags[k] = frame.time, frame.values, int(frame.flags)
                k += 1
    return FeatureTable(tuple(ext.names), times[:k].copy(), values[:k].copy(), flags[:k].copy(), Path(rec.path))


def _grow(a: np.ndarray) -> np.ndarray:
    out = np.empty((2 * a.shape[0] + 1, *a.shape[1:]), dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


def detect_line_frequency(rec: RecordingFile, seconds: float = 60.0) -> float | None:
    """Return 50 or 60 when the recording's spectrum shows that line frequency clearly, else ``None``.

    The power in a 1-Hz band around 50 and around 60 Hz (averaged over the
    first ``seconds`` and all channels) is compared with its neighbourhood
    (±2–6 Hz); the line is the one standing at least 10 times (10 dB) above
    its neighbourhood and at least 3 times more than the other candidate.
    """
    if rec.sfreq <= 2 * 62.0:
        return None
    need = int(min(rec.n_samples, seconds * rec.sfreq))
    blocks, got = [], 0
    for data, _ in rec.blocks():
        blocks.append(np.asarray(data, dtype=np.float64))
        got += data.shape[0]
        if got >= need:
            break
    if not blocks:
        return None
    x = np.concatenate(blocks)[:need]
    x = x[:, np.all(np.isfinite(x), axis=0)]
    nfft = int(2 ** np.floor(np.log2(max(rec.sfreq * 4, 16))))  # 4-s segments: 0.25-Hz bins
    if x.shape[0] < nfft or x.shape[1] == 0:
        return None
    segs = x[: (x.shape[0] // nfft) * nfft].reshape(-1, nfft, x.shape[1])
    segs = segs - segs.mean(axis=1, keepdims=True)
    spec = (np.abs(np.fft.rfft(segs * np.hanning(nfft)[None, :, None], axis=1)) ** 2).mean(axis=(0, 2))
    freqs = np.fft.rfftfreq(nfft, 1.0 / rec.sfreq)

    def ratio(f0: float) -> float:
        peak = spec[np.abs(freqs - f0) <= 0.5].mean()
        near = spec[(np.abs(freqs - f0) >= 2.0) & (np.abs(freqs - f0) <= 6.0)].mean()
        return float(peak / near) if near > 0 else 0.0

    r50, r60 = ratio(50.0), ratio(60.0)
    best, r_best, r_other = (50.0, r50, r60) if r50 >= r60 else (60.0, r60, r50)
    return best if r_best >= 10.0 and r_best >= 3.0 * r_other else None
