"""A fitted plant: how stimulation moves a feature, for closed-loop tuning offline (docs/pain-modelling.md).

The model is first order plus dead time (FOPDT), driven by the stimulation
amplitude ``u(t)`` (mA, what the safety layer allowed)::

    tau * dx/dt = gain * u(t - delay) - x

and acts on the feature in one of two ways (``response``):

- ``"additive"``: the feature moves by ``x`` (``gain`` in feature units per mA);
- ``"amplitude"``: the band's amplitude is multiplied by ``1 + x`` (``gain``:
  relative amplitude change per mA, e.g. 0.8 = +80 % per mA), so its power by
  ``(1 + x)^2``; for features in log10 power (``[features] log10 = true``).

Between the brain and the feature sits the measurement, known from the
pipeline (:class:`Measurement`): each frame averages the power over its window
(Hann² weights for ``welch``/``sliding_dft``, a boxcar for ``iir``), then the
features are smoothed by the pipeline's EMA. So ``gain``, ``tau_s`` and
``delay_s`` describe the response itself, not the analysis window, and a plant
identified with one pipeline can be overlaid on a replay with another.

The model runs on a grid of ``m`` steps per frame (``step_s`` about 10 ms)
with the exact zero-order-hold discretisation; :func:`simulate` (vectorised,
for identification) and :class:`PlantSimulator` (one frame at a time, for the
overlay) give the same numbers.

:class:`PlantOverlay` is the frame stage ``closedloop replay --plant`` adds:
the feature the controller reads becomes ``recorded + effect(new commands) -
effect(recorded commands)`` (see :data:`ASSUMPTIONS`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationError

from closedloop.config.base import StrictModel, error_lines
from closedloop.types import Command, Frame, Quality

__all__ = [
    "ASSUMPTIONS",
    "PLANT_FORMAT",
    "Measurement",
    "PlantFile",
    "PlantOverlay",
    "PlantSimulator",
    "measurement_for",
    "read_plant",
    "simulate",
]

#: The ``format`` tag of a plant file.
PLANT_FORMAT = "closedloop.plant/1"

#: What a replay with a plant assumes (docs, plant file, report).
ASSUMPTIONS = (
    "The stimulation effect on the feature is first order plus dead time (gain, time constant, delay), "
    "time-invariant, and the same as in the sessions the plant was identified from (same participant, montage, "
    "state).",
    "Effects add up (superposition): the recorded feature minus the modelled effect of the recorded commands is "
    "what the brain would have shown without stimulation, and the modelled effect of the new commands is added "
    "to it.",
    "The effect does not depend on brain state or phase, and does not change the rest of the EEG: only the "
    "plant's feature is shifted; ratios and relative powers computed inside the feature extractor are not "
    "recomputed (pain_index and rule conditions do see the shifted feature).",
    "The measurement (analysis window, Hann weighting, EMA smoothing) is the replay pipeline's and is modelled "
    "on the effect; quality flags, artefacts and the recording's own noise stay as recorded.",
    "The stimulation input is the amplitude the safety layer allowed at each frame (ramps included), applied "
    "until the next frame.",
)


class PlantFile(StrictModel):
    """A plant file (``closedloop identify``): the fitted model and how it was fitted."""

    format: Literal["closedloop.plant/1"] = PLANT_FORMAT
    feature: str = Field(min_length=1, description="the feature the stimulation moves")
    response: Literal["additive", "amplitude"]
    input: Literal["amplitude_mA"] = "amplitude_mA"
    gain: float = Field(description="additive: feature units per mA; amplitude: relative amplitude change per mA")
    tau_s: float = Field(gt=0, description="time constant (s)")
    delay_s: float = Field(ge=0, description="dead time (s)")
    uncertainty: dict[str, Any] = Field(default_factory=dict)
    fit: dict[str, Any] = Field(default_factory=dict)
    assumptions: list[str] = Field(default_factory=lambda: list(ASSUMPTIONS))


def read_plant(path: str | Path) -> PlantFile:
    """Read and check a plant file.

    Raises
    ------
    ValueError
        One line naming the file and what is wrong.
    """
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"plant file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"plant file {p} cannot be read: {e}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"plant file {p} is not JSON: {e}") from None
    if not isinstance(raw, dict) or raw.get("format") != PLANT_FORMAT:
        raise ValueError(f"{p} is not a plant file (format {PLANT_FORMAT!r}); write one with closedloop identify")
    try:
        return PlantFile.model_validate(raw)
    except ValidationError as e:
        raise ValueError(f"plant file {p}: " + "; ".join(error_lines(e, PlantFile))) from None


# --- measurement ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """How a pipeline turns the effect on the brain into a feature value.

    Attributes
    ----------
    hop_s : float
        Frame interval (s).
    m : int
        Model grid steps per frame.
    weights : ndarray
        Weights of the grid values in a frame's window, oldest first (sum 1).
    ema_alpha : float
        The pipeline's EMA coefficient per frame (1: none).
    log10 : bool
        Whether the feature is log10 of a power.
    """

    hop_s: float
    m: int
    weights: np.ndarray
    ema_alpha: float
    log10: bool

    @property
    def step_s(self) -> float:
        """The model grid step (s)."""
        return self.hop_s / self.m

    def describe(self) -> dict[str, object]:
        """Return the measurement as numbers (for files and reports)."""
        return {
            "hop_s": self.hop_s,
            "grid_step_s": self.step_s,
            "window_s": len(self.weights) * self.step_s,
            "ema_alpha": self.ema_alpha,
            "log10": self.log10,
        }


def _hann_power_weights(window: int, segment: int, seg_step: int) -> np.ndarray:
    """Per sample of the window (oldest first): the Welch average's weight of its power (Hann² per segment)."""
    n_seg = 1 + (window - segment) // seg_step
    w = np.zeros(window)
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(segment) / segment)
    for s in range(n_seg):  # segments aligned to the newest sample
        end = window - s * seg_step
        w[end - segment : end] += hann**2
    return w / w.sum()


def measurement_for(features, sfreq: float, feature: str, step_s: float = 0.01) -> Measurement:
    """Return the measurement a ``[features]`` section applies to ``feature``.

    Parameters
    ----------
    features : FeaturesConfig
        The pipeline's ``[features]``.
    sfreq : float
        Sampling rate (Hz).
    feature : str
        The feature (``pain_index`` is taken as measured without delay: the
        model then absorbs its inputs' window).
    step_s : float
        Largest model grid step (s).
    """
    hop_s = features.hop_samples / sfreq
    if feature == "pain_index":
        return Measurement(hop_s, 1, np.ones(1), 1.0, False)
    window = features.window_samples
    m = max(1, min(200, math.ceil(hop_s / step_s - 1e-9)))
    step = hop_s / m
    n_grid = max(1, round(window / sfreq / step))
    method = features.band_method
    if method == "welch":
        seg = features.segment_samples
        seg_step = max(seg - int(round(features.welch.overlap * seg)), 1) if seg < window else seg
        per_sample = _hann_power_weights(window, seg, seg_step)
    elif method == "sliding_dft":
        per_sample = _hann_power_weights(window, window, window)
    elif features.iir.smoothing == "ema":
        tau = features.iir.tau_s or window / sfreq / 2
        per_sample = np.exp(-(np.arange(window)[::-1]) / (tau * sfreq))
    else:
        per_sample = np.ones(window)
    # grid point j (oldest first) stands for the samples of its step (a sample across two steps is shared)
    cumulative = np.concatenate([[0.0], np.cumsum(per_sample)])
    edges = np.linspace(0.0, window, n_grid + 1)
    weights = np.diff(np.interp(edges, np.arange(window + 1), cumulative))
    weights = weights / weights.sum()
    paf = feature.startswith("paf_")
    alpha = 1.0
    if features.smoothing_s > 0 and not paf:
        alpha = 1.0 - math.exp(-features.hop_samples / (features.smoothing_s * sfreq))
    return Measurement(hop_s, m, weights, alpha, bool(features.log10) and not paf)


# --- the model, vectorised and frame by frame ----------------------------------------------------------------


def _baseline(response: str) -> float:
    return 1.0 if response == "amplitude" else 0.0


def simulate(
    u: np.ndarray,
    gain: float,
    tau_s: float,
    delay_steps: int,
    response: str,
    meas: Measurement,
) -> np.ndarray:
    """Return the modelled change of the feature at each frame, for inputs ``u`` (one per frame, mA).

    ``u[k]`` is applied from frame ``k`` to frame ``k + 1``; frame ``k``'s
    value depends on ``u[:k]`` only. ``delay_steps`` is the dead time in
    grid steps (``meas.step_s``).
    """
    from scipy.signal import lfilter

    u = np.asarray(u, dtype=float)
    m = meas.m
    n = u.shape[0] * m
    ug = np.repeat(u, m)
    ud = np.zeros(n)
    if delay_steps < n:
        ud[delay_steps:] = ug[: n - delay_steps]
    a = math.exp(-meas.step_s / tau_s)
    x = lfilter([0.0, (1.0 - a) * gain], [1.0, -a], ud)
    base = _baseline(response)
    e = (1.0 + x) ** 2 if response == "amplitude" else x
    # frame k averages the window of grid values ending at grid point k*m (values before 0: the baseline)
    L = meas.weights.shape[0]
    padded = np.concatenate([np.full(L - 1, base), e])
    mk = np.lib.stride_tricks.sliding_window_view(padded, L)[::m] @ meas.weights
    if response == "amplitude":
        np.maximum(mk, 1e-12, out=mk)
        delta = np.log10(mk) if meas.log10 else mk - 1.0
    else:
        delta = mk
    if meas.ema_alpha < 1.0 and delta.size:
        al = meas.ema_alpha
        delta = lfilter([al], [1.0, al - 1.0], delta, zi=[(1.0 - al) * delta[0]])[0]
    return delta


class PlantSimulator:
    """The model of :func:`simulate`, one frame at a time.

    Call :meth:`frame` for each frame (it returns that frame's change of the
    feature) and then :meth:`input` with the amplitude applied from it.
    """

    def __init__(self, gain: float, tau_s: float, delay_steps: int, response: str, meas: Measurement) -> None:
        self.gain = float(gain)
        self.response = response
        self.meas = meas
        self.delay = int(delay_steps)
        self._a = math.exp(-meas.step_s / tau_s)
        self._x = 0.0
        self._n = 0  # grid index of the newest x
        self._k = 0  # frames given to frame()
        self._base = _baseline(response)
        L = len(meas.weights)
        self._w = np.asarray(meas.weights, dtype=float)  # oldest first
        self._ring = np.full(2 * L, self._effect(0.0))
        self._p = 0  # the newest value sits at _ring[_p + L - 1] (and _ring[_p - 1])
        self._L = L
        self._ring_u = np.zeros(self.delay // meas.m + 3)
        self._d: float | None = None

    def _effect(self, x: float) -> float:
        return (1.0 + x) ** 2 if self.response == "amplitude" else x

    def input(self, u: float) -> None:
        """Set the amplitude applied from the newest frame on (mA)."""
        self._ring_u[(self._k - 1) % self._ring_u.shape[0]] = u

    def _u_at(self, j: int) -> float:
        if j < 0:
            return 0.0
        return float(self._ring_u[(j // self.meas.m) % self._ring_u.shape[0]])

    def frame(self) -> float:
        """Advance to the next frame; return its modelled change of the feature."""
        target = self._k * self.meas.m
        a, g, L, ring = self._a, self.gain, self._L, self._ring
        x, n, p = self._x, self._n, self._p
        while n < target:
            x = a * x + (1.0 - a) * g * self._u_at(n - self.delay)
            n += 1
            e = self._effect(x)
            ring[p] = e
            ring[p + L] = e
            p += 1
            if p == L:
                p = 0
        self._x, self._n, self._p = x, n, p
        self._k += 1
        mk = float(np.dot(self._w, ring[p : p + L]))
        if self.response == "amplitude":
            mk = max(mk, 1e-12)
            delta = math.log10(mk) if self.meas.log10 else mk - 1.0
        else:
            delta = mk
        al = self.meas.ema_alpha
        if al < 1.0:
            self._d = delta if self._d is None else self._d + al * (delta - self._d)
            return self._d
        return delta


class PlantOverlay:
    """Frame stage of ``replay --plant``: shift the plant's feature by the modelled effect of the new commands.

    Parameters
    ----------
    plant : PlantFile
        The fitted plant.
    meas : Measurement
        The replay pipeline's measurement of the feature.
    recorded_u : ndarray, optional
        The amplitude the recording's own commands allowed at each frame
        (mA): its modelled effect is taken out (a recording without
        stimulation: None).
    """

    names: tuple[str, ...] = ()

    def __init__(self, plant: PlantFile, meas: Measurement, recorded_u: np.ndarray | None = None) -> None:
        self.plant = plant
        self.feature = plant.feature
        self.meas = meas
        delay = round(plant.delay_s / meas.step_s)
        args = (plant.gain, plant.tau_s, delay, plant.response, meas)
        self._new = PlantSimulator(*args)
        self._rec = PlantSimulator(*args) if recorded_u is not None and np.any(recorded_u) else None
        self._recorded = None if self._rec is None else np.asarray(recorded_u, dtype=float)
        self._col = -1
        self._k = 0
        self.effect = 0.0  # the net shift of the newest frame (feature units)
        self.source = ""  # the plant file and its SHA-256 (set by the replay)
        self.sha256 = ""

    @property
    def removes_recorded(self) -> bool:
        """Whether the modelled effect of the recording's own stimulation is taken out."""
        return self._rec is not None

    def bind(self, names: tuple[str, ...]) -> None:
        """Find the plant's feature."""
        self._col = names.index(self.feature)

    def apply(self, t: float, flags: Quality, row: np.ndarray) -> None:
        """Shift the feature of this frame."""
        d = self._new.frame()
        if self._rec is not None:
            d -= self._rec.frame()
            k = self._k
            self._rec.input(float(self._recorded[k]) if k < self._recorded.shape[0] else 0.0)
        self._k += 1
        self.effect = d
        row[self._col] += d

    def observe(self, allowed: Command, frame: Frame) -> None:
        """Take the amplitude the safety layer allowed on this frame as the input from now on."""
        self._new.input(allowed.amplitude_mA if allowed.on else 0.0)
