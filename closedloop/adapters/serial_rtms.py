"""What the serial rTMS adapters (Magstim, MagPro) share: port, %MT intensities, fire-only traffic."""

from __future__ import annotations

from typing import Any, ClassVar

from closedloop.adapters.command_checks import RTMS_LIMITS, fires
from closedloop.adapters.motor_threshold import MotorThresholdMixin
from closedloop.adapters.threaded import ThreadedAdapter
from closedloop.adapters.transport import SerialLink
from closedloop.config.profile import DeviceProfile
from closedloop.types import Command


class SerialRTMSAdapter(MotorThresholdMixin, ThreadedAdapter):
    """An rTMS stimulator on a serial port whose intensities arrive in %MT.

    Subclasses set :attr:`adapter_name`, :attr:`default_baudrate` and
    :attr:`armed_word`, and implement :meth:`_fire` (program and fire one
    train or pulse, worker thread). ``[adapter_options]``: ``port``
    (required), ``baudrate``, ``motor_threshold_pct_mso``.
    """

    modalities = ("rtms",)
    required_limits = RTMS_LIMITS
    #: The adapter's name in device profiles (used in error messages).
    adapter_name: ClassVar[str]
    default_baudrate: ClassVar[int]
    #: How the device names its armed state ("armed", "enabled") in the log.
    armed_word: ClassVar[str] = "armed"

    def __init__(self, profile: DeviceProfile, *, motor_threshold_pct_mso: float | None = None, **kwargs: Any) -> None:
        super().__init__(profile, **kwargs)
        self._init_intensity(motor_threshold_pct_mso)
        self.port = self.required_option("port", self.adapter_name)
        self.baudrate = self.option("baudrate", self.default_baudrate)

    def problems(self, command: Command, now: float) -> list[str]:
        """Return why ``command`` must be refused (empty: allowed)."""
        return super().problems(command, now) + self._intensity_problems(command)

    def _open_serial(self) -> None:
        """Open the port and discard stale bytes (worker thread)."""
        self.link = SerialLink(self.port, self.baudrate, self.reply_timeout_s, self.log)
        self.link.drain()

    def _io_apply(self, command: Command) -> None:
        """Only a fire needs traffic, and only while armed (otherwise logged and skipped)."""
        if not fires(command):
            return
        if not self.armed:
            self.log.add("event", note=f"fire skipped: not {self.armed_word}")
            return
        self._fire(command)

    def _fire(self, command: Command) -> None:
        raise NotImplementedError
