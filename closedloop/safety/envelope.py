"""The effective safety envelope of a pipeline: device limits, tightened by ``[safety]``."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

from closedloop.safety.layer import SafetyEvent, SafetyLayer, TESEnvelope

if TYPE_CHECKING:
    from closedloop.config import PipelineConfig, ResolvedPipeline
    from closedloop.devices import DeviceProfile


def check_pipeline_limits(cfg: "PipelineConfig", profile: "DeviceProfile") -> list[str]:
    """Problems between a pipeline's controller/overrides and its device profile, each naming its key."""
    problems: list[str] = []
    c = cfg.controller
    f = cfg.features
    fs = cfg.sfreq
    if profile.device.modality == "tes":
        amp = getattr(c, "amplitude_mA", None)
        if amp is not None and amp > profile.limit("max_amplitude_mA"):
            problems.append(
                f"controller.amplitude_mA: {amp} mA exceeds the device limit "
                f"{profile.limit('max_amplitude_mA')} mA ({profile.device.name})"
            )
        fr = getattr(c, "frequency_Hz", None)
        if fr is not None and not profile.limit("min_frequency_Hz") <= fr <= profile.limit("max_frequency_Hz"):
            problems.append(
                f"controller.frequency_Hz: {fr} Hz outside the device range "
                f"[{profile.limit('min_frequency_Hz')}, {profile.limit('max_frequency_Hz')}] Hz"
            )
    watchdog = cfg.safety.watchdog_timeout_s or profile.limits.get("watchdog_timeout_s")
    watchdog = getattr(watchdog, "value", watchdog)
    if watchdog is not None and f.hop_samples / fs >= watchdog:
        problems.append(
            f"features.hop_samples: a frame every {f.hop_samples / fs:.3g} s is slower than the watchdog "
            f"({watchdog} s) would allow; allowed: hop_samples < {math.floor(watchdog * fs)}"
        )
    for key, val in cfg.safety.model_dump(exclude_none=True).items():
        if key not in profile.limits:
            problems.append(f"safety.{key}: the {profile.device.modality} profile has no such limit")
        elif val > profile.limit(key):
            problems.append(
                f"safety.{key}: {val} is looser than the device limit {profile.limit(key)}; "
                "overrides may only tighten"
            )
    return problems


def build_safety_layer(resolved: "ResolvedPipeline", on_event: Callable[[SafetyEvent], None] | None = None) -> SafetyLayer:
    """The safety layer enforcing a resolved pipeline's effective envelope."""
    return SafetyLayer(TESEnvelope.from_envelope(resolved.envelope()), on_event=on_event)
