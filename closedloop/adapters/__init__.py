"""Device adapters, found by the name a device profile gives.

Built-in adapters are listed in :data:`BUILTIN`. Third-party packages add
their own without touching closedloop, through an entry point in the group
``closedloop.adapters`` whose object is a class (or factory) called with the
:class:`~closedloop.config.profile.DeviceProfile`::

    # pyproject.toml of the third-party package
    [project.entry-points."closedloop.adapters"]
    my_stimulator = "my_package.adapter:MyStimulatorAdapter"

A profile then says ``adapter = "my_stimulator"``. Built-in names win over
entry points of the same name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from closedloop.adapters.base import Adapter, AdapterBase, DeviceFault, LimitViolation, contract_problems
from closedloop.adapters.iolog import IOLog, IORecord
from closedloop.adapters.simulated import SimulatedRTMS, SimulatedStimulator, SimulatedTUS
from closedloop.adapters.threaded import ThreadedAdapter
from closedloop.config.profile import DeviceProfile

ENTRY_POINT_GROUP = "closedloop.adapters"

#: Built-in adapters: name -> "module:attribute" (imported on first use).
BUILTIN: dict[str, str] = {
    "simulated": "closedloop.adapters.simulated:simulated_adapter",
    "lsl_commands": "closedloop.adapters.lsl_commands:LSLCommandAdapter",
    "ttl": "closedloop.adapters.ttl:TTLTriggerAdapter",
    "magstim": "closedloop.adapters.magstim:MagstimAdapter",
    "magpro": "closedloop.adapters.magpro:MagProAdapter",
    "starstim": "closedloop.adapters.starstim:StarstimAdapter",
}


def _load(target: str) -> Callable[..., Any]:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_adapters() -> dict[str, str]:
    """Every adapter name with where it comes from (``builtin`` or the entry point's target)."""
    found = {name: "builtin" for name in BUILTIN}
    for name, ep in sorted(_entry_points().items()):
        if name not in found:
            dist = getattr(getattr(ep, "dist", None), "name", None)
            found[name] = f"entry point {ep.value}" + (f" ({dist})" if dist else "")
    return found


def adapter_factory(name: str) -> Callable[..., Any]:
    """Return the class or factory registered as ``name``.

    Raises
    ------
    ValueError
        If no built-in adapter or entry point has that name (the message lists those that exist).
    """
    if name in BUILTIN:
        return _load(BUILTIN[name])
    eps = _entry_points()
    if name in eps:
        return eps[name].load()
    raise ValueError(f"no adapter named {name!r}; available: {sorted(available_adapters())}")


def _uses_motor_threshold(factory: Any) -> bool:
    return bool(getattr(factory, "uses_motor_threshold", False))


def needs_motor_threshold(profile: DeviceProfile) -> bool:
    """Whether the profile's adapter converts %MT to %MSO and the profile gives no threshold itself.

    Such a session must pass the participant's ``motor_threshold_pct_mso``
    (pipeline key ``[device] motor_threshold_pct_mso``). Unknown adapters count as not needing it.
    """
    if profile.device.modality != "rtms" or "motor_threshold_pct_mso" in profile.adapter_options:
        return False
    try:
        factory = adapter_factory(profile.device.adapter)
    except (ValueError, ImportError):
        return False
    lim = profile.limits.get("max_intensity_pct")
    in_mso = lim is not None and lim.unit.replace(" ", "").upper() == "%MSO"
    return _uses_motor_threshold(factory) and not in_mso


def build_adapter(profile: DeviceProfile, **kwargs: Any) -> Adapter:
    """Instantiate the adapter a device profile names (keyword arguments go to its constructor).

    ``motor_threshold_pct_mso`` is passed only to adapters that convert %MT
    to %MSO (``uses_motor_threshold = True``, e.g. Magstim and MagPro);
    ``None`` or another adapter drops it (they set no intensity themselves).
    """
    try:
        factory = adapter_factory(profile.device.adapter)
    except ValueError as e:
        raise ValueError(f"device profile {profile.device.name!r}: {e}") from None
    if "motor_threshold_pct_mso" in kwargs and (
        kwargs["motor_threshold_pct_mso"] is None or not _uses_motor_threshold(factory)
    ):
        kwargs.pop("motor_threshold_pct_mso")
    adapter = factory(profile, **kwargs)
    missing = contract_problems(adapter)
    if missing:
        origin = f"{type(adapter).__module__}.{type(adapter).__qualname__}"
        raise ValueError(
            f"device profile {profile.device.name!r}: adapter {profile.device.adapter!r} ({origin}) does not "
            f"implement the adapter contract: missing {', '.join(missing)} (see closedloop.adapters.base.Adapter)"
        )
    return adapter


__all__ = [
    "Adapter",
    "AdapterBase",
    "BUILTIN",
    "DeviceFault",
    "ENTRY_POINT_GROUP",
    "IOLog",
    "IORecord",
    "LimitViolation",
    "SimulatedRTMS",
    "SimulatedStimulator",
    "SimulatedTUS",
    "ThreadedAdapter",
    "adapter_factory",
    "available_adapters",
    "build_adapter",
    "contract_problems",
    "needs_motor_threshold",
]
