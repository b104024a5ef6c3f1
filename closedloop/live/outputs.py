"""What a live session shows and publishes besides its recording: LSL streams and the dashboard.

:class:`SessionOutputs` is the live runtime's single hook for both
(:mod:`closedloop.live.publish`, :mod:`closedloop.live.dashboard`). The
runtime calls it from the loop thread with what the loop already has — each
chunk, each chunk's frames with their latency, each applied command, each
safety event, and the session markers (start, stop, end). Neither LSL nor a
browser can hold the loop up: an LSL push copies a sample into liblsl's
queues and returns (:mod:`closedloop.live.publish`), and what the dashboard
needs is appended to bounded queues its own thread drains
(:mod:`closedloop.live.dashboard.feed`). The dashboard thread reads the
session's counters directly (plain attribute reads, no lock the loop takes).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from closedloop.control.base import display_state
from closedloop.live.status import output_state

if TYPE_CHECKING:
    from closedloop.live.dashboard.server import DashboardOptions

log = logging.getLogger(__name__)

#: Seconds the LSL outlets stay open after the end marker (usually hidden by the summary and report writing).
LINGER_S = 1.0


class SessionOutputs:
    """Publish a live session on LSL and serve its dashboard.

    Parameters
    ----------
    session : LiveSession
        The session (its pipeline, adapter, stats and stop path).
    publish : bool
        Create the LSL outlets (``[output] publish``).
    dashboard : DashboardOptions, optional
        Serve the dashboard there. The port is bound now, so a port in use
        is reported before anything starts.

    Attributes
    ----------
    phase : str
        ``starting``, ``running``, ``stopping`` or ``ended``.
    publisher : SessionPublisher or None
    server : DashboardServer or None
    record_queries : list of dict
        Streams the session must record (the dashboard's ratings).
    """

    def __init__(self, session, publish: bool, dashboard: DashboardOptions | None = None) -> None:
        self.session = session
        self.publish = publish
        self.phase = "starting"
        self.stop_reason = ""
        self.stop_requested = ""
        self.publisher = None
        self.server = None
        self.feed = None
        self.ratings = None
        self.watchdog = None
        self.record_queries: list[dict] = []
        self._blinded = False
        self._controller = None
        self._safety = None
        self._ended_at = time.monotonic()
        self._closed = False
        self._applied: list[tuple] = []  # applied commands waiting to be published once their chunk is issued
        if dashboard is not None:
            from closedloop.live.dashboard.server import DashboardServer

            self.server = DashboardServer(dashboard).bind()

    @property
    def url(self) -> str | None:
        """The dashboard's address (None without a dashboard)."""
        return None if self.server is None else self.server.url

    # -- start -------------------------------------------------------------------------------
    def open(self, driver, recording, source) -> None:
        """Create the outlets and start the dashboard for a session whose recording has started."""
        session = self.session
        resolved = session.resolved
        cfg = resolved.config
        pipeline = driver.pipeline
        self._controller = pipeline.controller
        self._safety = driver.safety
        self._blinded = bool(getattr(getattr(pipeline.controller, "config", None), "blinded", False))
        names = list(pipeline.feature_names)
        if self.publish:
            from closedloop.live.publish import SessionPublisher, feature_unit

            state_names = (
                list(display_state(pipeline.controller)) if self._blinded else list(pipeline.controller.state())
            )
            self.publisher = SessionPublisher(
                recording.session_id,
                names,
                feature_unit(cfg.features.log10),
                state_names,
                cfg.sfreq / cfg.features.hop_samples,
                cfg.pipeline.name,
                identity=session.identity,
                blinded=self._blinded,
            ).start()
        if self.server is not None:
            self._start_dashboard(recording, source, names)
        driver.on_applied = self.on_applied
        safety = driver.safety
        previous = safety.on_event
        if previous is None:
            safety.on_event = self.on_event
        else:

            def both(event) -> None:
                previous(event)
                self.on_event(event)

            safety.on_event = both

    def _start_dashboard(self, recording, source, names: list[str]) -> None:
        from closedloop.live.dashboard.feed import LiveFeed
        from closedloop.live.dashboard.ratings import RATINGS_STREAM, RatingsOutlet
        from closedloop.live.dashboard.server import LiveBackend
        from closedloop.live.dashboard.state import DashboardInfo, DashboardState

        session = self.session
        resolved = session.resolved
        ident = session.identity
        title = resolved.config.pipeline.name + "".join(f" · {k} {v}" for k, v in ident.items() if v)
        info = DashboardInfo.from_config(
            resolved.config.model_dump(mode="json"),
            resolved.envelope(),
            resolved.profile.device.modality,
            source.ch_names,
            names,
            mode="live",
            duration_s=session.duration_s,
            session_id=recording.session_id,
            title=title,
        )
        info.token_required = self.server.token is not None
        for note in info.notes:
            session._say(f"note: {note}")
        self.feed = LiveFeed(source.ch_names, info.display, info.roi)
        self.ratings = RatingsOutlet(recording.session_id, ident)
        self.record_queries.append({"name": RATINGS_STREAM, "source_id": self.ratings.source_id, "own": True})
        import pylsl

        state = DashboardState(info)
        self.server.start(LiveBackend(state, self.feed, self, self.ratings, pylsl.local_clock))
        session._say(f"dashboard: {self.server.url}")

    def check_recorded(self, inlets, recording) -> None:
        """Make sure the dashboard's ratings reach ``session.xdf``: through LSL, else written directly."""
        from closedloop.live.dashboard.ratings import RATING_CHANNELS, RATINGS_STREAM, RATINGS_TYPE

        if self.ratings is None or (inlets is not None and RATINGS_STREAM in inlets.names):
            return
        recording.add_stream(
            RATINGS_STREAM, RATINGS_TYPE, len(RATING_CHANNELS), 0.0, "double64", self.ratings.source_id, RATING_CHANNELS
        )
        self.server.backend.recording = recording
        self.session._say(
            f"note: {RATINGS_STREAM} could not be resolved over LSL; ratings are written to the recording"
        )

    # -- the loop's calls ------------------------------------------------------------------------
    def on_chunk(self, chunk) -> None:
        """After each chunk, once its commands were issued (loop thread): publish them; feed the dashboard."""
        if self._applied:
            self._flush_applied()
        if self.feed is not None:
            self.feed.on_chunk(chunk)

    def _flush_applied(self) -> None:
        pending, self._applied = self._applied, []
        for row, issue_time in pending:
            self.publisher.push_applied(row, issue_time)

    def on_frames(self, steps: Sequence, latency_s: float, data_age_s: float) -> None:
        """After each chunk that produced frames (loop thread)."""
        shown = display_state(self._controller) if self._blinded else None
        if self.publisher is not None:
            self.publisher.on_steps(steps, shown)
        if self.feed is not None:
            fault = self.session.adapter.fault
            state = output_state(steps[-1], self._safety, fault)
            self.feed.on_frames(steps, state, self._safety, shown, latency_s, data_age_s)

    def on_applied(self, command, issue_time: float, latency_s: float) -> None:
        """After each command the adapter issued (loop thread, or the ramp-down).

        While the loop runs, the command is published after its chunk's
        commands were all issued (:meth:`on_chunk`): the push is not part of
        the loop latency. During the ramp-down it is published at once.
        """
        if self.publisher is not None:
            row = self.publisher.applied_row(command, latency_s)
            if row is not None:
                self._applied.append((row, issue_time))
                if self.phase != "running":
                    self._flush_applied()
        if self.feed is not None:
            self.feed.on_applied(command, issue_time, latency_s)

    def on_event(self, event) -> None:
        """After each safety event (loop, watchdog or dashboard thread)."""
        if self.publisher is not None:
            self.publisher.on_event(event)
        if self.feed is not None:
            self.feed.on_event(event)

    def marker(self, event: str, **fields: object) -> None:
        """Publish and show a session marker (``start``, ``stop``, ``end``) at the clock's time now."""
        t = self.session.clock()
        if self._applied and self.publisher is not None:
            self._flush_applied()
        if event == "start":
            self.phase = "running"
        elif event == "stop":
            self.phase = "stopping"
            self.stop_reason = str(fields.get("reason", ""))
        if self.publisher is not None:
            self.publisher.marker(t, event, **fields)
        if self.feed is not None:
            self.feed.marker(t, event, **fields)

    # -- the dashboard thread's calls ------------------------------------------------------------------
    def request_stop(self, emergency: bool, who: str) -> str:
        """Stop from the dashboard (see :meth:`LiveSession.request_stop`)."""
        self.stop_requested = f"{'emergency stop' if emergency else 'stop'} by {who}"
        return self.session.request_stop(emergency=emergency, who=who)

    def dashboard_status(self) -> dict:
        """Return the session's counters for the page (plain attribute reads)."""
        s = self.session
        stats = s.stats
        elapsed = s._elapsed_s
        wd = self.watchdog
        now = s.clock()
        watchdog = {"trips": stats.watchdog_trips, "tripped": s._trip.reason if s._trip is not None else ""}
        if wd is not None:
            watchdog["timeout_s"] = wd.frame_timeout_s
            last = wd.last_frame
            watchdog["frame_age_s"] = None if last is None else max(0.0, now - last)
            watchdog["state"] = (
                "tripped"
                if s._trip is not None
                else "waiting for the first frame"
                if last is None
                else "late"
                if now - last > wd.frame_timeout_s
                else "ok"
            )
        else:
            watchdog["state"] = "not started"
        left = None if s.duration_s is None else max(0.0, s.duration_s - elapsed)
        return {
            "phase": self.phase,
            "elapsed_s": elapsed,
            "left_s": left,
            "stop_reason": self.stop_reason,
            "stop_requested": self.stop_requested,
            "watchdog": watchdog,
            "fault": s.adapter.fault or "",
            "behind": stats.behind,
            "frames": stats.frames,
            "published": None if self.publisher is None else self.publisher.pushed,
        }

    # -- end -----------------------------------------------------------------------------------------
    def end(self, reason: str) -> None:
        """Publish the end marker (the outlets stay open until :meth:`close`, so consumers can fetch it)."""
        if self.phase != "finishing":
            self.stop_reason = str(reason or "")
            self.marker("end", reason=self.stop_reason)
            self.phase = "finishing"
            self._ended_at = time.monotonic()

    def close(self, summary: dict | None = None) -> None:
        """Tell the pages how the session ended, and close the outlets and the server.

        The outlets stay open at least :data:`LINGER_S` after the end marker:
        an LSL consumer loses what it has not fetched when an outlet closes.
        """
        if self._closed:
            return
        self._closed = True
        try:
            self.end((summary or {}).get("stop_reason", self.stop_reason))
            self.phase = "ended"
            if self.server is not None:
                final = {"type": "ended", "reason": self.stop_reason, "summary": _brief(summary or {})}
                self.server.stop(final if self.server.backend is not None else None)
            wait = self._ended_at + LINGER_S - time.monotonic()
            if wait > 0 and (self.publisher is not None or self.ratings is not None):
                time.sleep(wait)
            if self.publisher is not None:
                self.publisher.close()
            if self.ratings is not None:
                self.ratings.close()
        except Exception:  # noqa: BLE001 - the end of a session must go on
            log.exception("closing the live outputs failed")


def _brief(summary: dict) -> dict:
    """Return the few summary numbers the page shows at the end."""
    keys = ("stop_reason", "duration_s", "frames", "commands_applied", "watchdog_trips")
    out = {k: summary.get(k) for k in keys if k in summary}
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}
