"""The console status line of a live session.

One refreshed line: time and time left, features, what the device is doing
(off / ramping / on / fault, and the amplitude for tES), data age, loop
latency, safety events. In a blinded session (the controller's
``display_state`` hides the arm) neither the amplitude nor the on/off state
is shown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from closedloop.control.base import display_state
from closedloop.safety.state import StimState

if TYPE_CHECKING:  # the processing stack loads in the warm-up thread (closedloop.live.warmup), not on import
    from closedloop.pipeline import Pipeline, Step
    from closedloop.session.summary import SessionStats


def output_state(step: Step, safety, fault: str | None) -> str:
    """Return what the device is doing: ``fault``, ``ramping``, ``on`` or ``off``."""
    if fault:
        return "fault"
    allowed = step.allowed
    if safety.modality != "tes":
        return "on" if safety.active else "off"
    a = allowed.amplitude_mA
    if a <= 0.0:
        return "off"
    target = step.desired.amplitude_mA if step.desired.on else 0.0
    if safety.state is StimState.RAMPING_DOWN or abs(a - target) > 1e-9:
        return "ramping"
    return "on"


class StatusLine:
    """A single refreshed console line (rich), at most four times a second."""

    def __init__(self, enabled: bool, pipeline: Pipeline, duration_s: float) -> None:
        self.enabled = enabled
        self.names = pipeline.feature_names
        self.controller = pipeline.controller
        self.safety = pipeline.safety
        self.duration_s = duration_s
        self.blinded = bool(getattr(getattr(pipeline.controller, "config", None), "blinded", False))
        self._next = 0.0
        self._live = None
        if enabled:
            from rich.console import Console
            from rich.live import Live

            console = Console(stderr=True)
            self.enabled = console.is_terminal
            if self.enabled:
                self._live = Live("", console=console, auto_refresh=False, transient=False)
                self._live.start()

    def update(
        self, now: float, elapsed_s: float, step: Step, data_age: float, stats: SessionStats, fault: str | None
    ) -> None:
        """Refresh the line (rate-limited)."""
        if not self.enabled or now < self._next:
            return
        self._next = now + 0.25
        feats = "  ".join(f"{n}={v:+.3f}" for n, v in zip(self.names, step.frame.values))
        if self.blinded:
            shown = display_state(self.controller)
            stim = "  " + " ".join(f"{k}={v:g}" for k, v in shown.items()) + " (blinded)"
        else:
            state = output_state(step, self.safety, fault)
            amp = f"{step.allowed.amplitude_mA:.3f} mA " if self.safety.modality == "tes" else ""
            stim = f"  stim {amp}{state}"
        events = sum(self.safety.counts.values())
        left = max(0.0, self.duration_s - elapsed_s)
        line = (
            f"t={elapsed_s:6.1f}s (left {left:5.0f}s)  {feats}{stim}  age={data_age * 1e3:5.1f} ms  "
            f"lat={stats.latency.quantile(0.5) * 1e3:5.2f} ms"
            f"{f'  safety events {events} (clamps {self.safety.clamps})' if events else ''}"
            f"{'  BEHIND x' + str(stats.behind) if stats.behind else ''}"
        )
        self._live.update(line, refresh=True)

    def close(self) -> None:
        """Stop refreshing (leaves the last line on screen)."""
        if self._live is not None:
            self._live.stop()
            self._live = None
