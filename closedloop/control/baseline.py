"""Thresholds or targets from a calibration block at the start of a session.

For ``duration_s`` of frame time from the first frame the controller only
listens (stimulation off) and collects the feature from usable frames. Then
it sets the ``inner`` controller's thresholds/target from that baseline and
hands every later frame to it. Specifications (docs/control.md: thresholds are
commonly the 25th/75th percentiles of a baseline block)::

    "p25"    25th percentile (numpy's linear interpolation)
    "median" 50th percentile
    "z+1.5"  mean + 1.5 standard deviations (population SD)
    "mean"   mean (= "z0")

In a pipeline::

    [controller]
    kind = "baseline"
    duration_s = 120.0
    derive = { lower = "p25", upper = "p75" }

    [controller.inner]          # any controller; the derived keys are left out
    kind = "dual_threshold"
    feature = "theta_alpha"
    ...
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

import numpy as np
from pydantic import Field, PrivateAttr, ValidationError, model_validator

from closedloop.control.base import ControllerConfigBase, display_state
from closedloop.control.frame_usability import usable
from closedloop.types import Command, Frame

#: Inner-controller keys a baseline may set.
DERIVABLE = ("lower", "upper", "target")

_SPEC = re.compile(r"^(?:p(?P<p>\d+(?:\.\d+)?)|z(?P<z>[+-]?\d+(?:\.\d+)?)|(?P<word>mean|median))$")


def parse_spec(spec: str) -> tuple[str, float]:
    """``"p25"`` → ``("percentile", 25.0)``; ``"z-0.5"`` → ``("z", -0.5)``; ``"mean"``, ``"median"``.

    Raises
    ------
    ValueError
        Naming what is allowed.
    """
    m = _SPEC.match(spec.strip())
    if m is None:
        raise ValueError(f"{spec!r} is not a baseline statistic; use 'p<0-100>', 'median', 'mean' or 'z<±k>'")
    if m["p"] is not None:
        q = float(m["p"])
        if not 0 <= q <= 100:
            raise ValueError(f"{spec!r}: a percentile lies in 0-100")
        return "percentile", q
    if m["z"] is not None:
        return "z", float(m["z"])
    return ("percentile", 50.0) if m["word"] == "median" else ("z", 0.0)


def baseline_value(values: np.ndarray, spec: str) -> float:
    """The statistic ``spec`` of the baseline ``values``."""
    kind, k = parse_spec(spec)
    if kind == "percentile":
        return float(np.percentile(values, k))
    return float(np.mean(values) + k * np.std(values))


#: A stand-in baseline used to validate a pipeline before any data exist.
_REFERENCE = np.linspace(-1.0, 1.0, 201)


def _validate_inner(raw: dict[str, Any]):
    from closedloop.control import inner_config_adapter

    try:
        return inner_config_adapter().validate_python(raw)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"] if str(p) != raw.get("kind"))
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"inner.{loc}: {msg}" if loc else f"inner: {msg}")
        raise ValueError("; ".join(lines)) from None


class BaselineConfig(ControllerConfigBase):
    """``[controller]`` with ``kind = "baseline"``: calibrate, then run ``[controller.inner]``."""

    kind: Literal["baseline"] = "baseline"
    duration_s: float = Field(gt=0, description="length of the calibration block (frame time, s)")
    feature: str | None = Field(None, description="feature the baseline is computed on (default: the inner's)")
    derive: dict[str, str] = Field(description="inner key -> statistic: 'p25', 'median', 'mean', 'z+1.0'")
    min_frames: int = Field(10, ge=2, description="usable frames needed; the block extends until there are")
    inner: dict[str, Any] = Field(description="the controller run after calibration, without the derived keys")
    _placeholder: Any = PrivateAttr(None)

    @model_validator(mode="after")
    def _check(self) -> BaselineConfig:
        if not self.derive:
            raise ValueError("derive: name at least one of " + ", ".join(DERIVABLE))
        for key, spec in self.derive.items():
            if key not in DERIVABLE:
                raise ValueError(f"derive.{key}: only {list(DERIVABLE)} can come from a baseline")
            try:
                parse_spec(spec)
            except ValueError as e:
                raise ValueError(f"derive.{key}: {e}") from None
        if self.inner.get("kind") == "baseline":
            raise ValueError("inner.kind: a baseline cannot wrap another baseline")
        raw = {**self.inner, **{k: baseline_value(_REFERENCE, s) for k, s in self.derive.items()}}
        placeholder = _validate_inner(raw)
        missing = [k for k in self.derive if k not in type(placeholder).model_fields]
        if missing:
            raise ValueError(f"derive: the {placeholder.kind!r} controller has no key {missing}")
        self._placeholder = placeholder
        return self

    @property
    def placeholder(self):
        """The inner config, validated with stand-in derived values."""
        return self._placeholder

    def baseline_feature(self) -> str:
        return self.feature or getattr(self._placeholder, "feature", None) or ""

    def feature_keys(self) -> dict[str, str]:
        keys = {"feature": self.baseline_feature()}
        keys.update({f"inner.{k}": v for k, v in self._placeholder.feature_keys().items()})
        return keys

    def modalities(self) -> tuple[str, ...]:
        return self._placeholder.modalities()

    def peak_amplitude_mA(self) -> float | None:
        return self._placeholder.peak_amplitude_mA()

    def frequencies_Hz(self) -> list[float]:
        return self._placeholder.frequencies_Hz()

    def ramp_rates_mA_per_s(self) -> dict[str, float]:
        return {f"inner.{k}": v for k, v in self._placeholder.ramp_rates_mA_per_s().items()}


class BaselineController:
    """Listen for ``duration_s``, derive the inner controller's thresholds, then delegate to it.

    If the derived values are invalid for the inner controller (e.g. a
    ``lower`` above ``upper`` from mixed statistics) stimulation stays off for
    the session and ``state()["baseline_failed"]`` is 1.
    """

    def __init__(self, config: BaselineConfig) -> None:
        from closedloop.control import build_controller

        self.config = config
        self.feature = config.baseline_feature()
        self.inner = build_controller(config.placeholder)
        self._inner_keys = list(self.inner.state())
        self._values: list[float] = []
        self._t0: float | None = None
        self.calibrated = False
        self.failure = ""
        self.derived = {k: math.nan for k in config.derive}
        freqs = config.placeholder.frequencies_Hz()
        self._frequency = freqs[0] if freqs else 0.0

    def update(self, frame: Frame) -> Command:
        if self.calibrated and not self.failure:
            return self.inner.update(frame)
        if not self.calibrated:
            if self._t0 is None:
                self._t0 = frame.time
            x = frame[self.feature]
            if usable(frame, x):
                self._values.append(x)
            if frame.time - self._t0 >= self.config.duration_s and len(self._values) >= self.config.min_frames:
                self._finish()
        return Command(0.0, self._frequency, False, frame.time)

    def _finish(self) -> None:
        from closedloop.control import build_controller

        values = np.asarray(self._values, dtype=float)
        self.derived = {k: baseline_value(values, s) for k, s in self.config.derive.items()}
        self.calibrated = True
        try:
            cfg = _validate_inner({**self.config.inner, **self.derived})
        except ValueError as e:
            self.failure = f"derived values {self.derived} are invalid: {e}"
            return
        self.inner = build_controller(cfg)

    def state(self) -> dict[str, float]:
        out = {
            "calibrating": float(not self.calibrated),
            "baseline_n": float(len(self._values)),
            "baseline_failed": float(bool(self.failure)),
        }
        out.update({f"baseline_{k}": v for k, v in self.derived.items()})
        running = self.calibrated and not self.failure
        inner = self.inner.state() if running else {}
        out.update({f"inner_{k}": inner.get(k, math.nan) for k in self._inner_keys})
        return out

    def display_state(self) -> dict[str, float]:
        out = {
            "calibrating": float(not self.calibrated),
            "baseline_n": float(len(self._values)),
            "baseline_failed": float(bool(self.failure)),
        }
        if self.calibrated and not self.failure:
            out.update({f"inner_{k}": v for k, v in display_state(self.inner).items()})
        return out
