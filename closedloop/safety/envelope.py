"""The effective safety envelope of a pipeline: device limits, tightened by ``[safety]``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from closedloop.safety.events import SafetyEvent
from closedloop.safety.layer import SafetyLayer
from closedloop.safety.rtms import RTMSEnvelope, RTMSSafetyLayer
from closedloop.safety.tes import TESEnvelope, TESSafetyLayer
from closedloop.safety.tus import TUSEnvelope, TUSSafetyLayer

if TYPE_CHECKING:
    from closedloop.config import PipelineConfig, ResolvedPipeline
    from closedloop.config.profile import DeviceProfile

#: The envelope class of each modality.
ENVELOPES = {"tes": TESEnvelope, "rtms": RTMSEnvelope, "tus": TUSEnvelope}


def _controller_modalities(c) -> tuple[str, ...]:
    fn = getattr(c, "modalities", None)
    return tuple(fn()) if callable(fn) else ("tes",)


def _tes_problems(c, profile: DeviceProfile, over: dict[str, float]) -> list[str]:
    problems: list[str] = []
    peak = (
        c.peak_amplitude_mA() if callable(getattr(c, "peak_amplitude_mA", None)) else getattr(c, "amplitude_mA", None)
    )
    device_max = profile.limit("max_amplitude_mA")
    if peak is not None and peak > device_max:
        problems.append(
            f"controller.amplitude_mA: {peak} mA exceeds the device limit {device_max} mA ({profile.device.name})"
        )
    elif peak is not None and peak > over.get("max_amplitude_mA", math.inf):
        problems.append(
            f"controller.amplitude_mA: {peak} mA exceeds this pipeline's "
            f"safety.max_amplitude_mA ({over['max_amplitude_mA']} mA)"
        )
    freqs = c.frequencies_Hz() if callable(getattr(c, "frequencies_Hz", None)) else [getattr(c, "frequency_Hz", None)]
    lo, hi = profile.limit("min_frequency_Hz"), profile.limit("max_frequency_Hz")
    for fr in freqs:
        if fr is not None and not lo <= fr <= hi:
            problems.append(f"controller.frequency_Hz: {fr} Hz outside the device range [{lo}, {hi}] Hz")
    rates = c.ramp_rates_mA_per_s() if callable(getattr(c, "ramp_rates_mA_per_s", None)) else {}
    max_rate = over.get("max_ramp_rate_mA_per_s", profile.limit("max_ramp_rate_mA_per_s"))
    for key, rate in rates.items():
        if rate > max_rate * (1 + 1e-9):
            problems.append(
                f"controller.{key}: {rate:g} mA/s is faster than the allowed ramp rate "
                f"{max_rate:g} mA/s (the safety layer would slow it); use <= {max_rate:g}"
            )
    return problems


def check_pipeline_limits(cfg: PipelineConfig, profile: DeviceProfile) -> list[str]:
    """Problems between a pipeline's controller/overrides and its device profile, each naming its key."""
    problems: list[str] = []
    c = cfg.controller
    f = cfg.features
    fs = cfg.sfreq
    modality = profile.device.modality
    over = cfg.safety.model_dump(exclude_none=True)
    if modality not in _controller_modalities(c):
        problems.append(
            f"controller.kind: {c.kind!r} drives {', '.join(_controller_modalities(c))}; "
            f"the {modality} device profile {profile.device.name!r} needs a controller for {modality}"
        )
    elif modality == "tes":
        problems += _tes_problems(c, profile, over)
    watchdog = over.get("watchdog_timeout_s") or profile.limits.get("watchdog_timeout_s")
    watchdog = getattr(watchdog, "value", watchdog)
    if watchdog is not None and f.hop_samples / fs >= watchdog:
        problems.append(
            f"features.hop_samples: a frame every {f.hop_samples / fs:.3g} s is slower than the watchdog "
            f"({watchdog} s) would allow; allowed: hop_samples < {math.floor(watchdog * fs)}"
        )
    stall = getattr(cfg.source, "stall_timeout_s", None)
    if watchdog is not None and stall is not None and stall < watchdog:
        problems.append(
            f"source.stall_timeout_s: {stall} s ends the session before the watchdog ({watchdog} s) has ramped "
            f"stimulation down; allowed: stall_timeout_s >= {watchdog}"
        )
    bad = over.get("bad_data_timeout_s") or profile.limits.get("bad_data_timeout_s")
    bad = getattr(bad, "value", bad)
    if bad is not None and watchdog is not None and bad < watchdog:
        problems.append(
            f"safety.bad_data_timeout_s: {bad} s is shorter than the watchdog timeout ({watchdog} s); "
            f"allowed: bad_data_timeout_s >= {watchdog}"
        )
    for key, val in over.items():
        if key not in profile.limits:
            problems.append(f"safety.{key}: the {modality} profile has no such limit")
            continue
        device = profile.limit(key)
        looser = val < device if key.startswith("min_") else val > device
        if looser:
            problems.append(f"safety.{key}: {val} is looser than the device limit {device}; overrides may only tighten")
    return problems


def build_envelope(resolved: ResolvedPipeline):
    """Return the envelope dataclass of a resolved pipeline's modality, from its effective limits."""
    modality = resolved.profile.device.modality
    return ENVELOPES[modality].from_envelope(resolved.envelope())


#: The safety layer of each envelope type.
LAYERS: dict[type, type[SafetyLayer]] = {
    TESEnvelope: TESSafetyLayer,
    RTMSEnvelope: RTMSSafetyLayer,
    TUSEnvelope: TUSSafetyLayer,
}


def safety_layer_for(
    envelope,
    clock: Callable[[], float],
    on_event: Callable[[SafetyEvent], None] | None = None,
    auto_arm: bool = True,
) -> SafetyLayer:
    """Return the safety layer that enforces ``envelope`` (chosen by its type) on ``clock``.

    Raises
    ------
    TypeError
        If no layer enforces that kind of envelope.
    """
    try:
        layer = LAYERS[type(envelope)]
    except KeyError:
        raise TypeError(f"no safety layer for envelope type {type(envelope).__name__}") from None
    return layer(envelope, clock, on_event=on_event, auto_arm=auto_arm)


def build_safety_layer(
    resolved: ResolvedPipeline,
    clock: Callable[[], float],
    on_event: Callable[[SafetyEvent], None] | None = None,
    auto_arm: bool = True,
) -> SafetyLayer:
    """Return the safety layer enforcing a resolved pipeline's effective envelope on ``clock``.

    ``auto_arm=True`` arms on the first frame, for a runtime that does not
    call :meth:`~closedloop.safety.layer.SafetyLayer.arm` itself.
    """
    return safety_layer_for(build_envelope(resolved), clock, on_event=on_event, auto_arm=auto_arm)
