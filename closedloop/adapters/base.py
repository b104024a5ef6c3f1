"""The adapter contract: the last step before a stimulator.

An adapter speaks one stimulator's protocol. A runtime uses it like this::

    adapter = build_adapter(profile)
    adapter.connect()              # open the link, take remote control (blocking, bounded)
    adapter.arm()                  # enable output (blocking, bounded)
    adapter.apply(command, now)    # every update; returns at once, I/O runs on the adapter's thread
    if adapter.fault: ...          # poll: set when the device stopped acknowledging
    adapter.emergency_stop()       # watchdog tripped: output off now (returns at once)
    adapter.stop()                 # end: drive to the safe state and disconnect (blocking, bounded)

:class:`AdapterBase` holds what every adapter shares (profile, options, an
I/O log, limit re-checks, fault reporting);
:class:`~closedloop.adapters.threaded.ThreadedAdapter` adds an I/O thread for
adapters that talk over a wire, with retries where they are safe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, runtime_checkable

from closedloop.adapters.command_checks import CHECKS, TrainGuard, missing_limits
from closedloop.adapters.iolog import IOLog, IORecord
from closedloop.config.profile import DeviceProfile
from closedloop.types import Command


class LimitViolation(RuntimeError):
    """An adapter refused a command outside the device profile (defence in depth)."""


class DeviceFault(RuntimeError):
    """The device failed (no reply, garbled or error reply, link lost); it was driven safe."""


@runtime_checkable
class Adapter(Protocol):
    """The contract every adapter fulfils: what the runtime calls, directly, on every path.

    Attributes
    ----------
    fault : str or None
        ``None`` while healthy; the reason once the device has failed (the
        adapter has then driven it to its safe state and ignores commands).
    on_ack : callable or None
        Set by the runtime; called (no arguments, any thread) whenever the
        device acknowledges an exchange — it feeds the watchdog.
    on_record : callable or None
        Set by the runtime; called with every
        :class:`~closedloop.adapters.iolog.IORecord` (each byte sent and
        received, each state change and fault) so the session records them.
    """

    fault: str | None
    on_ack: Callable[[], None] | None
    on_record: Callable[[IORecord], None] | None

    def connect(self) -> None:
        """Open the link and take remote control; raise :class:`DeviceFault` on failure."""
        ...

    def arm(self) -> None:
        """Enable output (arm the stimulator / start the stimulation protocol)."""
        ...

    def disarm(self) -> None:
        """Disable output, keep the connection."""
        ...

    def rearm(self) -> None:
        """Arm again after an abort disarmed the device (no effect when faulted, stopped or armed)."""
        ...

    def apply(self, command: Command, now: float) -> None:
        """Send ``command`` without blocking; raise :class:`LimitViolation` if outside the profile."""
        ...

    def emergency_stop(self) -> None:
        """Turn the output off as fast as the device allows; return at once."""
        ...

    def stop(self) -> None:
        """Drive the device to its safe state (output off) and disconnect."""
        ...

    def output_mA(self, now: float) -> float:
        """Return the current the device delivers at ``now`` (0 for devices without a current)."""
        ...

    def status(self) -> dict[str, object]:
        """Return the adapter's state for displays and the summary."""
        ...


#: Every member of the :class:`Adapter` contract, as checked by :func:`contract_problems`.
CONTRACT_METHODS = ("connect", "arm", "disarm", "rearm", "apply", "emergency_stop", "stop", "output_mA", "status")
CONTRACT_ATTRIBUTES = ("fault", "on_ack", "on_record")


def contract_problems(adapter: object) -> list[str]:
    """Return what ``adapter`` lacks of the :class:`Adapter` contract (empty: it fulfils it)."""
    missing = [f"{name}()" for name in CONTRACT_METHODS if not callable(getattr(adapter, name, None))]
    missing += [name for name in CONTRACT_ATTRIBUTES if not hasattr(adapter, name)]
    return missing


_lsl_clock: Callable[[], float] | None = None


def lsl_clock() -> float:
    """``pylsl.local_clock()``, with liblsl configured first (see :mod:`closedloop.lslconfig`)."""
    global _lsl_clock
    if _lsl_clock is None:
        from closedloop.lslconfig import configure_lsl

        configure_lsl()
        import pylsl

        _lsl_clock = pylsl.local_clock
    return _lsl_clock()


class AdapterBase:
    """Shared machinery of the built-in adapters.

    Parameters
    ----------
    profile : DeviceProfile
        The device profile; its ``[adapter_options]`` configure the link.
    clock : callable, optional
        Time source for the I/O log (default: the LSL clock).
    on_record : callable, optional
        Called with every :class:`~closedloop.adapters.iolog.IORecord`
        (e.g. by the recorder); must not block.
    on_fault : callable, optional
        Called once with the fault reason when the device fails.
    on_ack : callable, optional
        Called (without arguments, from the I/O thread) whenever the device
        acknowledges an exchange, e.g. to feed a watchdog; :attr:`last_ack`
        holds the time of the last one.
    log_size : int
        Records kept in the in-memory log.
    """

    #: Modalities this adapter can drive.
    modalities: ClassVar[tuple[str, ...]] = ("tes", "rtms", "tus")
    #: Limits the profile must define for this adapter to enforce them.
    required_limits: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        profile: DeviceProfile,
        *,
        clock: Callable[[], float] | None = None,
        on_record: Callable[[IORecord], None] | None = None,
        on_fault: Callable[[str], None] | None = None,
        on_ack: Callable[[], None] | None = None,
        log_size: int = 5000,
    ) -> None:
        if profile.device.modality not in self.modalities:
            raise ValueError(
                f"adapter {type(self).__name__} drives {self.modalities}, but profile "
                f"{profile.device.name!r} is {profile.device.modality!r}"
            )
        missing = missing_limits(profile, self.limits_needed(profile))
        if missing:
            raise ValueError(
                f"device profile {profile.device.name!r} lacks limits {missing} that adapter "
                f"{type(self).__name__} enforces; each needs a value and a source"
            )
        self.profile = profile
        self.name = profile.device.name
        self.modality = profile.device.modality
        self.clock = clock or lsl_clock
        self.log = IOLog(self.clock, maxlen=log_size, callback=on_record)
        self.on_fault = on_fault
        self.on_ack: Callable[[], None] | None = on_ack
        self.last_ack: float | None = None
        self.fault: str | None = None
        self.connected = False
        self.armed = False
        self.commands = 0
        self.refused = 0
        self.dropped = 0
        self.last_command: Command | None = None
        self.guard = TrainGuard.from_profile(profile) if self.modality in ("rtms", "tus") else None
        #: measured delay from ``apply`` to the output (s): 0 for adapters that act inside ``apply``; adapters
        #: that hand the work to a thread measure it (a phase trigger adds it to its prediction horizon)
        self.output_latency_s = 0.0
        self._fault_lock = threading.Lock()

    @classmethod
    def limits_needed(cls, profile: DeviceProfile) -> tuple[str, ...]:
        """Limits this adapter enforces for ``profile`` (default: :attr:`required_limits`)."""
        return cls.required_limits

    # -- options ---------------------------------------------------------------
    def option(self, key: str, default: Any) -> Any:
        """``[adapter_options]`` value ``key`` converted to the type of ``default``."""
        value = self.profile.adapter_options.get(key, default)
        if default is None or isinstance(value, type(default)):
            return value
        try:
            if isinstance(default, bool):
                return str(value).strip().lower() in ("1", "true", "yes", "on")
            return type(default)(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"device profile {self.name!r}: adapter_options.{key} = {value!r} is not a {type(default).__name__}"
            ) from None

    # -- limits ----------------------------------------------------------------
    def problems(self, command: Command, now: float) -> list[str]:
        """Why ``command`` must be refused (empty list: allowed)."""
        profile = self.profile
        problems = CHECKS[profile.device.modality](command, profile)  # check_command, one call less per command
        if self.guard is not None:
            problems += self.guard.check(command, now)
        return problems

    def _refuse(self, command: Command, problems: list[str]) -> None:
        self.refused += 1
        msg = (
            f"{self.name}: refused command outside the device profile: {'; '.join(problems)}; "
            "device driven to its safe state"
        )
        self.log.add("event", note=msg)
        raise LimitViolation(msg)

    def required_option(self, key: str, adapter: str, what: str = "") -> str:
        """``[adapter_options]`` string ``key``; a ValueError naming ``adapter`` when missing or empty."""
        value = self.option(key, "")
        if not value:
            raise ValueError(f"device profile {self.name!r}: adapter_options.{key}{what} is required for {adapter}")
        return value

    # -- lifecycle gates ---------------------------------------------------------
    def _require_usable(self, what: str) -> None:
        """Raise unless ``what`` (e.g. ``"arm"``) may run: DeviceFault when faulted, RuntimeError before connect."""
        if self.fault is not None:
            raise DeviceFault(f"{self.name}: cannot {what}: {self.fault}")
        if not self.connected:
            raise RuntimeError(f"{self.name}: {what}() before connect()")

    def _accepts_commands(self) -> bool:
        """Gate of ``apply``: False (the command counted as dropped) when faulted; RuntimeError before connect."""
        if self.fault is not None:
            self.dropped += 1
            return False
        if not self.connected:
            raise RuntimeError(f"{self.name}: apply() before connect()")
        return True

    # -- faults ----------------------------------------------------------------
    def _set_fault(self, reason: str) -> bool:
        """Record the first fault; return True if this call set it."""
        with self._fault_lock:
            if self.fault is not None:
                return False
            self.fault = reason
        self.armed = False
        self.log.add("fault", note=reason)
        if self.on_fault is not None:
            try:
                self.on_fault(reason)
            except Exception:  # noqa: BLE001 - a callback bug must not hide the fault
                pass
        return True

    def _acked(self) -> None:
        """Note that the device acknowledged (or, without replies, accepted) an exchange."""
        self.last_ack = self.clock()
        if self.on_ack is not None:
            try:
                self.on_ack()
            except Exception:  # noqa: BLE001
                pass

    @property
    def on_record(self) -> Callable[[IORecord], None] | None:
        """Called with every I/O record (see :class:`Adapter`)."""
        return self.log.callback

    @on_record.setter
    def on_record(self, fn: Callable[[IORecord], None] | None) -> None:
        self.log.callback = fn

    # -- shared behaviour ------------------------------------------------------
    def rearm(self) -> None:
        """Arm again after an abort disarmed the device (no effect when faulted, disconnected or armed)."""
        if self.fault is None and self.connected and not self.armed:
            self.arm()  # type: ignore[attr-defined]  # every concrete adapter defines arm()

    def output_mA(self, now: float) -> float:
        """Return the current the device delivers at ``now`` (tES adapters; 0 otherwise)."""
        return 0.0

    def status(self) -> dict[str, object]:
        """Return the adapter's state for displays and the summary."""
        last = self.log.last()
        return {
            "adapter": type(self).__name__,
            "device": self.name,
            "modality": self.modality,
            "connected": self.connected,
            "armed": self.armed,
            "fault": self.fault,
            "commands": self.commands,
            "refused": self.refused,
            "dropped": self.dropped,
            "io_records": self.log.total,
            "last_io_time": last.time if last else None,
            "last_ack": self.last_ack,
        }
