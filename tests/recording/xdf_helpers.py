"""Shared by the recording tests: a session written chunk by chunk with a log of every chunk boundary."""

from __future__ import annotations

import numpy as np
import pyxdf

from closedloop.recording import XDFWriter

EEG_LABELS = ["Fz", "FCz", "Cz", "Pz", "O1", "O2", "C3", "C4"]
MARKERS = ["start", "stim on: 1.5 mA", "<ramp & hold>", "", "Ωμέγα ✓", "stop"]
CLOCK_OFFSET = -0.0125


def load_raw(path):
    """pyxdf streams by id, with raw timestamps."""
    streams, header = pyxdf.load_xdf(str(path), synchronize_clocks=False, dejitter_timestamps=False)
    return {s["info"]["stream_id"]: s for s in streams}, header


def build_session(path, n_eeg=3000, eeg_chunks=(50,), n_feat=60, feat_chunk=7, n_ch=8):
    """Write a session with XDFWriter; return the truth and a write log.

    The log holds, after each write call, ``(file size, {stream id: samples
    written so far})``: the chunk boundaries and what lies before each.
    """
    rng = np.random.default_rng(7)
    eeg = (rng.standard_normal((n_eeg, n_ch)) * 20).astype(np.float32)
    eeg_ts = 1000.0 + np.arange(n_eeg) / 500.0 + rng.normal(0, 1e-4, n_eeg)
    feat = rng.standard_normal((n_feat, 3))
    feat_ts = 1000.0 + np.arange(n_feat) * 0.1 + 0.0123456789
    marker_ts = np.sort(rng.uniform(1000, 1000 + n_eeg / 500, len(MARKERS)))
    channels = [{"label": lab, "unit": "microvolts", "type": "EEG"} for lab in EEG_LABELS[:n_ch]]
    log = []
    counts = {1: 0, 2: 0, 3: 0}
    with XDFWriter(path, {"session": "S01", "operator": "test"}) as w:
        log.append((w.bytes_written, dict(counts)))

        def mark():
            log.append((w.bytes_written, dict(counts)))

        w.add_stream(
            1,
            "EEG-sim",
            "EEG",
            n_ch,
            500.0,
            "float32",
            source_id="sim-eeg",
            channels=channels,
            desc_extra={"reference": "linked mastoids"},
            created_at=999.5,
        )
        mark()
        w.add_stream(
            2,
            "Features",
            "Features",
            3,
            10.0,
            "double64",
            source_id="feat",
            channels=[{"label": n} for n in ("alpha", "theta", "ratio")],
            desc_extra="<window_s>1.0</window_s>",
        )
        mark()
        w.add_stream(3, "Markers", "Markers", 1, 0.0, "string", source_id="mk")
        mark()
        sizes = list(eeg_chunks)
        i = f = m = k = 0
        while i < n_eeg:
            n = sizes[k % len(sizes)]
            k += 1
            w.write_samples(1, eeg[i : i + n], eeg_ts[i : i + n])
            i = min(n_eeg, i + n)
            counts[1] = i
            mark()
            if f < n_feat and feat_ts[f] <= eeg_ts[i - 1]:
                j = min(n_feat, f + feat_chunk)
                w.write_samples(2, feat[f:j], feat_ts[f:j])
                f = counts[2] = j
                mark()
            if m < len(MARKERS) and marker_ts[m] <= eeg_ts[i - 1]:
                w.write_samples(3, [[MARKERS[m]]], marker_ts[m : m + 1])
                m = counts[3] = m + 1
                mark()
            if k % 4 == 1:
                w.write_clock_offset(1, eeg_ts[i - 1], CLOCK_OFFSET)
                mark()
            if k % 8 == 0:
                w.write_boundary()
                mark()
        if f < n_feat:
            w.write_samples(2, feat[f:], feat_ts[f:])
            counts[2] = n_feat
            mark()
        if m < len(MARKERS):
            w.write_samples(3, [[x] for x in MARKERS[m:]], marker_ts[m:])
            counts[3] = len(MARKERS)
            mark()
        for sid in (1, 2, 3):
            w.write_footer(sid)
            mark()
    truth = {
        1: (eeg, eeg_ts),
        2: (feat, feat_ts),
        3: ([[x] for x in MARKERS], marker_ts),
    }
    return truth, log
