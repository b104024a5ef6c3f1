"""Neuroelectrics Starstim (tACS/tDCS) through NIC2's remote-stimulation TCP server.

Written from the public protocol description (docs/devices.md and
:mod:`closedloop.adapters.nic2_protocol`). NIC2 runs the stimulation
*protocol* a researcher designed in NIC2 (montage, phases, duration,
ramps); closedloop loads and starts it, then changes the amplitude online.
Design the protocol with 0 µA on every channel and a duration longer than
the session: closedloop then sets the current, and NIC2 stays in charge of
the montage.

Sequence: connect → version handshake → remote-control permission (the NIC2
operator clicks "yes") → load the protocol (``connect``); start it and wait
for "stimulation full" (``arm``); online amplitude changes with a transition
time, each confirmed by a status query (``apply``); zero, abort and unload
(``stop``). Online changes are sent only at "stimulation full"; a status
other than that while armed is a fault (stimulation ended on the device).

``[adapter_options]``: ``host`` (127.0.0.1), ``tcp_port`` (1235),
``protocol`` (name of the NIC2 protocol, required), ``stim_type`` (``tacs``
or ``tdcs``), ``n_channels`` (8), ``channel_weights`` (comma-separated, one
per channel; µA on channel *i* = weight × amplitude; tDCS weights must sum to
0), ``min_update_interval_s`` (0.1: the fastest NIC2 transition is 100 ms),
``heartbeat_s`` (1.0), ``poll_s`` (0.05), ``remote_timeout_s`` (30),
``load_timeout_s`` (20), ``client_version`` (``"04.07"``, **verify**),
``arm_on_connect`` (false), plus those of
:class:`~closedloop.adapters.threaded.ThreadedAdapter`.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from closedloop.adapters import nic2_protocol as P
from closedloop.adapters.base import DeviceFault
from closedloop.adapters.command_checks import TES_LIMITS
from closedloop.adapters.threaded import ThreadedAdapter
from closedloop.adapters.transport import GarbledReply, TcpLink
from closedloop.config.profile import DeviceProfile
from closedloop.types import Command


class StarstimAdapter(ThreadedAdapter):
    """Drive a Starstim through NIC2 (tES)."""

    modalities = ("tes",)
    lost_link_advice = "NIC2 may keep the protocol running: abort it in NIC2"
    required_limits = TES_LIMITS
    refusal_disarms = False  # a refused command zeroes the current; the protocol keeps running

    def __init__(self, profile: DeviceProfile, **kwargs: Any) -> None:
        super().__init__(profile, **kwargs)
        self.host = self.option("host", "127.0.0.1")
        self.tcp_port = self.option("tcp_port", 1235)
        self.protocol = self.required_option("protocol", "starstim", " (the NIC2 protocol to load)")
        self.stim_type = self.option("stim_type", "tacs")
        if self.stim_type not in ("tacs", "tdcs"):
            raise ValueError(f"device profile {self.name!r}: adapter_options.stim_type must be tacs or tdcs")
        self.n_channels = self.option("n_channels", 8)
        weights = [float(w) for w in str(self.option("channel_weights", "1,-1")).split(",") if w.strip()]
        if len(weights) > self.n_channels or not any(weights):
            raise ValueError(
                f"device profile {self.name!r}: channel_weights needs 1-{self.n_channels} values, not all zero"
            )
        self.weights = weights + [0.0] * (self.n_channels - len(weights))
        if self.stim_type == "tdcs" and abs(sum(self.weights)) > 1e-9:
            raise ValueError(
                f"device profile {self.name!r}: tDCS channel_weights must sum to 0 "
                f"(currents balance at every instant), got {sum(self.weights)}"
            )
        self.min_interval_s = self.option("min_update_interval_s", 0.1)
        self.heartbeat_s = self.option("heartbeat_s", 1.0)
        self.poll_s = self.option("poll_s", 0.05)
        self.remote_timeout_s = self.option("remote_timeout_s", 30.0)
        self.load_timeout_s = self.option("load_timeout_s", 20.0)
        self.client_version = self.option("client_version", "04.07")
        self.arm_on_connect = self.option("arm_on_connect", False)
        self.nic_status: int | None = None
        self.stim_status: int | None = None
        self.sent_uA = 0
        self.frequency_Hz: float | None = None
        self.changes_sent = 0
        self._last_send = float("-inf")
        # output model for output_mA(): (from_mA, to_mA, t0, duration_s) in the adapter's clock
        self._ramp = (0.0, 0.0, 0.0, 0.0)
        self._ramp_lock = threading.Lock()
        self._warned_not_armed = False

    def heartbeat_interval(self) -> float | None:
        """Return how often the device must hear from us when idle (s), or ``None``."""
        return self.heartbeat_s

    # -- wire ---------------------------------------------------------------------
    def _query(self, code: int, what: str, param: str | None = None) -> int:
        msg = bytes([code]) + (param.encode("ascii") + b"\0" if param is not None else b"")

        def exchange() -> int:
            self.link.drain()
            self.link.write(msg, what)
            status = self.link.read_exact(1, self.reply_timeout_s, what)[0]
            if status not in P.STATUS:
                raise GarbledReply(f"byte {status} is not a NIC2 status code")
            return status

        status = self._transact(exchange, what)
        if code == P.QUERY_STATUS_PROTOCOL:
            self.stim_status = status
        else:
            self.nic_status = status
        if status == P.ERROR:
            raise DeviceFault(f"{self.name}: error reply to {what}: NIC2 reports {P.describe(status)}")
        return status

    def _send(self, code: int, what: str, param: str | None = None) -> None:
        msg = bytes([code]) + (param.encode("ascii") + b"\0" if param is not None else b"")
        self._transact(lambda: self.link.write(msg, what), what, retry=False)

    def _poll(self, code: int, accept: set[int], fail: dict[int, str], timeout_s: float, what: str) -> int:
        deadline = time.monotonic() + timeout_s
        while True:
            status = self._query(code, what)
            if status in accept:
                return status
            if status in fail:
                raise DeviceFault(f"{self.name}: {fail[status]} ({P.describe(status)})")
            if time.monotonic() > deadline:
                raise DeviceFault(f"{self.name}: {what}: still {P.describe(status)} after {timeout_s} s")
            time.sleep(self.poll_s)

    def _amplitudes(self, amplitude_mA: float) -> list[int]:
        uA = amplitude_mA * 1000.0
        if self.stim_type == "tacs":
            return [int(round(abs(w) * uA)) for w in self.weights]
        return [int(round(w * uA)) for w in self.weights]

    def _set_amplitude(self, amplitude_mA: float, transition_s: float, what: str) -> None:
        transition_ms = int(min(max(round(transition_s * 1000), P.MIN_TRANSITION_MS), P.MAX_TRANSITION_MS))
        values = self._amplitudes(amplitude_mA)
        code = P.ONLINE_TACS_AMPLITUDE if self.stim_type == "tacs" else P.ONLINE_TDCS_AMPLITUDE
        self._send(code, what, ";".join(str(v) for v in values) + f";{transition_ms}")
        now = self.clock()
        with self._ramp_lock:
            self._ramp = (self._model(now), amplitude_mA, now, transition_ms / 1000.0)
        self.sent_uA = int(round(amplitude_mA * 1000.0))
        self._last_send = time.monotonic()
        self.changes_sent += 1
        status = self._query(P.QUERY_STATUS_PROTOCOL, f"confirm {what}")
        if status != P.FULL:
            overall = self._query(P.QUERY_STATUS, "status after a failed change")
            raise DeviceFault(
                f"{self.name}: stimulation is no longer at full after {what}: "
                f"{P.describe(status)}, NIC2 {P.describe(overall)}"
            )

    # -- hooks -----------------------------------------------------------------------
    def _io_open(self) -> None:
        self.link = TcpLink(self.host, self.tcp_port, self.connect_timeout_s, self.log)
        status = self._query(P.VERSION, "version handshake", self.client_version)
        if status == P.SYNCHRONIZING:
            self._poll(P.QUERY_STATUS, {P.IDLE, P.REMOTE_ALLOWED}, {}, self.remote_timeout_s, "synchronizing")
        self._poll(
            P.QUERY_STATUS,
            {P.REMOTE_ALLOWED},
            {P.REMOTE_REJECTED: "the NIC2 operator rejected remote control"},
            self.remote_timeout_s,
            "remote-control permission",
        )
        status = self._query(P.QUERY_STATUS, "status before loading")
        if status in (P.RUNNING, P.LOADING):
            raise DeviceFault(f"{self.name}: NIC2 is busy ({P.describe(status)}); stop it before connecting")
        self._send(P.LOAD_PROTOCOL, f"load protocol {self.protocol!r}", self.protocol)
        self._poll(
            P.QUERY_STATUS,
            {P.LOADED},
            {P.NOT_LOADED: f"protocol {self.protocol!r} was not loaded (wrong name or not allowed)"},
            self.load_timeout_s,
            "loading the protocol",
        )
        if self.arm_on_connect:
            self._io_arm()
            self.armed = True
            self.log.add("event", note="armed on connect (adapter_options.arm_on_connect)")

    def _io_arm(self) -> None:
        self._send(P.START_PROTOCOL, "start protocol")
        self._poll(
            P.QUERY_STATUS,
            {P.RUNNING},
            {P.NOT_LOADED: "no protocol loaded"},
            self.arm_timeout_s,
            "starting the protocol",
        )
        self._poll(
            P.QUERY_STATUS_PROTOCOL,
            {P.FULL},
            {P.STIM_FINISHED: "the protocol ended before reaching full stimulation"},
            self.arm_timeout_s,
            "ramping up to full stimulation",
        )
        self.sent_uA = 0

    def _io_disarm(self) -> None:
        self._zero_and_abort(wait=True)

    def _io_apply(self, command: Command) -> None:
        wait = self._last_send + self.min_interval_s - time.monotonic()
        if wait > 0:
            time.sleep(wait)  # pace the changes; meanwhile newer commands replace this one
        command = self._latest or command
        if not self.armed:
            if command.amplitude_mA > 0 and not self._warned_not_armed:
                self._warned_not_armed = True
                self.log.add("event", note="not armed: amplitude changes are not sent (call arm())")
            return
        target_uA = int(round(command.amplitude_mA * 1000.0))
        if self.stim_type == "tacs" and command.frequency_Hz > 0 and command.frequency_Hz != self.frequency_Hz:
            if self.sent_uA != 0:
                self._set_amplitude(0.0, self.min_interval_s, "amplitude 0 before a frequency change")
                time.sleep(max(self.min_interval_s, P.MIN_TRANSITION_MS / 1000.0))
            freq = f"{command.frequency_Hz:g}"
            self._send(
                P.ONLINE_TACS_FREQUENCY, f"set frequency {freq} Hz", ";".join(freq if w else "0" for w in self.weights)
            )
            self.frequency_Hz = command.frequency_Hz
        if target_uA != self.sent_uA:
            self._set_amplitude(command.amplitude_mA, self.min_interval_s, f"set amplitude {target_uA} µA")

    def _io_heartbeat(self) -> None:
        if self.armed:
            status = self._query(P.QUERY_STATUS_PROTOCOL, "status poll")
            if status not in (P.FULL, P.RAMP_UP):
                overall = self._query(P.QUERY_STATUS, "status after the poll")
                raise DeviceFault(
                    f"{self.name}: stimulation ended on the device: {P.describe(status)}, NIC2 {P.describe(overall)}"
                )
        else:
            self._query(P.QUERY_STATUS, "status poll")

    def _zero_and_abort(self, wait: bool) -> None:
        try:
            if self.armed and self.sent_uA != 0 and self.stim_status == P.FULL:
                self._set_amplitude(0.0, P.MIN_TRANSITION_MS / 1000.0, "amplitude 0 (safe state)")
        finally:
            self.armed = False
            with self._ramp_lock:
                now = self.clock()
                self._ramp = (self._model(now), 0.0, now, P.MIN_TRANSITION_MS / 1000.0)
            status = self._query(P.QUERY_STATUS, "status before abort")
            if status == P.RUNNING:
                self._send(P.ABORT_PROTOCOL, "abort protocol")
                if wait:
                    self._poll(
                        P.QUERY_STATUS, {P.ABORTED, P.FINISHED}, {}, self.stop_timeout_s / 2, "aborting the protocol"
                    )

    def _io_safe(self) -> None:
        self._zero_and_abort(wait=True)
        status = self._query(P.QUERY_STATUS, "status before unload")
        if status in (P.LOADED, P.ABORTED, P.FINISHED):
            self._send(P.UNLOAD_PROTOCOL, "unload protocol")
            # confirm it, so stop() returns only once NIC2 has actually unloaded the protocol
            self._poll(P.QUERY_STATUS, {P.NOT_LOADED}, {}, self.stop_timeout_s / 2, "unloading the protocol")

    def _io_refusal_safe(self) -> None:
        if self.armed and self.sent_uA != 0:
            self._set_amplitude(0.0, P.MIN_TRANSITION_MS / 1000.0, "amplitude 0 after a refused command")

    def _io_emergency(self) -> None:
        self.armed = False
        with self._ramp_lock:
            now = self.clock()
            self._ramp = (self._model(now), 0.0, now, 0.0)
        if self._query(P.QUERY_STATUS, "status before the emergency abort") == P.RUNNING:
            self._send(P.ABORT_PROTOCOL, "abort protocol (emergency stop)")
            self._poll(P.QUERY_STATUS, {P.ABORTING, P.ABORTED, P.FINISHED}, {}, 1.0, "emergency abort")

    # -- output model ---------------------------------------------------------------
    def _model(self, now: float) -> float:
        a0, a1, t0, dur = self._ramp
        if dur <= 0 or now >= t0 + dur:
            return a1
        if now <= t0:
            return a0
        return a0 + (a1 - a0) * (now - t0) / dur

    def output_mA(self, now: float) -> float:
        """Amplitude the Starstim delivers at ``now``, modelled from the confirmed changes."""
        with self._ramp_lock:
            return self._model(now)

    def status(self) -> dict[str, object]:
        """Return the adapter's state for displays and the summary."""
        st = super().status()
        st.update(
            nic2=P.describe(self.nic_status) if self.nic_status else None,
            stimulation=P.describe(self.stim_status) if self.stim_status else None,
            sent_uA=self.sent_uA,
            frequency_Hz=self.frequency_Hz,
            changes_sent=self.changes_sent,
        )
        return st
