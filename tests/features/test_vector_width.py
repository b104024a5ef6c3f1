"""Vector widths: when 512 bits are asked for (closedloop.vector_width), and frames bit-identical at any width."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from closedloop import vector_width
from closedloop.features import intrinsics
from closedloop.vector_width import wide_features

AVX512 = "+sse4.2,+avx2,+fma,+avx512f,+avx512dq,+avx512vl"


@pytest.mark.parametrize(
    ("cpu", "features", "environ", "wide", "why"),
    [
        ("emeraldrapids", AVX512, {}, True, "512 bits on emeraldrapids"),
        ("znver4", AVX512, {}, True, "512 bits on znver4"),
        ("znver3", "+sse4.2,+avx2,+fma,-avx512f", {}, False, "znver3 has no AVX-512"),
        ("skylake-avx512", AVX512, {}, False, "skylake-avx512 lowers its clock"),
        ("cascadelake", AVX512, {}, False, "cascadelake lowers its clock"),
        ("emeraldrapids", AVX512, {"CLOSEDLOOP_VECTOR_BITS": "256"}, False, "CLOSEDLOOP_VECTOR_BITS=256"),
        ("emeraldrapids", AVX512, {"CLOSEDLOOP_VECTOR_BITS": "512"}, True, "512 bits"),
        ("emeraldrapids", AVX512, {"CLOSEDLOOP_VECTOR_BITS": "wide"}, False, "is not 256 or 512"),
        ("emeraldrapids", AVX512, {"NUMBA_CPU_FEATURES": "+avx2"}, False, "NUMBA_CPU_FEATURES is set"),
        ("emeraldrapids", AVX512, {"NUMBA_CPU_NAME": "generic"}, False, "NUMBA_CPU_NAME is set"),
    ],
)
def test_wide_vectors_only_on_avx512_cpus_without_the_clock_drop_and_never_over_the_users_choice(
    cpu, features, environ, wide, why
):
    got, reason = wide_features(cpu, features, environ)
    assert why in reason
    assert got == (f"{features},-prefer-256-bit" if wide else None)


#: A fresh process at the width the environment asks for: a 40-channel signal with NaN, Inf, a spike, a
#: flat stretch, garbage and a timestamp gap through the preprocessor and extractors of every band-power
#: method (with PAF, relative power, smoothing and a baseline, and the fused path), frames saved to argv[1].
CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from closedloop.config.features import FeatureBaselineConfig, IIRConfig, PafConfig, WelchConfig
    from closedloop.features import FeatureExtractor
    from closedloop.preprocess import Preprocessor
    from closedloop.types import Chunk
    from closedloop import vector_width

    fs, n, n_ch = 250.0, 4000, 40
    rng = np.random.default_rng(7)
    t = np.arange(n) / fs
    x = rng.standard_normal((n, n_ch)) * 5 + 15 * np.sin(2 * np.pi * 10.3 * t)[:, None]
    x[900, 0] = np.nan
    x[1400, 33] = np.inf
    x[1700, 5] = 400.0
    x[2000:2400, 17] = 3.0
    x[2450, 39] = 1e30
    t[2600:] += 0.5
    names = [f"E{i}" for i in range(n_ch)]
    pre = Preprocessor(names, names, fs, combine="each", reference="average", highpass_hz=1.0, notch_hz=50.0)
    bands, ratios = {"theta": (4.0, 8.0), "alpha": (8.0, 12.0)}, {"theta_alpha": ("theta", "alpha")}
    full = dict(smoothing_s=0.5, relative_to=(1.0, 40.0), paf=PafConfig(segment_samples=250, segments=3),
                baseline=FeatureBaselineConfig(duration_s=3.0))
    extractors = {
        "welch": FeatureExtractor(fs, names, bands, ratios, 250, 10, per_channel=True, method="welch",
                                  method_options=WelchConfig(segment_samples=125, overlap=0.5), **full),
        "sliding_dft": FeatureExtractor(fs, names, bands, ratios, 250, 10, per_channel=True,
                                        method="sliding_dft", **full),
        "iir": FeatureExtractor(fs, names, bands, ratios, 250, 10, per_channel=True, method="iir",
                                method_options=IIRConfig(smoothing="ema"), **full),
        "fused": FeatureExtractor(fs, names, bands, ratios, 250, 10, per_channel=True, method="sliding_dft"),
    }
    out = {}
    for name, ext in extractors.items():
        rows, flags = [], []
        for i in range(0, n, 10):
            for frame in ext.step(pre.step(Chunk(x[i : i + 10], t[i : i + 10]))):
                rows.append(frame.values.copy())
                flags.append(int(frame.flags))
        out[name] = np.array(rows)
        out[name + "_flags"] = np.array(flags)
    np.savez(sys.argv[1], **out)
    from closedloop.features import intrinsics
    print("fused" if intrinsics.FUSED else "unfused")
    print(vector_width.STATE)
    """
)


def _frames_at(bits: str, path: Path, **environ: str) -> tuple[dict, str, bool]:
    """Frames of the child at ``bits`` (and ``environ``); numba's vector-width decision; whether muladd fused."""
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")}
    env["CLOSEDLOOP_VECTOR_BITS"] = bits
    env.update(environ)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    with np.load(path) as saved:
        return dict(saved), lines[-1], lines[-2] == "fused"


@pytest.mark.skipif(not vector_width.STATE.startswith("512"), reason="this CPU runs LLVM's default width")
def test_frames_are_bit_identical_with_256_and_512_bit_vectors(tmp_path):
    wide, wide_state, wide_fused = _frames_at("512", tmp_path / "wide.npz")
    narrow, narrow_state, narrow_fused = _frames_at("256", tmp_path / "narrow.npz")
    assert wide_state.startswith("512 bits") and narrow_state.startswith("256 bits")
    assert wide_fused and narrow_fused  # every AVX-512 CPU has FMA
    for name in ("welch", "sliding_dft", "iir", "fused"):
        assert wide[name].shape[0] > 300 and np.isfinite(wide[name]).any()
        assert np.any(wide[name + "_flags"] != 0)  # the bad samples and the gap were seen
        np.testing.assert_array_equal(wide[name], narrow[name], strict=True)
        np.testing.assert_array_equal(wide[name + "_flags"], narrow[name + "_flags"])


#: numba's "generic" x86-64 target with FMA (and the AVX it needs) but 128-bit vectors: two float64 per vector
NARROW_WITH_FMA = {"NUMBA_CPU_NAME": "generic", "NUMBA_CPU_FEATURES": "+sse4.2,+avx,+fma,+prefer-128-bit"}


@pytest.mark.skipif(
    vector_width.STATE.startswith("512") or platform.machine() not in ("x86_64", "AMD64") or not intrinsics.FUSED,
    reason="AVX-512 CPUs compare 512 with 256 bits above; this compares an FMA CPU's default with 128 bits",
)
def test_frames_are_bit_identical_at_the_hosts_vector_width_and_at_128_bits(tmp_path):
    # on CPUs without AVX-512 the test above cannot run: compare the host's own width (AVX2 on most) with
    # 128-bit vectors, FMA in both (its fused results are the same at any width)
    host, host_state, host_fused = _frames_at("", tmp_path / "host.npz")
    narrow, narrow_state, narrow_fused = _frames_at("", tmp_path / "narrow.npz", **NARROW_WITH_FMA)
    assert "NUMBA_CPU_NAME is set" in narrow_state and "NUMBA_CPU_NAME" not in host_state
    assert host_fused and narrow_fused
    for name in ("welch", "sliding_dft", "iir", "fused"):
        assert host[name].shape[0] > 300 and np.isfinite(host[name]).any()
        assert np.any(host[name + "_flags"] != 0)  # the bad samples and the gap were seen
        np.testing.assert_array_equal(host[name], narrow[name], strict=True)
        np.testing.assert_array_equal(host[name + "_flags"], narrow[name + "_flags"])


@pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64") or not intrinsics.FUSED, reason="compares an FMA CPU with SSE2"
)
def test_without_fma_frames_differ_from_fused_ones_only_by_rounding(tmp_path):
    # numba's "generic" x86-64 target (SSE2, no FMA): muladd rounds twice there, so the sliding DFT's sums and
    # the EMG filter differ from the host's at rounding level; Welch and IIR band power use no muladd
    host, _, host_fused = _frames_at("", tmp_path / "host.npz")
    sse2, sse2_state, sse2_fused = _frames_at("", tmp_path / "sse2.npz", NUMBA_CPU_NAME="generic")
    assert host_fused and not sse2_fused and "NUMBA_CPU_NAME is set" in sse2_state
    for name in ("welch", "iir"):
        np.testing.assert_array_equal(host[name], sse2[name], strict=True)
    for name in ("sliding_dft", "fused"):
        assert not np.array_equal(host[name], sse2[name])  # the unfused path did run
        # log10 powers and ratios (values near 0 too): within 1e-12 in log10 units, i.e. ~2e-12 relative power
        np.testing.assert_allclose(sse2[name], host[name], rtol=1e-12, atol=1e-12)
    for name in ("welch", "sliding_dft", "iir", "fused"):
        np.testing.assert_array_equal(host[name + "_flags"], sse2[name + "_flags"])
