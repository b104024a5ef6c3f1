"""Stop signals: every way a process is told to stop takes the Ctrl-C path.

Sessions outside a demo end by SIGTERM (``kill``, ``systemctl stop``,
``docker stop``), SIGHUP (the terminal closed), SIGQUIT, or on Windows
CTRL_BREAK and the console closing — Python's default for most of them is to
die at once, leaving the stimulator on. :class:`StopSignals` catches them all
while a session runs: the first asks for a normal stop (ramp down at the
profile's rate, footers, summary, report), a second one for the emergency
rate. The handler only sets a flag the loop reads every iteration (at least
every pull timeout), so no exception is raised in the middle of a command;
during start-up, when nothing is stimulating yet, it raises
:class:`SessionInterrupted` so a blocking resolve or warm-up does not delay
the exit.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType


class SessionInterrupted(Exception):
    """A stop signal arrived before stimulation could start."""


def _names() -> list[str]:
    wanted = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGBREAK"]
    return [n for n in wanted if hasattr(signal, n)]


class StopSignals:
    """Turn stop signals into a stop request the session loop polls.

    Use as a context manager from the main thread; outside the main thread
    (where Python cannot install handlers) it does nothing and the caller's
    own handling stays in force.

    Attributes
    ----------
    requested : str or None
        The name of the first stop signal received (``None``: none yet).
    emergency : bool
        A second stop signal arrived: ramp down at the emergency rate.
    """

    def __init__(self) -> None:
        self.requested: str | None = None
        self.emergency = False
        self.starting = True  # before the loop runs, a signal aborts the start-up at once
        self.done = False  # the session has finished (the Windows console handler may return)
        self._previous: dict[int, object] = {}
        self._console_handler: Callable | None = None
        self._reason: str | None = None  # a stop asked for by request() (the dashboard), not by a signal

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested is None:
            self.requested = name
            if self.starting:
                raise SessionInterrupted(name)
        else:
            self.emergency = True

    def request(self, reason: str, emergency: bool = False) -> None:
        """Ask for a stop from another thread (the dashboard), as a signal would, without raising.

        The first request (or signal) names the stop reason; ``emergency``
        switches to the emergency rate, also during a stop already under way.
        """
        if emergency:
            self.emergency = True
        if self.requested is None:
            self._reason = reason
            self.requested = "operator"

    @property
    def reason(self) -> str:
        """The stop reason for the summary."""
        if self._reason is not None and self.requested == "operator":
            return self._reason
        if self.requested == "SIGINT":
            return "interrupted by the operator (Ctrl-C)"
        return f"stopped by {self.requested}"

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self
        for name in _names():
            num = getattr(signal, name)
            try:
                self._previous[num] = signal.signal(num, self._handle)
            except (ValueError, OSError):  # not allowed for this signal here
                continue
        if sys.platform == "win32":  # the console closing is no signal: ask Windows to call us
            self._install_console_handler()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done = True
        for num, previous in self._previous.items():
            try:
                signal.signal(num, previous)  # type: ignore[arg-type]
            except (ValueError, OSError, TypeError):
                pass
        self._previous.clear()
        if self._console_handler is not None:  # pragma: no cover - Windows only
            import ctypes

            ctypes.windll.kernel32.SetConsoleCtrlHandler(self._console_handler, False)  # type: ignore[attr-defined]
            self._console_handler = None

    def _install_console_handler(self) -> None:  # pragma: no cover - Windows only
        import ctypes
        import time

        close_events = {2, 5, 6}  # CTRL_CLOSE_EVENT, CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT

        @ctypes.WINFUNCTYPE(ctypes.c_bool, ctypes.c_uint)
        def handler(event: int) -> bool:
            if event not in close_events:
                return False  # Ctrl-C / Ctrl-Break arrive as SIGINT / SIGBREAK
            if self.requested is None:
                self.requested = "console closed"
            # Windows ends the process when this handler returns (after ~5 s at most): give the loop
            # the time to ramp down and write the summary.
            deadline = time.monotonic() + 4.5
            while self.requested is not None and time.monotonic() < deadline and not self.done:
                time.sleep(0.05)
            return True

        self._console_handler = handler
        ctypes.windll.kernel32.SetConsoleCtrlHandler(handler, True)  # type: ignore[attr-defined]
