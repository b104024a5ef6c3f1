"""Write a synthetic EEG recording to XDF, laid out as LabRecorder lays it out.

For demos, tests and benchmarks of replay, play and sweep: no outside data
needed. The file holds one EEG stream (µV, float32, raw LSL-like timestamps
from ``start_time``, a ClockOffset chunk every 5 s) and one ``Markers``
stream with the generator's blinks and, when the hidden pain state crosses
``pain_threshold`` (with hysteresis), the state it enters: ``"pain"`` or
``"rest"``. Those markers name states, so the sweep can score agreement of
stimulation with them.
"""

from __future__ import annotations

import os

import numpy as np

from closedloop.recording.xdf import XDFWriter
from closedloop.synthetic.eeg import SyntheticEEG

__all__ = ["write_synthetic_xdf"]


def write_synthetic_xdf(
    path: str | os.PathLike,
    duration_s: float,
    n_channels: int = 32,
    sfreq: float = 500.0,
    seed: int = 0,
    *,
    start_time: float = 1000.0,
    clock_offset: float = 0.0,
    chunk_s: float = 0.5,
    pain_threshold: float = 0.5,
    name: str = "synthetic-eeg",
    **generator_kwargs,
) -> dict:
    """Write ``duration_s`` seconds of :class:`~closedloop.synthetic.eeg.SyntheticEEG` to an XDF file.

    Parameters
    ----------
    path : str or Path
        File to create (overwritten).
    duration_s, n_channels, sfreq, seed
        Length and shape of the recording; the generator's seed.
    start_time : float
        Raw timestamp of the first sample.
    clock_offset : float
        Value of the recorded clock offsets (s).
    chunk_s : float
        Length of each Samples chunk.
    pain_threshold : float
        Pain state above ``threshold + 0.05`` enters "pain", below
        ``threshold - 0.05`` enters "rest".
    **generator_kwargs
        More :class:`~closedloop.synthetic.eeg.SyntheticEEG` parameters.

    Returns
    -------
    dict
        ``n_samples``, ``ch_names``, ``markers`` (list of (raw time, label)).
    """
    gen = SyntheticEEG(n_channels=n_channels, sfreq=sfreq, seed=seed, **generator_kwargs)
    n_total = int(round(duration_s * sfreq))
    step = max(1, int(round(chunk_s * sfreq)))
    buf = np.empty((step, n_channels), dtype=np.float32)
    markers: list[tuple[float, str]] = []
    state = None
    with XDFWriter(path, {"recorded_by": "closedloop.synthetic.recording"}, overwrite=True) as w:
        w.add_stream(
            1,
            name,
            "EEG",
            n_channels,
            sfreq,
            "float32",
            source_id=f"{name}-{seed}",
            channels=[{"label": c, "unit": "microvolts", "type": "EEG"} for c in gen.ch_names],
            created_at=start_time,
        )
        w.add_stream(2, f"{name}-markers", "Markers", 1, 0.0, "string", source_id=f"{name}-{seed}-markers")
        next_offset = 0
        done = 0
        while done < n_total:
            n = min(step, n_total - done)
            out = buf[:n]
            gen.generate(n, 0.0, out=out)
            stamps = start_time + (done + np.arange(n)) / sfreq
            w.write_samples(1, out, stamps)
            new = [(start_time + i / sfreq, label) for i, label in gen.pop_events()]
            pain = gen.pain_state
            if (state != "pain" and pain > pain_threshold + 0.05) or (state is None and pain >= pain_threshold):
                state = "pain"
                new.append((float(stamps[-1]), state))
            elif state != "rest" and pain < pain_threshold - 0.05 or (state is None and pain < pain_threshold):
                state = "rest"
                new.append((float(stamps[-1]), state))
            if new:
                new.sort()
                w.write_samples(2, [[label] for _, label in new], [t for t, _ in new])
                markers += new
            if done >= next_offset:
                w.write_clock_offset(1, float(stamps[-1]), clock_offset)
                w.write_clock_offset(2, float(stamps[-1]), clock_offset)
                next_offset += int(5 * sfreq)
            done += n
    return {"n_samples": n_total, "ch_names": list(gen.ch_names), "markers": markers}
