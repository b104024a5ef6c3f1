"""The safety layer: the only path from a desired command to an applied one.

:class:`SafetyLayer` holds what every modality shares — the layer's clock,
the state machine (idle → armed → stimulating → ramping down → stopped), the
event log and the dose account — and each modality (:mod:`.tes`,
:mod:`.rtms`, :mod:`.tus`) adds its own envelope;
:func:`~closedloop.safety.envelope.safety_layer_for` builds the layer that
matches an envelope.

Time is the layer's own, **injected** clock, read inside every call — never a
time the caller passes in, and never a source's timestamps. Live, that clock
is the local monotonic LSL clock (``pylsl.local_clock``), read at the moment a
command is applied; a replay injects the sample clock, so it stays
deterministic. Every public method reads the clock under the layer's lock, so
the watchdog thread and the loop thread see one monotonic sequence of times. A
clock that goes backwards or returns a non-finite value is a programming error:
the call raises :class:`SafetyClockError` (it is never silently ignored).

The guarantee every layer gives: no applied command leaves the envelope, and
as long as the layer is called at least once every ``watchdog_timeout_s``
(the runtime's contract), no dose or duration limit is ever exceeded — the
layer starts its final ramp early enough. A longer gap between calls is a
watchdog failure the layer can only report (a ``gap`` event).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import ClassVar

from closedloop.safety.dose import Dose
from closedloop.safety.events import EventLog, SafetyEvent
from closedloop.safety.state import ARMED, IDLE, RAMPING_DOWN, STIMULATING, STOPPED, StateMachine, StimState
from closedloop.types import Command


class SafetyClockError(RuntimeError):
    """The safety layer's clock went backwards or returned a non-finite time."""


class SafetyLayer:
    """Bound every command by an envelope; the base of the per-modality layers.

    Parameters
    ----------
    envelope
        The limits in force (a modality's envelope dataclass).
    clock : callable
        The layer's trusted clock (seconds; never decreasing). Live: the local
        monotonic LSL clock; replay: the sample clock.
    on_event : callable, optional
        Called with every logged :class:`SafetyEvent`.
    auto_arm : bool
        Arm on the first :meth:`step` (for runtimes that do not call
        :meth:`arm`). With ``False`` nothing is applied before :meth:`arm`.

    Notes
    -----
    All public methods take a lock, so a watchdog thread may call
    :meth:`emergency_stop` while the loop thread calls :meth:`step`.
    """

    modality: ClassVar[str] = ""

    def __init__(
        self,
        envelope,
        clock: Callable[[], float],
        on_event: Callable[[SafetyEvent], None] | None = None,
        auto_arm: bool = True,
    ) -> None:
        if not callable(clock):
            raise TypeError(f"clock must be a callable returning seconds, not {clock!r}")
        self.env = envelope
        self.clock = clock
        self.log = EventLog(on_event)
        self.machine = StateMachine()
        self.account = Dose()
        self.auto_arm = auto_arm
        self.t: float | None = None
        self.t_start: float | None = None
        self.stop_reason = ""
        self.gaps = 0
        self.suspended: str | None = None  # why stimulation is refused until usable data return
        self._emergency = False  # the emergency ramp rate is in force
        self._emergency_latched = False
        self._ramp_logged: tuple[str, str] | None = None  # the ramp-down under way, logged once (kind, reason)
        self._lock = threading.RLock()

    # -- what the runtime and the summary read -----------------------------------
    @property
    def on_event(self) -> Callable[[SafetyEvent], None] | None:
        """The callback that receives every logged event."""
        return self.log.on_event

    @on_event.setter
    def on_event(self, fn: Callable[[SafetyEvent], None] | None) -> None:
        self.log.on_event = fn

    @property
    def events(self):
        """The logged :class:`SafetyEvent` objects (most recent 1000)."""
        return self.log.events

    @property
    def counts(self) -> dict[str, int]:
        """Number of events of each kind, repeats included."""
        return self.log.counts

    @property
    def clamps(self) -> int:
        """Commands clamped or refused (not counting normal slew limiting)."""
        return self.counts.get("clamp", 0) + self.counts.get("refuse", 0)

    @property
    def state(self) -> StimState:
        """The state machine's current state."""
        return self.machine.state

    @property
    def stopped(self) -> bool:
        """Whether a stop is latched (ramping down or stopped): nothing can rise again."""
        return self.machine.latched

    @property
    def charge_C(self) -> float:
        """Charge delivered so far, ∫|I|dt (C)."""
        return self.account.charge_C

    @property
    def stim_time_s(self) -> float:
        """Time with something applied (s)."""
        return self.account.stim_time_s

    @property
    def amplitude_mA(self) -> float:
        """Applied current (tES); 0 for modalities without a current."""
        return 0.0

    @property
    def active(self) -> bool:
        """Whether anything is being applied right now."""
        raise NotImplementedError

    @property
    def dose(self) -> dict[str, float]:
        """Dose so far, for ``summary.json``."""
        return self.account.as_dict(self.modality)

    def status(self) -> dict[str, object]:
        """State, stop reason and dose in one dict (for displays and summaries)."""
        return {"state": self.state.value, "stop_reason": self.stop_reason, "gaps": self.gaps, **self.dose}

    # -- the ways in --------------------------------------------------------------
    def arm(self, reason: str = "armed by the operator") -> None:
        """Allow stimulation (idle → armed); no effect in any other state."""
        with self._lock:
            if self.machine.state is IDLE:
                t, _ = self._advance()
                self._go(ARMED, t, reason)

    def step(self, desired: Command) -> Command:
        """Return the command allowed now (the layer's clock) given what the controller wants.

        While the layer is :meth:`suspend`-ed (the data hold nothing usable),
        the controller's wish is ignored and the output goes to zero at the
        emergency rate (a running train or sonication is aborted).
        """
        with self._lock:
            t, dt = self._advance()
            self._ramp_logged = None  # a frame: a later ramp-down is a new one
            if self.machine.state is IDLE and self.auto_arm:
                self._go(ARMED, t, "armed automatically on the first frame")
            limit, t_start = self.env.max_session_duration_s, self.t_start  # the session time, on every call
            if (0.0 if t_start is None else t - t_start) >= limit:
                self._latch(t, f"session duration limit {limit:g} s reached", "dose")
            if self.suspended is not None:
                self._emergency = True
                out = self._ramp(t, dt)
            else:
                self._emergency = self._emergency_latched  # a fresh, usable frame ends a watchdog ramp
                out = self._step(desired, t, dt)
            self._sync_state(t)
            return out

    def suspend(self, reason: str) -> None:
        """Refuse stimulation until :meth:`resume`: the data hold nothing usable (nothing is latched)."""
        with self._lock:
            if self.suspended is None:
                self.suspended = reason
                self.log.add(float(self.clock()), "bad_data", reason, 0.0, self.amplitude_mA)

    def resume(self, reason: str) -> None:
        """End a :meth:`suspend`: usable data are back, the controller's commands count again."""
        with self._lock:
            if self.suspended is not None:
                self.suspended = None
                self.log.add(float(self.clock()), "bad_data", f"resumed: {reason}", 0.0, self.amplitude_mA)

    def ramp_down(self, reason: str, emergency: bool = False, kind: str | None = None) -> Command:
        """Move toward zero once, at the normal (or emergency) rate; nothing is latched.

        Used by the watchdog (``emergency=True``, stimulation resumes if fresh
        frames come back) and at shutdown. Once an emergency ramp has begun,
        later calls keep the emergency rate until a fresh frame arrives.
        A ramp is logged (and counted) once, at its first call: the calls that
        follow for the same reason continue it, until a frame arrives.

        Parameters
        ----------
        reason : str
            Why, as logged.
        emergency : bool
            Ramp at the profile's emergency rate.
        kind : str, optional
            The logged event's kind: by default ``"watchdog"`` for an
            emergency ramp and ``"stop"`` for a normal one. A session's final
            ramp passes ``"stop"`` whatever its rate (a session that ends on a
            lost source ramps at the emergency rate, and is no watchdog trip).
        """
        with self._lock:
            t, dt = self._advance()
            if emergency:
                self._emergency = True
            event = (kind or ("watchdog" if emergency else "stop"), reason)
            if event != self._ramp_logged:
                self._ramp_logged = event
                self.log.add(t, *event, 0.0, self.amplitude_mA, repeat=True)
            out = self._ramp(t, dt)
            self._sync_state(t)
            return out

    def stop(self, reason: str) -> Command:
        """Latch a stop: ramp to zero at the normal rate, then stay stopped."""
        with self._lock:
            t, dt = self._advance()
            self._latch(t, reason, "stop")
            out = self._ramp(t, dt)
            self._sync_state(t)
            return out

    def emergency_stop(self, reason: str, kind: str = "emergency") -> Command:
        """Latch a stop from any state at the profile's fastest allowed ramp.

        Parameters
        ----------
        reason : str
            Why, as logged.
        kind : str
            The logged event's kind: ``"emergency"``, or ``"watchdog"`` when a
            watchdog trip (a stalled loop, a silent device) is the reason, so
            that every trip is one ``watchdog`` event.
        """
        with self._lock:
            t, dt = self._advance()
            self._latch(t, reason, kind, emergency=True)
            out = self._ramp(t, dt)
            self._sync_state(t)
            return out

    def note(self, kind: str, reason: str) -> None:
        """Log an event from outside the layer (watchdog, source clock, operator) at the clock's time now."""
        with self._lock:
            self.log.add(float(self.clock()), kind, reason, 0.0, self.amplitude_mA)

    # -- for the modalities ---------------------------------------------------------
    def _step(self, desired: Command, t: float, dt: float) -> Command:
        raise NotImplementedError

    def _ramp(self, t: float, dt: float) -> Command:
        raise NotImplementedError

    def _now(self, t: float) -> float:
        """Return the layer's clock (``t`` if the clock has not been read yet)."""
        return self.t if self.t is not None else t

    def _event(self, t: float, kind: str, reason: str, desired_mA: float = 0.0) -> None:
        self.log.add(self._now(t), kind, reason, desired_mA, self.amplitude_mA)

    def _advance(self) -> tuple[float, float]:
        """Read the clock and move the layer to it; return ``(now, elapsed since the last call)``.

        Raises
        ------
        SafetyClockError
            If the clock returned a non-finite time or a time before the layer's.
        """
        try:
            t = float(self.clock())
        except (TypeError, ValueError):
            t = math.nan
        if not math.isfinite(t):
            raise SafetyClockError(f"the safety clock returned {t!r}; a safety clock must be finite")
        if self.t is None:
            self.t = self.t_start = t
            return t, 0.0
        dt = t - self.t
        if dt < 0.0:
            raise SafetyClockError(
                f"the safety clock went backwards from {self.t!r} to {t!r} s; the layer needs a monotonic clock"
            )
        self.t = t
        if dt > self.env.watchdog_timeout_s and self.active:
            self.gaps += 1
            self._event(
                t,
                "gap",
                f"no call for {dt:.3g} s (> watchdog {self.env.watchdog_timeout_s} s) "
                "while stimulating; limits hold only for shorter gaps",
            )
        return t, dt

    def _elapsed(self, t: float) -> float:
        """Time since the layer's first call, at ``t`` (0 before it)."""
        return 0.0 if self.t_start is None else t - self.t_start

    def _latch(self, t: float, reason: str, kind: str, emergency: bool = False) -> None:
        """Latch a stop (once); an emergency may upgrade an ongoing stop to the fast ramp."""
        if emergency and not self._emergency_latched:
            self._emergency_latched = self._emergency = True
            if self.machine.latched:
                self._event(t, kind, f"{reason} (stop already under way: now at the emergency rate)")
        if self.machine.latched:
            return
        self.stop_reason = reason
        self._event(t, kind, reason)
        self._go(RAMPING_DOWN if self.active else STOPPED, t, reason)

    def _go(self, new: StimState, t: float, reason: str) -> None:
        old = self.machine.state
        if self.machine.go(new):
            self._event(t, "state", f"{old.value} → {new.value}: {reason}")

    def _sync_state(self, t: float) -> None:
        """Follow the output: armed ↔ stimulating; ramping down → stopped at zero."""
        s = self.machine.state
        active = self.active
        if s is ARMED and active:
            self._go(STIMULATING, t, "output on")
        elif s is STIMULATING and not active:
            self._go(ARMED, t, "output off")
        elif s is RAMPING_DOWN and not active:
            self._go(STOPPED, t, f"output at zero after: {self.stop_reason}")
