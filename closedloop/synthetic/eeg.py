"""Synthetic EEG with known truth, for tests, demos and simulated closed loops.

:class:`SyntheticEEG` produces multichannel EEG in µV, chunk by chunk, from a
seeded model whose hidden state is exposed as *truth*:

- a 1/f ("pink") background per channel: white noise through a cascade of
  first-order pole-zero sections an octave apart, then mixed a little between
  neighbouring electrodes so that neighbours correlate;
- an alpha rhythm (~10 Hz, slow frequency jitter, waxing and waning) strongest
  over parieto-occipital sites, and a theta rhythm (~6 Hz) strongest over the
  frontal midline;
- a slowly drifting "pain state" in [0, 1] (an Ornstein-Uhlenbeck process)
  that lowers alpha and raises theta (docs/eeg-and-pain.md: acute pain lowers alpha,
  chronic pain goes with more frontal-midline theta);
- a plant model: stimulation multiplies alpha by ``1 + x`` where ``x``
  follows ``gain_per_mA * stim_mA`` with first-order dynamics, so a closed
  loop can see its own effect;
- mains interference and eye blinks on frontal sites.

Every random number is drawn in fixed-size blocks and every state is carried
per sample, so the same seed and the same sequence of ``generate`` calls give
the same data, and, while the stimulation amplitude stays constant, splitting
the generation into chunks of different sizes gives bit-identical samples.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numba
import numpy as np

from closedloop import kernel_cache  # noqa: F401  (before the first cached kernel: see that module)
from closedloop.config.sources import standard_channel_names

__all__ = ["PlantModel", "SyntheticEEG", "standard_channel_names"]

_NOISE_BLOCK = 256  # samples per block of random draws (fixed: chunking must not change draws)
_N_PROCESSES = 5  # scalar random processes: pain, alpha freq, alpha env, theta freq, theta env

# indices into the scalar state vector
_S_PAIN, _S_APHASE, _S_AFREQ, _S_AENV, _S_TPHASE, _S_TFREQ, _S_TENV, _S_PLANT = range(8)
# indices into the truth vector written by the kernel
_T_ALPHA_UV, _T_THETA_UV, _T_ALPHA_HZ, _T_THETA_HZ = range(4)
# indices into the parameter vector
(
    _P_DT,
    _P_PAIN_MEAN,
    _P_PAIN_DECAY,
    _P_PAIN_DIFF,
    _P_ALPHA_UV,
    _P_ALPHA_HZ,
    _P_THETA_UV,
    _P_THETA_HZ,
    _P_JIT_DECAY,
    _P_JIT_DIFF,
    _P_ALPHA_JIT_HZ,
    _P_THETA_JIT_HZ,
    _P_ENV_DECAY,
    _P_ENV_DIFF,
    _P_ENV_SD,
    _P_PAIN_ALPHA,
    _P_PAIN_THETA,
    _P_PAIN_PAF,
    _P_PLANT_STEP,
    _P_LINE_STEP,
    _P_BACKGROUND,
) = range(21)
_N_PARAMS = 21

_TWO_PI = 2.0 * math.pi


@dataclass(frozen=True)
class PlantModel:
    """How stimulation changes the synthetic alpha rhythm.

    Alpha amplitude is multiplied by ``1 + x``; ``x`` approaches
    ``gain_per_mA * stim_mA`` with a first-order time constant ``tau_s``.

    Parameters
    ----------
    gain_per_mA : float
        Relative alpha amplitude increase per mA at steady state.
    tau_s : float
        Time constant of the response (s).
    """

    gain_per_mA: float = 0.8
    tau_s: float = 2.0


def _mne_positions() -> dict[str, list[float]]:
    import mne  # lazy: only needed when a generator is built, and then only once per MNE version

    names = mne.channels.get_builtin_montages()
    kind = "spherical_1005" if "spherical_1005" in names else "standard_1005"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # 'standard_1005' is deprecated in MNE 1.13
        montage = mne.channels.make_standard_montage(kind)
    return {name: np.asarray(xyz, dtype=float).tolist() for name, xyz in montage.get_positions()["ch_pos"].items()}


def _readable_positions(value) -> bool:
    return (
        isinstance(value, dict)
        and len(value) > 0
        and all(isinstance(v, list) and len(v) == 3 and all(isinstance(c, float) for c in v) for v in value.values())
    )


@lru_cache(maxsize=1)
def _montage_positions() -> dict[str, np.ndarray]:
    """Unit-sphere positions of the 10-05 sites, keyed by lower-case name (MNE's, cached on disk)."""
    from closedloop.diskcache import cached

    positions = {}
    for name, xyz in cached("mne", ["montage_1005"], _mne_positions, _readable_positions).items():
        xyz = np.asarray(xyz, dtype=float)
        positions[name.lower()] = xyz / np.linalg.norm(xyz)
    return positions


def _channel_positions(ch_names: list[str]) -> np.ndarray:
    """Return unit vectors (n, 3) for the channels; unknown names go on a spiral over the head."""
    known = _montage_positions()
    out = np.empty((len(ch_names), 3))
    unknown = [i for i, name in enumerate(ch_names) if name.lower() not in known]
    golden = math.pi * (3.0 - math.sqrt(5.0))
    for i, name in enumerate(ch_names):
        if name.lower() in known:
            out[i] = known[name.lower()]
    for k, i in enumerate(unknown):  # Fibonacci spiral over the upper hemisphere
        z = 1.0 - (k + 0.5) / len(unknown)
        r = math.sqrt(1.0 - z * z)
        out[i] = (r * math.cos(k * golden), r * math.sin(k * golden), z)
    return out


def _direction(elevation_deg: float, front: bool) -> np.ndarray:
    """Return a unit vector on the midline (y to the nose), ``elevation`` above the ear plane."""
    el = math.radians(elevation_deg)
    return np.array([0.0, math.cos(el) if front else -math.cos(el), math.sin(el)])


def _gaussian_topography(pos: np.ndarray, centre: np.ndarray, width: float, floor: float) -> np.ndarray:
    """Weights ``floor + (1 - floor) exp(-d^2 / 2 width^2)`` of chord distance ``d``; 1 at ``centre``."""
    d2 = np.sum((pos - centre) ** 2, axis=1)
    return floor + (1.0 - floor) * np.exp(-d2 / (2.0 * width**2))


def _blink_topography(pos: np.ndarray) -> np.ndarray:
    """Blink weights: 1 at Fp1/Fp2, decaying with distance from the eyes."""
    eyes = _direction(-30.0, front=True)
    fp1 = _montage_positions()["fp1"]
    d_fp = np.sum((fp1 - eyes) ** 2)
    d2 = np.sum((pos - eyes) ** 2, axis=1)
    return np.exp(-(d2 - d_fp) / 0.8)


def _mixing_matrix(pos: np.ndarray, spread: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse (CSR) spatial mixing with unit-norm rows: neighbours share background."""
    n = pos.shape[0]
    if spread <= 0:
        return np.arange(n + 1, dtype=np.int64), np.arange(n, dtype=np.int64), np.ones(n)
    d2 = np.sum((pos[:, None, :] - pos[None, :, :]) ** 2, axis=2)
    m = np.exp(-d2 / (2.0 * spread**2))
    m[m < 1e-3] = 0.0
    m /= np.sqrt(np.sum(m**2, axis=1, keepdims=True))
    ptr = np.zeros(n + 1, dtype=np.int64)
    idx, w = [], []
    for c in range(n):
        nz = np.flatnonzero(m[c])
        idx.extend(nz)
        w.extend(m[c, nz])
        ptr[c + 1] = len(idx)
    return ptr, np.asarray(idx, dtype=np.int64), np.asarray(w, dtype=np.float64)


def _pink_bank(sfreq: float, exponent: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Cascade of first-order pole-zero sections shaping white noise into 1/f^exponent.

    Poles sit one octave apart from 0.125 Hz to 128 Hz (at most sfreq/3);
    each pole but the last is followed by a zero ``2**(exponent/2)`` higher,
    so every octave drops the power by ``2**exponent`` (a staircase that
    averages to 1/f^exponent); the last pole rolls off as 1/f^2. Poles and
    zeros are mapped by the matched z-transform.

    Returns
    -------
    poles, zeros : ndarray
        Per section ``H_k(z) = (1 - zeros[k] z^-1) / (1 - poles[k] z^-1)``.
    gain : float
        Input gain giving unit output variance for unit white noise.
    """
    if not 0.0 < exponent <= 2.0:
        raise ValueError(f"background_exponent must be in (0, 2], not {exponent}")
    corners = 0.125 * 2.0 ** np.arange(11)
    corners = corners[corners <= sfreq / 3.0]
    poles = np.exp(-_TWO_PI * corners / sfreq)
    zeros = np.exp(-_TWO_PI * corners * 2.0 ** (exponent / 2.0) / sfreq)
    zeros[-1] = 0.0
    # variance of the impulse response, long enough for the slowest pole to die out
    n = int(40.0 / (1.0 - poles[0])) + 1
    return poles, zeros, _pink_gain(poles, zeros, n)


def _pink_gain(poles: np.ndarray, zeros: np.ndarray, n: int) -> float:
    """Return 1 / the RMS of the cascade's impulse response (kept on disk: the kernel is a live start's first)."""
    from closedloop.diskcache import cached

    def compute() -> float:
        h = _cascade_impulse(poles, zeros, n)
        return 1.0 / math.sqrt(float(np.dot(h, h)))

    code = _cascade_impulse.py_func.__code__
    version = hashlib.sha256(code.co_code + repr(code.co_consts).encode()).hexdigest()[:16]
    key = ["pink_gain", poles.tolist(), zeros.tolist(), n, version]
    return cached("closedloop", key, compute, lambda v: isinstance(v, float) and math.isfinite(v) and v > 0)


@numba.njit(cache=True)
def _cascade_impulse(poles, zeros, n):
    """Impulse response of the first-order cascade, operation for operation as ``scipy.signal.sosfilt``.

    (Direct form II transposed; importing scipy.signal for this alone cost a live session ~1 s of start-up.)
    """
    h = np.zeros(n)
    z = np.zeros(poles.shape[0])
    for i in range(n):
        x = 1.0 if i == 0 else 0.0
        for s in range(poles.shape[0]):
            y = 1.0 * x + z[s]
            z[s] = -zeros[s] * x - -poles[s] * y + (0.0 * x - 0.0 * y)
            x = y
        h[i] = x
    return h


@numba.njit(cache=True)
def _synth_kernel(
    out,
    sample0,
    noise,
    proc,
    state,
    pink_state,
    pink_poles,
    pink_zeros,
    pink_buf,
    mix_ptr,
    mix_idx,
    mix_w,
    alpha_topo,
    theta_topo,
    line_sin,
    line_cos,
    params,
    plant_target,
    truth,
):  # pragma: no cover - compiled
    n_samples, n_channels = out.shape
    n_sections = pink_poles.shape[0]
    dt = params[_P_DT]
    env_sd = params[_P_ENV_SD]
    env_bias = env_sd * env_sd  # E[exp(2 (sd z - sd^2))] = 1: mean power is preserved
    pain = state[_S_PAIN]
    a_phase = state[_S_APHASE]
    a_freq = state[_S_AFREQ]
    a_env = state[_S_AENV]
    t_phase = state[_S_TPHASE]
    t_freq = state[_S_TFREQ]
    t_env = state[_S_TENV]
    plant = state[_S_PLANT]
    a_amp = 0.0
    t_amp = 0.0
    fa = params[_P_ALPHA_HZ]
    ft = params[_P_THETA_HZ]
    for i in range(n_samples):
        # slow hidden processes (Ornstein-Uhlenbeck, exact discretisation)
        pmean = params[_P_PAIN_MEAN]
        pain = pmean + (pain - pmean) * params[_P_PAIN_DECAY] + params[_P_PAIN_DIFF] * proc[i, 0]
        if pain < 0.0:
            pain = -pain
        if pain > 1.0:
            pain = 2.0 - pain
        plant += (plant_target - plant) * params[_P_PLANT_STEP]
        a_freq = a_freq * params[_P_JIT_DECAY] + params[_P_JIT_DIFF] * proc[i, 1]
        a_env = a_env * params[_P_ENV_DECAY] + params[_P_ENV_DIFF] * proc[i, 2]
        t_freq = t_freq * params[_P_JIT_DECAY] + params[_P_JIT_DIFF] * proc[i, 3]
        t_env = t_env * params[_P_ENV_DECAY] + params[_P_ENV_DIFF] * proc[i, 4]
        # rhythms: pain lowers alpha and raises theta (docs/eeg-and-pain.md)
        centred = pain - 0.5
        fa = params[_P_ALPHA_HZ] + params[_P_ALPHA_JIT_HZ] * a_freq - params[_P_PAIN_PAF] * centred
        ft = params[_P_THETA_HZ] + params[_P_THETA_JIT_HZ] * t_freq
        fa = max(fa, 0.1)
        ft = max(ft, 0.1)
        a_phase += _TWO_PI * fa * dt
        if a_phase >= _TWO_PI:
            a_phase -= _TWO_PI
        t_phase += _TWO_PI * ft * dt
        if t_phase >= _TWO_PI:
            t_phase -= _TWO_PI
        pain_alpha = max(1.0 - params[_P_PAIN_ALPHA] * centred, 0.0)
        pain_theta = max(1.0 + params[_P_PAIN_THETA] * centred, 0.0)
        a_amp = params[_P_ALPHA_UV] * pain_alpha * max(1.0 + plant, 0.0) * math.exp(env_sd * a_env - env_bias)
        t_amp = params[_P_THETA_UV] * pain_theta * math.exp(env_sd * t_env - env_bias)
        a_val = a_amp * math.sin(a_phase)
        t_val = t_amp * math.sin(t_phase)
        # mains: phase from the absolute sample index, so chunking cannot change it
        cycles = (sample0 + i) * params[_P_LINE_STEP]
        l_phase = _TWO_PI * (cycles - math.floor(cycles))
        l_sin = math.sin(l_phase)
        l_cos = math.cos(l_phase)
        # pink background per channel, then spatial mixing
        for c in range(n_channels):
            v = noise[i, c]
            for k in range(n_sections):  # transposed direct form II, one state per section
                y = v + pink_state[k, c]
                pink_state[k, c] = pink_poles[k] * y - pink_zeros[k] * v
                v = y
            pink_buf[c] = v
        bg = params[_P_BACKGROUND]
        for c in range(n_channels):
            y = 0.0
            for j in range(mix_ptr[c], mix_ptr[c + 1]):
                y += mix_w[j] * pink_buf[mix_idx[j]]
            out[i, c] = (
                bg * y + alpha_topo[c] * a_val + theta_topo[c] * t_val + line_sin[c] * l_sin + line_cos[c] * l_cos
            )
    state[_S_PAIN] = pain
    state[_S_APHASE] = a_phase
    state[_S_AFREQ] = a_freq
    state[_S_AENV] = a_env
    state[_S_TPHASE] = t_phase
    state[_S_TFREQ] = t_freq
    state[_S_TENV] = t_env
    state[_S_PLANT] = plant
    if n_samples > 0:
        truth[_T_ALPHA_UV] = a_amp
        truth[_T_THETA_UV] = t_amp
        truth[_T_ALPHA_HZ] = fa
        truth[_T_THETA_HZ] = ft


@numba.njit(cache=True)
def _add_transient(out, row0, shape, shape0, count, amplitude, topo):  # pragma: no cover - compiled
    n_channels = out.shape[1]
    for i in range(count):
        v = amplitude * shape[shape0 + i]
        for c in range(n_channels):
            out[row0 + i, c] += v * topo[c]


@dataclass(frozen=True)
class SynthSettings:
    """What a :class:`SyntheticEEG` generates: rhythms, background, mains, blinks, pain state, plant.

    Every field is a keyword of :class:`SyntheticEEG` (see there for the
    meaning of each); the defaults give 32 channels at 500 Hz of resting EEG
    with posterior alpha and frontal-midline theta following a slow "pain
    state", and stimulation raising alpha through :class:`PlantModel`.
    """

    sfreq: float = 500.0
    seed: int = 0
    alpha_uV: float = 10.0
    alpha_hz: float = 10.0
    theta_uV: float = 4.0
    theta_hz: float = 6.0
    background_uV: float = 8.0
    background_exponent: float = 1.0
    spatial_spread: float = 0.18
    line_hz: float = 50.0
    line_uV: float = 2.0
    frequency_jitter_hz: float = 0.25
    envelope_sd: float = 0.3
    pain_tau_s: float = 20.0
    pain_mean: float = 0.5
    pain_sd: float = 0.2
    pain_initial: float = 0.5
    pain_alpha_coupling: float = 0.6
    pain_theta_coupling: float = 0.8
    pain_paf_shift_hz: float = 0.0
    plant: PlantModel | None = PlantModel()
    blink_rate_per_min: float = 6.0
    blink_uV: tuple[float, float] = (100.0, 200.0)
    blink_duration_s: float = 0.3

    def __post_init__(self) -> None:
        if self.sfreq <= 0:
            raise ValueError(f"sfreq must be > 0, not {self.sfreq}")
        if self.pain_tau_s <= 0 or (self.plant is not None and self.plant.tau_s <= 0):
            raise ValueError("time constants must be > 0")
        if not 0.0 <= self.pain_initial <= 1.0:
            raise ValueError("pain_initial must be in [0, 1]")


class SyntheticEEG:
    """Seeded synthetic EEG with a hidden pain state and a stimulation plant.

    Parameters
    ----------
    n_channels : int or None
        Number of channels; default ``len(ch_names)`` or 32.
    sfreq : float
        Sampling rate (Hz).
    seed : int
        Seed of every random draw.
    ch_names : list of str or None
        Channel names; default :func:`standard_channel_names`. Names found in
        the 10-05 system get their scalp position; others are spread over the
        head.
    alpha_uV, alpha_hz : float
        Alpha amplitude (µV, at the centre of its topography, pain state 0.5,
        no stimulation) and frequency.
    theta_uV, theta_hz : float
        Theta amplitude (µV, at the frontal-midline centre) and frequency.
    background_uV : float
        RMS of the 1/f background per channel (µV).
    line_hz, line_uV : float
        Mains frequency and mean amplitude (µV).
    blink_rate_per_min : float
        Mean blink rate; 0 disables blinks.
    pain_tau_s : float
        Time constant of the pain-state drift (s).
    plant : PlantModel or None
        Response of alpha to stimulation; None: stimulation has no effect.
    background_exponent : float
        Exponent of the 1/f^exponent background, in (0, 2]; the spectrum
        follows it from about 0.2 Hz to 100 Hz (to sfreq/4 at low rates).
    spatial_spread : float
        Width (chord distance on the unit head sphere) of the background's
        mixing between neighbouring electrodes; 0 makes channels independent.
    frequency_jitter_hz : float
        Standard deviation of the slow drift of the alpha and theta frequency.
    envelope_sd : float
        Standard deviation of the log-amplitude modulation (waxing and
        waning) of both rhythms; mean power is unchanged by it.
    pain_mean, pain_sd : float
        Mean and stationary standard deviation of the pain state; it starts at
        ``pain_initial`` and is reflected at 0 and 1.
    pain_alpha_coupling, pain_theta_coupling : float
        Alpha is multiplied by ``1 - coupling * (pain - 0.5)``, theta by
        ``1 + coupling * (pain - 0.5)``.
    pain_paf_shift_hz : float
        Alpha frequency falls by this much per unit of pain above 0.5.
    blink_uV : tuple of float
        Range of blink amplitudes at Fp1/Fp2 (µV), drawn uniformly.
    blink_duration_s : float
        Duration of a blink.

    Every parameter but ``n_channels`` and ``ch_names`` is a field of
    :class:`SynthSettings` (kept as :attr:`settings`, frozen), checked when
    the generator is built.

    Notes
    -----
    Not thread-safe: one thread generates. Chunk invariance holds while
    ``stim_mA`` is constant; when it changes, the change takes effect at the
    first sample of the call that passes the new value.
    """

    def __init__(
        self,
        n_channels: int | None = None,
        sfreq: float = 500.0,
        seed: int = 0,
        ch_names: list[str] | None = None,
        **settings: Any,
    ) -> None:
        s = SynthSettings(sfreq=sfreq, seed=seed, **settings)  # an unknown keyword is a TypeError here
        if ch_names is None:
            ch_names = standard_channel_names(32 if n_channels is None else int(n_channels))
        elif n_channels is not None and n_channels != len(ch_names):
            raise ValueError(f"n_channels={n_channels} but {len(ch_names)} ch_names given")
        if len(set(ch_names)) != len(ch_names):
            raise ValueError("ch_names must be unique")
        if len(ch_names) < 1:
            raise ValueError("need at least one channel")
        self.settings = s
        self.ch_names: list[str] = list(ch_names)
        self.n_channels: int = len(self.ch_names)
        self.sfreq: float = float(s.sfreq)
        self.seed: int = int(s.seed)
        self.plant: PlantModel | None = s.plant
        self.params: dict[str, object] = {
            "seed": self.seed,
            "sfreq": self.sfreq,
            "n_channels": self.n_channels,
            **{
                k: getattr(s, k)
                for k in (
                    "alpha_uV",
                    "alpha_hz",
                    "theta_uV",
                    "theta_hz",
                    "background_uV",
                    "background_exponent",
                    "line_hz",
                    "line_uV",
                    "blink_rate_per_min",
                    "pain_tau_s",
                )
            },
            "plant": None if s.plant is None else asdict(s.plant),
        }
        seeds = np.random.SeedSequence(self.seed).spawn(4)
        self._rng_noise = np.random.Generator(np.random.PCG64(seeds[0]))
        self._rng_proc = np.random.Generator(np.random.PCG64(seeds[1]))
        self._rng_blink = np.random.Generator(np.random.PCG64(seeds[2]))
        rng_layout = np.random.Generator(np.random.PCG64(seeds[3]))
        self._build_layout(s, rng_layout)
        self._params = self._kernel_params(s)
        self._state = np.zeros(8)
        self._state[_S_PAIN] = s.pain_initial
        self._state[_S_APHASE] = rng_layout.uniform(0.0, _TWO_PI)
        self._state[_S_TPHASE] = rng_layout.uniform(0.0, _TWO_PI)
        self._truth = np.array([s.alpha_uV, s.theta_uV, s.alpha_hz, s.theta_hz], dtype=float)
        self._noise = np.empty((_NOISE_BLOCK, self.n_channels))
        self._proc = np.empty((_NOISE_BLOCK, _N_PROCESSES))
        self._block_pos = _NOISE_BLOCK  # forces a draw on first use
        self._build_blinks(s)
        self._events: list[tuple[int, str]] = []
        self._samples = 0

    def _build_layout(self, s: SynthSettings, rng: np.random.Generator) -> None:
        """Place the channels: topographies of alpha, theta and blinks, background mixing, mains per channel."""
        pos = _channel_positions(self.ch_names)
        self.positions: np.ndarray = pos
        # alpha: parieto-occipital, centred between POz and Oz; theta: frontal midline, between Fz and FCz
        self.alpha_topography: np.ndarray = _gaussian_topography(pos, _direction(28.0, front=False), 0.5, 0.1)
        self.theta_topography: np.ndarray = _gaussian_topography(pos, _direction(63.0, front=True), 0.45, 0.1)
        self.blink_topography: np.ndarray = _blink_topography(pos)
        self._mix_ptr, self._mix_idx, self._mix_w = _mixing_matrix(pos, s.spatial_spread)
        self._pink_poles, self._pink_zeros, self._pink_gain = _pink_bank(self.sfreq, s.background_exponent)
        self._pink_state = np.zeros((self._pink_poles.size, self.n_channels))
        self._pink_buf = np.zeros(self.n_channels)
        # mains: common-mode, amplitude and phase vary a little across channels
        line_amp = s.line_uV * rng.uniform(0.5, 1.5, self.n_channels)
        line_phase = rng.uniform(-0.3, 0.3, self.n_channels)
        self._line_sin = line_amp * np.cos(line_phase)  # a sin(x + p) = a cos p sin x + a sin p cos x
        self._line_cos = line_amp * np.sin(line_phase)

    def _kernel_params(self, s: SynthSettings) -> np.ndarray:
        """Return the numba kernel's parameter vector."""
        dt = 1.0 / self.sfreq
        jit_decay = math.exp(-dt / 1.0)  # frequency drift: 1 s
        env_decay = math.exp(-dt / 0.4)  # waxing and waning: 0.4 s
        pain_decay = math.exp(-dt / s.pain_tau_s)
        p = np.zeros(_N_PARAMS)
        p[_P_DT] = dt
        p[_P_PAIN_MEAN] = s.pain_mean
        p[_P_PAIN_DECAY] = pain_decay
        p[_P_PAIN_DIFF] = s.pain_sd * math.sqrt(1.0 - pain_decay**2)
        p[_P_ALPHA_UV] = s.alpha_uV
        p[_P_ALPHA_HZ] = s.alpha_hz
        p[_P_THETA_UV] = s.theta_uV
        p[_P_THETA_HZ] = s.theta_hz
        p[_P_JIT_DECAY] = jit_decay
        p[_P_JIT_DIFF] = math.sqrt(1.0 - jit_decay**2)
        p[_P_ALPHA_JIT_HZ] = s.frequency_jitter_hz
        p[_P_THETA_JIT_HZ] = s.frequency_jitter_hz
        p[_P_ENV_DECAY] = env_decay
        p[_P_ENV_DIFF] = math.sqrt(1.0 - env_decay**2)
        p[_P_ENV_SD] = s.envelope_sd
        p[_P_PAIN_ALPHA] = s.pain_alpha_coupling
        p[_P_PAIN_THETA] = s.pain_theta_coupling
        p[_P_PAIN_PAF] = s.pain_paf_shift_hz
        p[_P_PLANT_STEP] = 0.0 if s.plant is None else 1.0 - math.exp(-dt / s.plant.tau_s)
        p[_P_LINE_STEP] = s.line_hz / self.sfreq
        p[_P_BACKGROUND] = s.background_uV * self._pink_gain
        return p

    def _build_blinks(self, s: SynthSettings) -> None:
        """Prepare the blink shape (asymmetric raised-cosine bump, 40 % rise, 60 % fall) and the first gap."""
        n_blink = max(int(round(s.blink_duration_s * self.sfreq)), 2)
        n_rise = max(int(round(0.4 * n_blink)), 1)
        t = np.arange(n_blink, dtype=float)
        self._blink_shape = np.where(
            t < n_rise,
            0.5 * (1.0 - np.cos(math.pi * t / n_rise)),
            0.5 * (1.0 + np.cos(math.pi * (t - n_rise) / (n_blink - n_rise))),
        )
        self._blink_uV = (float(s.blink_uV[0]), float(s.blink_uV[1]))
        self._blink_rate = float(s.blink_rate_per_min)
        self._blink_active: tuple[int, float] | None = None
        self._next_blink = self._draw_blink_gap(0)

    # ------------------------------------------------------------------ truth
    @property
    def samples_generated(self) -> int:
        """Samples produced so far."""
        return self._samples

    @property
    def pain_state(self) -> float:
        """Hidden pain state in [0, 1] at the last generated sample."""
        return float(self._state[_S_PAIN])

    @property
    def alpha_gain(self) -> float:
        """Plant output: factor ``1 + x`` on alpha amplitude at the last sample."""
        return max(1.0 + float(self._state[_S_PLANT]), 0.0)

    @property
    def alpha_amplitude_uV(self) -> float:
        """Alpha amplitude (µV) at the centre of its topography, last sample."""
        return float(self._truth[_T_ALPHA_UV])

    @property
    def theta_amplitude_uV(self) -> float:
        """Theta amplitude (µV) at the centre of its topography, last sample."""
        return float(self._truth[_T_THETA_UV])

    @property
    def alpha_frequency_hz(self) -> float:
        """Instantaneous alpha frequency at the last sample."""
        return float(self._truth[_T_ALPHA_HZ])

    @property
    def theta_frequency_hz(self) -> float:
        """Instantaneous theta frequency at the last sample."""
        return float(self._truth[_T_THETA_HZ])

    def truth(self) -> dict[str, float]:
        """All truth values at the last generated sample, as a dict."""
        return {
            "samples_generated": self.samples_generated,
            "pain_state": self.pain_state,
            "alpha_gain": self.alpha_gain,
            "alpha_amplitude_uV": self.alpha_amplitude_uV,
            "theta_amplitude_uV": self.theta_amplitude_uV,
            "alpha_frequency_hz": self.alpha_frequency_hz,
            "theta_frequency_hz": self.theta_frequency_hz,
        }

    def pop_events(self) -> list[tuple[int, str]]:
        """Return and clear the events (sample index of onset, label) since the last call."""
        events, self._events = self._events, []
        return events

    # ------------------------------------------------------------- generation
    def warm_up(self) -> None:
        """Compile (or load from cache) the numba kernels without changing any state."""
        empty = np.empty((0, self.n_channels), dtype=np.float32)
        _synth_kernel(
            empty,
            self._samples,
            self._noise[:0],
            self._proc[:0],
            self._state,
            self._pink_state,
            self._pink_poles,
            self._pink_zeros,
            self._pink_buf,
            self._mix_ptr,
            self._mix_idx,
            self._mix_w,
            self.alpha_topography,
            self.theta_topography,
            self._line_sin,
            self._line_cos,
            self._params,
            0.0,
            self._truth,
        )
        _add_transient(empty, 0, self._blink_shape, 0, 0, 0.0, self.blink_topography)

    def generate(self, n_samples: int, stim_mA: float = 0.0, out: np.ndarray | None = None) -> np.ndarray:
        """Produce the next ``n_samples`` samples.

        Parameters
        ----------
        n_samples : int
            Number of samples.
        stim_mA : float
            Stimulation amplitude during these samples; drives the plant.
        out : ndarray of float32, shape (n_samples, n_channels), optional
            C-contiguous buffer to fill (no allocation).

        Returns
        -------
        ndarray of float32, shape (n_samples, n_channels)
            EEG in µV.
        """
        n_samples = int(n_samples)
        if n_samples < 0:
            raise ValueError("n_samples must be >= 0")
        if out is None:
            out = np.empty((n_samples, self.n_channels), dtype=np.float32)
        elif out.shape != (n_samples, self.n_channels) or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(f"out must be C-contiguous float32 of shape {(n_samples, self.n_channels)}")
        target = 0.0 if self.plant is None else self.plant.gain_per_mA * float(stim_mA)
        start = self._samples
        done = 0
        while done < n_samples:
            if self._block_pos == _NOISE_BLOCK:
                self._rng_noise.standard_normal(out=self._noise)
                self._rng_proc.standard_normal(out=self._proc)
                self._block_pos = 0
            m = min(n_samples - done, _NOISE_BLOCK - self._block_pos)
            b = self._block_pos
            _synth_kernel(
                out[done : done + m],
                start + done,
                self._noise[b : b + m],
                self._proc[b : b + m],
                self._state,
                self._pink_state,
                self._pink_poles,
                self._pink_zeros,
                self._pink_buf,
                self._mix_ptr,
                self._mix_idx,
                self._mix_w,
                self.alpha_topography,
                self.theta_topography,
                self._line_sin,
                self._line_cos,
                self._params,
                target,
                self._truth,
            )
            self._block_pos += m
            done += m
        self._add_blinks(out, start, start + n_samples)
        self._samples = start + n_samples
        return out

    def _draw_blink_gap(self, after: int) -> int:
        """Sample index of the next blink onset, at least one blink plus 0.2 s after ``after``."""
        if self._blink_rate <= 0:
            return np.iinfo(np.int64).max
        refractory = self._blink_shape.size / self.sfreq + 0.2
        mean_gap = 60.0 / self._blink_rate
        gap = refractory + self._rng_blink.exponential(max(mean_gap - refractory, 1e-9))
        return after + int(round(gap * self.sfreq))

    def _add_blinks(self, out: np.ndarray, start: int, end: int) -> None:
        length = self._blink_shape.size
        while True:
            if self._blink_active is not None:
                onset, amplitude = self._blink_active
                lo, hi = max(onset, start), min(onset + length, end)
                if hi > lo:
                    _add_transient(
                        out, lo - start, self._blink_shape, lo - onset, hi - lo, amplitude, self.blink_topography
                    )
                if onset + length > end:
                    return
                self._blink_active = None
            if self._next_blink >= end:
                return
            onset = self._next_blink
            amplitude = self._rng_blink.uniform(*self._blink_uV)
            self._blink_active = (onset, amplitude)
            self._events.append((onset, "blink"))
            self._next_blink = self._draw_blink_gap(onset)
