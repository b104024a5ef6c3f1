"""Device adapters, found by the name a device profile gives."""

from closedloop.adapters.base import Adapter, LimitViolation
from closedloop.adapters.simulated import SimulatedStimulator
from closedloop.devices import DeviceProfile

_REGISTRY = {"simulated": SimulatedStimulator}


def build_adapter(profile: DeviceProfile) -> Adapter:
    """Instantiate the adapter a device profile names."""
    try:
        cls = _REGISTRY[profile.device.adapter]
    except KeyError:
        raise ValueError(
            f"device profile {profile.device.name!r} names adapter {profile.device.adapter!r}; "
            f"available: {sorted(_REGISTRY)}"
        ) from None
    return cls(profile)


__all__ = ["Adapter", "LimitViolation", "SimulatedStimulator", "build_adapter"]
