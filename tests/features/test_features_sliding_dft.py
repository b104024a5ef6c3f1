"""Sliding DFT: no drift over a full 8-hour session at 2 kHz, and recovery after NaN."""

from __future__ import annotations

import math

import numpy as np
import pytest

from closedloop.features import SlidingDFTBandPower, WelchBandPower

ALPHA = {"alpha": (8.0, 13.0)}


def test_eight_hours_at_2khz_stay_exact():
    # 8 h x 2000 Hz = 57.6 M samples through the kernel; frames at every phase of the resync block.
    # The sums restart every window, so the error must stay at rounding level (<< 1e-9).
    fs, window, hop = 2000.0, 2000, 1999
    total = int(8 * 3600 * fs) + 777
    rng = np.random.default_rng(11)
    sdft = SlidingDFTBandPower(fs, 1, ALPHA, window, hop)
    block = 1_000_000  # the last block (600 777 samples) holds the last frame's window and the last window
    done = 0
    while done < total:
        n = min(block, total - done)
        x = rng.standard_normal((n, 1)) * 20.0 + 5.0
        power, times = sdft.step(x, (done + np.arange(n)) / fs)
        start = done
        done += n
    # the last frames (at different phases of the block) against single-segment Welch of their own samples
    assert power.shape[0] > 100
    for j in range(1, 6):
        end = int(round(times[-j] * fs)) + 1 - start
        assert (end + start - window) % hop == 0 and end >= window
        ref, _ = WelchBandPower(fs, 1, ALPHA, window, window).step(x[end - window : end], np.zeros(window))
        assert abs(power[-j, 0, 0] / ref[0, 0, 0] - 1) < 1e-9


def test_nan_values_while_in_window_then_exact_recovery():
    fs, window, hop = 250.0, 250, 5
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2000, 2)) * 10
    x[600, 0] = np.nan
    x[601, 0] = np.inf
    ts = np.arange(2000) / fs
    got, _ = SlidingDFTBandPower(fs, 2, ALPHA, window, hop).step(x, ts)
    clean = np.nan_to_num(x, nan=0.0, posinf=0.0)
    ends = np.arange(window, 2001, hop)
    holds = (ends > 600) & (ends - window <= 601)
    assert np.all(np.isnan(got[holds, 0, 0]))
    assert np.all(np.isfinite(got[~holds, 0, 0])) and np.all(np.isfinite(got[:, 1, 0]))
    # once the bad samples have left the window, the values equal a Welch of clean data at once
    ref, _ = WelchBandPower(fs, 2, ALPHA, window, hop).step(clean, ts)
    np.testing.assert_allclose(got[~holds], ref[~holds], rtol=1e-9)


@pytest.mark.parametrize("hop", [7, 10])
def test_runs_between_events_give_the_same_bits_for_any_chunking(hop):
    # The kernel adds samples in runs between events (block end every 250, snapshot every hop, frame at
    # 250 + hop j): a window that is no multiple of the hop (7) puts the events at every relative position;
    # a window of whole hops (10) has one snapshot slot per hop, which each frame reads just before its hop
    # overwrites it. One sample per call (one run per sample) is the reference; NaN rows take the
    # per-sample path. The values equal single-segment Welch (to rounding) where no NaN is in the window.
    fs, window = 250.0, 250
    rng = np.random.default_rng(13)
    x = rng.standard_normal((1600, 70)) * 10
    x[400, 3] = np.nan
    x[401:404, 69] = np.inf
    ts = np.arange(1600) / fs

    def frames(chunk):
        sdft = SlidingDFTBandPower(fs, 70, {"theta": (4.0, 8.0), "alpha": (8.0, 13.0)}, window, hop)
        got = [sdft.step(x[i : i + chunk], ts[i : i + chunk])[0].copy() for i in range(0, 1600, chunk)]
        return np.concatenate(got)

    ref = frames(1)
    assert ref.shape[0] == (1600 - window) // hop + 1
    assert np.isnan(ref[:, 3]).any() and np.isfinite(ref[:, :3]).all()
    for chunk in (4, 33, 1600):
        assert frames(chunk).tobytes() == ref.tobytes(), f"chunk {chunk} differs"
    bands = {"theta": (4.0, 8.0), "alpha": (8.0, 13.0)}
    welch, _ = WelchBandPower(fs, 3, bands, window, hop).step(x[:, :3], ts)
    np.testing.assert_allclose(ref[:, :3], welch, rtol=1e-9)


def test_a_dead_channel_is_nan_and_leaves_the_other_channels_bits_unchanged():
    # a channel that sends NaN for the whole session (a dead electrode) puts every run through the cleaning
    # path; per channel the sums are independent, so the live channels keep the bits they have without it
    fs, window, hop = 500.0, 500, 45  # a hop above the 32 scratch rows: runs are cleaned in pieces
    rng = np.random.default_rng(15)
    x = rng.standard_normal((3000, 6)) * 10
    dead = x.copy()
    dead[:, 2] = np.nan
    ts = np.arange(3000) / fs
    bands = {"theta": (4.0, 8.0), "alpha": (8.0, 13.0)}
    ref, _ = SlidingDFTBandPower(fs, 6, bands, window, hop).step(x, ts)
    for chunk in (1, 17, 3000):
        sdft = SlidingDFTBandPower(fs, 6, bands, window, hop)
        got = np.concatenate(
            [sdft.step(dead[i : i + chunk], ts[i : i + chunk])[0].copy() for i in range(0, 3000, chunk)]
        )
        assert got.shape == ref.shape and np.isnan(got[:, 2]).all()
        live = [0, 1, 3, 4, 5]
        assert got[:, live].tobytes() == ref[:, live].tobytes(), f"chunk {chunk}"


def test_one_channel_gives_the_bits_of_the_same_channel_among_many():
    # one (virtual) channel runs a loop of its own (vectorised over the sums, not the channels): per sum the
    # same products in the same order, so the same bits as that channel among others, for any chunking
    fs, window, hop = 250.0, 250, 7
    rng = np.random.default_rng(14)
    x = rng.standard_normal((1600, 3)) * 10 + 40.0
    x[500, 0] = np.nan
    ts = np.arange(1600) / fs
    many, _ = SlidingDFTBandPower(fs, 3, ALPHA, window, hop).step(x, ts)
    for chunk in (1, 3, 7, 64, 1600):
        one = SlidingDFTBandPower(fs, 1, ALPHA, window, hop)
        got = np.concatenate(
            [one.step(x[i : i + chunk, :1], ts[i : i + chunk])[0].copy() for i in range(0, 1600, chunk)]
        )
        assert got.shape == many[:, :1].shape and np.isnan(got).any()
        assert got.tobytes() == np.ascontiguousarray(many[:, :1]).tobytes(), f"chunk {chunk}"


def _plain_hann_kernel(sdft: SlidingDFTBandPower, count: int) -> np.ndarray:
    """Band powers (channels, bands) of the last frame from its window DFT, the Hann kernel written out unfolded."""
    N = sdft.window
    wd = sdft._sums[2]  # the window's DFT of the last frame, (re, im) rows over channels
    m = (count - N) % N
    ct, st = math.cos(2.0 * math.pi * m / N), math.sin(2.0 * math.pi * m / N)
    kernel = sdft._kernel
    bands = np.zeros((kernel.shape[1] - 6, wd.shape[1]))
    for q in range(kernel.shape[0]):
        rm, r0, rp = (int(v) for v in kernel[q, :3])
        sm, sp, sc = kernel[q, 3:6]
        ai = sm * wd[rm + 1]
        re = 0.5 * wd[r0] - 0.25 * (wd[rm] * ct + ai * st)
        im = 0.5 * wd[r0 + 1] - 0.25 * (ai * ct - wd[rm] * st)
        ai = sp * wd[rp + 1]
        re = re - 0.25 * (wd[rp] * ct - ai * st)
        im = im - 0.25 * (ai * ct + wd[rp] * st)
        power = (re * re + im * im) * sc
        for b in np.flatnonzero(kernel[q, 6:]):
            bands[b] = bands[b] + power
    return bands.T


def test_folded_hann_constants_give_the_bits_of_the_plain_kernel():
    # The kernel folds the Hann kernel's 0.5 and 0.25 into the rotation and the PSD scale; scaling by
    # powers of two is exact, so every frame must equal the plain 0.5 A_k - 0.25 (...) form to the bit,
    # at every phase of the block (window no multiple of the hop), for bins at the band edges and DC's
    # neighbour (delta band from 0.5 Hz: bin 1 has no A_0).
    fs, window, hop = 250.0, 250, 7
    bands = {"delta": (0.5, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 13.0), "beta": (13.0, 30.0)}
    rng = np.random.default_rng(14)
    x = rng.standard_normal((1600, 9)) * 10 + 3.0
    sdft = SlidingDFTBandPower(fs, 9, bands, window, hop)
    count = checked = 0
    for end in range(window, 1600, hop):  # one frame per call, its window DFT then left in the sums
        power, _ = sdft.step(x[count:end], np.arange(count, end) / fs)
        count = end
        assert power.shape[0] == 1
        assert power[0].tobytes() == _plain_hann_kernel(sdft, count).tobytes(), f"frame ending at {end}"
        checked += 1
    assert checked > 150
