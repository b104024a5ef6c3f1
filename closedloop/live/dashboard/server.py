"""The dashboard's web server: one page, a WebSocket of updates, two POST endpoints (stop, rating).

Served by Tornado on its own thread and event loop (never the session
loop's thread); assets come from this package (``static/``) and from the
installed ``plotly`` package (``plotly.min.js``), so the page works without
internet. See docs/dashboard.md.

Who may touch it:

- bound to ``127.0.0.1`` by default, and then only requests whose ``Host``
  is a loopback name are answered (a web page elsewhere cannot reach it by
  DNS rebinding);
- bound to any other address (``--dashboard-host``), every request needs the
  token printed at start: in the URL (``?token=...``, kept in a same-site
  cookie for the page's own requests) and, for the stop and rating
  requests, in the ``X-Closedloop-Token`` header;
- the POST endpoints accept only JSON sent from the page's own origin;
- ``/api/stop`` can only stop stimulation (ramp down, or at the emergency
  rate); ``/api/rating`` only records a rating. No endpoint starts or raises
  stimulation or changes a setting.
"""

from __future__ import annotations

import asyncio
import gzip
import hmac
import ipaddress
import json
import logging
import math
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
TOKEN_HEADER = "X-Closedloop-Token"
TOKEN_COOKIE = "closedloop_token"
TICK_S = 0.05  # 20 updates per second
SPECTRUM_EVERY_S = 0.5
_WHO = re.compile(r"[^\w .@'-]+")


class DashboardUnavailable(OSError):
    """The dashboard's optional dependencies are missing, or its address cannot be used."""


def require() -> None:
    """Raise :class:`DashboardUnavailable` (naming the fix) if Tornado or Plotly is not installed."""
    import importlib.util

    missing = [m for m in ("tornado", "plotly") if importlib.util.find_spec(m) is None]
    if missing:
        raise DashboardUnavailable(f"the dashboard needs {' and '.join(missing)}: pip install 'closedloop[dashboard]'")


def plotly_js() -> Path:
    """Return the path of ``plotly.min.js`` inside the installed plotly package."""
    import plotly

    path = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise DashboardUnavailable(f"{path} is missing: reinstall plotly (pip install --force-reinstall plotly)")
    return path


def is_loopback(host: str) -> bool:
    """Return whether ``host`` (a name or an address) is this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class DashboardOptions:
    """Where the dashboard listens.

    Attributes
    ----------
    host : str
        Address to bind; a non-loopback one requires a token.
    port : int
        TCP port (0: any free port).
    token : str or None
        The token; generated when ``host`` is not loopback and none is given.
    """

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None

    def __post_init__(self) -> None:
        if not is_loopback(self.host) and not self.token:
            self.token = secrets.token_urlsafe(18)


class DashboardServer:
    """Serve the dashboard for a backend (a live session or a recording) from a thread.

    Parameters
    ----------
    options : DashboardOptions
        Address, port and token.

    Notes
    -----
    :meth:`bind` opens the listening socket (so a port in use is reported
    before a session starts); :meth:`start` serves a backend; :meth:`stop`
    ends the thread.
    """

    def __init__(self, options: DashboardOptions) -> None:
        require()
        self.options = options
        self.token = options.token
        self.backend = None
        self._sockets: list[socket.socket] = []
        self._thread: threading.Thread | None = None
        self._loop = None
        self._ready = threading.Event()
        self._clients: set = set()
        self.port = options.port
        self.ticks = 0

    # -- lifecycle -------------------------------------------------------------------------------
    def bind(self) -> DashboardServer:
        """Open the listening socket now.

        Raises
        ------
        DashboardUnavailable
            Naming the address, if it cannot be bound (port in use, unknown address).
        """
        from tornado.netutil import bind_sockets

        if self._sockets:
            return self
        try:
            self._sockets = bind_sockets(self.options.port, self.options.host, reuse_port=False)
        except (OSError, socket.gaierror) as e:
            raise DashboardUnavailable(
                f"--dashboard: cannot listen on {self.options.host}:{self.options.port} ({e}); "
                "choose another --port (0: any free port)"
            ) from None
        self.port = self._sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        """The address to open (with the token when one is needed)."""
        host = self.options.host
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def start(self, backend) -> DashboardServer:
        """Serve ``backend`` from a daemon thread; return once the server accepts connections."""
        self.bind()
        self.backend = backend
        self._thread = threading.Thread(target=self._serve, name="closedloop-dashboard", daemon=True)
        self._thread.start()
        if not self._ready.wait(10.0):
            raise DashboardUnavailable("the dashboard thread did not start within 10 s")
        return self

    def stop(self, final: dict | None = None, timeout: float = 2.0) -> None:
        """Send ``final`` (if any) to every page, then stop serving."""
        loop = self._loop
        if loop is None:
            for s in self._sockets:
                s.close()
            self._sockets = []
            return

        async def _end() -> None:
            text = None if final is None else json.dumps(final)
            for client in list(self._clients):
                try:
                    if text is not None:
                        await asyncio.wait_for(client.write_message(text), 1.0)
                    client.close(1001, "the session has ended")
                except Exception:  # noqa: BLE001 - a closed or stuck page is no reason to stay
                    pass
            loop.stop()

        loop.add_callback(_end)
        if self._thread is not None:
            self._thread.join(timeout)
        self._loop = None
        for s in self._sockets:
            s.close()
        self._sockets = []

    def _serve(self) -> None:
        import tornado.httpserver
        import tornado.ioloop
        import tornado.web

        asyncio.set_event_loop(asyncio.new_event_loop())
        page, static, asset, info, window, stop, rating, updates, icon = _handlers()
        kw = {"server": self}
        handlers = [
            (r"/", page, kw),
            (r"/api/info", info, kw),
            (r"/api/window", window, kw),
            (r"/api/stop", stop, kw),
            (r"/api/rating", rating, kw),
            (r"/ws", updates, kw),
            (r"/vendor/plotly.min.js", asset, {**kw, "path": plotly_js(), "mime": "text/javascript"}),
            (r"/static/(app\.js|style\.css)", static, kw),
            (r"/favicon\.ico", icon, kw),
        ]
        app = tornado.web.Application(handlers, websocket_ping_interval=10, compress_response=False, log_function=_log)
        http = tornado.httpserver.HTTPServer(app)
        http.add_sockets(self._sockets)
        loop = tornado.ioloop.IOLoop.current()
        self._loop = loop
        if getattr(self.backend, "live", False):
            tornado.ioloop.PeriodicCallback(self._tick, TICK_S * 1000).start()
        self._ready.set()
        try:
            loop.start()
        finally:
            http.stop()
            aio = asyncio.get_event_loop()
            pending = [t for t in asyncio.all_tasks(aio) if not t.done()]  # the pages' WebSocket pings
            for task in pending:
                task.cancel()
            if pending:
                aio.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close(all_fds=False)

    # -- the update tick (dashboard thread) ---------------------------------------------------------
    def _tick(self) -> None:
        """Move what the loop queued into the state; send each page a delta (or a snapshot after a drop)."""
        try:
            delta = self.backend.tick()
        except Exception:  # noqa: BLE001 - the display must never take the session down
            log.exception("dashboard update failed")
            return
        self.ticks += 1
        if not self._clients:
            return
        text = json.dumps(delta)
        snapshot_text = None
        for client in list(self._clients):
            if client.pending is not None and not client.pending.done():
                client.resync = True  # a slow page: drop this frame, send it everything next time
                continue
            if client.resync:
                if snapshot_text is None:
                    snapshot_text = json.dumps(self.backend.snapshot())
                payload = snapshot_text
                client.resync = False
            else:
                payload = text
            try:
                client.pending = client.write_message(payload)
            except Exception:  # noqa: BLE001 - the page went away
                self._clients.discard(client)

    # -- access control ----------------------------------------------------------------------------
    def allowed(self, handler, write: bool = False) -> str | None:
        """Return why ``handler``'s request is refused (None: allowed)."""
        request = handler.request
        host = request.host or ""
        if self.token is None:
            name = urlsplit(f"//{host}").hostname or ""
            if not is_loopback(name):
                return f"Host {host!r} is not this machine's loopback name"
        if write:
            if not request.headers.get("Content-Type", "").startswith("application/json"):
                return "send JSON (Content-Type: application/json)"
            origin = request.headers.get("Origin")
            if origin and urlsplit(origin).netloc != host:
                return f"requests from {origin} are not accepted"
        if self.token is not None:
            given = request.headers.get(TOKEN_HEADER)
            if given is None and not write:
                given = handler.get_argument("token", None) or handler.get_cookie(TOKEN_COOKIE)
            if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
                return "a valid token is required (the one printed when the dashboard started)"
        return None


def _handlers():
    """Define the request handlers (Tornado is imported only when a dashboard starts)."""
    import tornado.web
    import tornado.websocket

    class Base(tornado.web.RequestHandler):
        def initialize(self, server: DashboardServer, **kw) -> None:
            self.server = server
            self.extra = kw

        def check(self, write: bool = False) -> bool:
            why = self.server.allowed(self, write)
            if why is not None:
                self.set_status(403)
                self.set_header("Content-Type", "application/json")
                self.finish(json.dumps({"ok": False, "error": why}))
                return False
            return True

        def set_default_headers(self) -> None:
            self.set_header("Cache-Control", "no-store")
            self.set_header("X-Content-Type-Options", "nosniff")
            self.set_header("Referrer-Policy", "no-referrer")

        def reply(self, doc: dict, status: int = 200) -> None:
            self.set_status(status)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(doc))

        def body_json(self) -> dict | None:
            try:
                doc = json.loads(self.request.body or b"{}")
            except (json.JSONDecodeError, UnicodeDecodeError):
                doc = None
            if not isinstance(doc, dict):
                self.reply({"ok": False, "error": "the body must be a JSON object"}, 400)
                return None
            return doc

    class Page(Base):
        def get(self) -> None:
            if not self.check():
                return
            if self.server.token is not None:
                self.set_cookie(TOKEN_COOKIE, self.server.token, httponly=True, samesite="Strict")
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.set_header(
                "Content-Security-Policy",
                "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                "script-src 'self' 'unsafe-eval'; connect-src 'self'",
            )
            self.finish((STATIC / "index.html").read_bytes())

    class Static(Base):
        def get(self, name: str) -> None:
            if not self.check():
                return
            mime = "text/javascript" if name.endswith(".js") else "text/css"
            self.set_header("Content-Type", f"{mime}; charset=utf-8")
            self.finish((STATIC / name).read_bytes())

    class Asset(Base):
        _cache: dict[tuple[Path, bool], bytes] = {}

        def get(self) -> None:
            if not self.check():
                return
            path = self.extra["path"]
            # plotly.min.js is 4.8 MB: over loopback it goes in milliseconds as it is, while compressing it
            # takes ~0.2 s of CPU in the session's process, during the loop; only a browser across the
            # network gets it compressed (once per process)
            remote = not is_loopback(self.server.options.host)
            packed = remote and "gzip" in self.request.headers.get("Accept-Encoding", "")
            if (path, packed) not in self._cache:
                raw = path.read_bytes()
                self._cache[(path, packed)] = gzip.compress(raw, 6) if packed else raw
            self.set_header("Content-Type", f"{self.extra['mime']}; charset=utf-8")
            self.set_header("Cache-Control", "max-age=3600")
            if packed:
                self.set_header("Content-Encoding", "gzip")
            self.finish(self._cache[(path, packed)])

    class Icon(Base):
        def get(self) -> None:
            self.set_status(204)
            self.finish()

    class Info(Base):
        def get(self) -> None:
            if self.check():
                self.reply(self.server.backend.hello())

    class Window(Base):
        def get(self) -> None:
            if not self.check():
                return
            backend = self.server.backend
            if getattr(backend, "live", False):
                self.reply({"ok": False, "error": "a live session has no timeline"}, 404)
                return
            try:
                t = float(self.get_argument("t", "nan"))
            except ValueError:
                t = math.nan
            if not math.isfinite(t):
                self.reply({"ok": False, "error": "give t, seconds from the start of the recording"}, 400)
                return
            self.reply(backend.window(t))

    class Stop(Base):
        def post(self) -> None:
            if not self.check(write=True):
                return
            doc = self.body_json()
            if doc is None:
                return
            backend = self.server.backend
            if not getattr(backend, "live", False):
                self.reply({"ok": False, "error": "a recording cannot be stopped"}, 404)
                return
            if doc.get("confirm") is not True:
                self.reply({"ok": False, "error": "a stop must be confirmed ({'confirm': true})"}, 400)
                return
            name = _WHO.sub("", str(doc.get("who") or "operator"))[:60].strip() or "operator"
            who = f"{name} ({self.request.remote_ip})"
            message = backend.stop(bool(doc.get("emergency", False)), who)
            self.reply({"ok": True, "message": message})

    class Rating(Base):
        def post(self) -> None:
            if not self.check(write=True):
                return
            doc = self.body_json()
            if doc is None:
                return
            backend = self.server.backend
            if not getattr(backend, "live", False):
                self.reply({"ok": False, "error": "ratings are entered during a live session"}, 404)
                return
            value = doc.get("value")
            delay = doc.get("delay_s", 0.0)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 10:
                self.reply({"ok": False, "error": f"value: a number from 0 to 10, not {value!r}"}, 400)
                return
            if isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(delay):
                delay = 0.0
            result = backend.rating(float(value), min(max(float(delay), 0.0), 5.0), doc.get("prompt"))
            self.reply({"ok": True, **result})

    class Updates(tornado.websocket.WebSocketHandler):
        def initialize(self, server: DashboardServer, **kw) -> None:
            self.server = server
            self.pending = None
            self.resync = False

        def check_origin(self, origin: str) -> bool:
            return urlsplit(origin).netloc == (self.request.host or "")

        def get(self, *args, **kwargs):
            why = self.server.allowed(self)
            if why is not None:
                self.set_status(403)
                self.finish(json.dumps({"ok": False, "error": why}))
                return None
            return super().get(*args, **kwargs)

        def open(self) -> None:
            backend = self.server.backend
            self.write_message(json.dumps(backend.hello()))
            if getattr(backend, "live", False):
                self.pending = self.write_message(json.dumps(backend.snapshot()))
                self.server._clients.add(self)

        def on_message(self, message) -> None:  # the page only listens
            pass

        def on_close(self) -> None:
            self.server._clients.discard(self)

    return Page, Static, Asset, Info, Window, Stop, Rating, Updates, Icon


def _log(handler) -> None:
    """Log refused and failed requests only (a page polls; successful requests are not news)."""
    status = handler.get_status()
    if status >= 400:
        log.warning(
            "dashboard: %d %s %s (%s)", status, handler.request.method, handler.request.uri, handler.request.remote_ip
        )


# -- backends ---------------------------------------------------------------------------------------


class LiveBackend:
    """The dashboard of a running session: its state, the loop's queues, the stop and rating paths.

    Parameters
    ----------
    state : DashboardState
        What the page draws (owned by the dashboard thread).
    feed : LiveFeed
        The loop's queues.
    session : object
        Provides ``request_stop(emergency, who)`` and ``dashboard_status()``.
    ratings : RatingsOutlet or None
        Where ratings go.
    clock : callable
        The local LSL clock.
    """

    live = True

    def __init__(self, state, feed, session, ratings, clock) -> None:
        self.state = state
        self.feed = feed
        self.session = session
        self.ratings = ratings
        self.clock = clock
        self._next_spectrum = 0.0
        self._prompt: dict | None = None
        self._prompts = 0
        self._next_prompt_s = state.info.rating_prompt_s
        self.recording = None  # set when the ratings stream cannot be recorded over LSL: written here instead

    def hello(self) -> dict:
        """Return the page's first message."""
        return self.state.info.hello()

    def snapshot(self) -> dict:
        """Return everything a page needs to draw from scratch."""
        self._status()
        return self.state.snapshot()

    def tick(self) -> dict:
        """Drain the loop's queues; return the delta for the pages."""
        self.feed.drain(self.state)
        now = time.monotonic()
        if now >= self._next_spectrum:
            self.state.update_spectrum()
            self._next_spectrum = now + SPECTRUM_EVERY_S
        self._status()
        return self.state.delta()

    def _status(self) -> None:
        st = self.state.status
        st.update(self.session.dashboard_status())
        st["dropped_ui"] = self.feed.dropped
        every = self.state.info.rating_prompt_s
        elapsed = st.get("elapsed_s") or 0.0
        due = self._next_prompt_s is not None and elapsed >= self._next_prompt_s
        if every and due and st.get("phase") == "running":
            self._prompts += 1
            self._prompt = {"id": self._prompts, "at": self.clock(), "since_s": elapsed}
            self._next_prompt_s = elapsed + every
        st["prompt"] = None if self._prompt is None else {"id": self._prompt["id"], "since_s": self._prompt["since_s"]}

    def stop(self, emergency: bool, who: str) -> str:
        """Ask the session to stop (dashboard thread)."""
        return self.session.request_stop(emergency=emergency, who=who)

    def rating(self, value: float, delay_s: float, prompt_id) -> dict:
        """Publish a rating entered ``delay_s`` ago; return its time and whether it answered the prompt."""
        t = self.clock() - delay_s
        prompted = self._prompt is not None and prompt_id == self._prompt["id"]
        response = t - self._prompt["at"] if prompted else math.nan
        if prompted:
            self._prompt = None
        if self.ratings is not None:
            self.ratings.push(value, t, prompted, response)
        if self.recording is not None:
            from closedloop.live.dashboard.ratings import RATINGS_STREAM

            self.recording.on_marker(RATINGS_STREAM, [[value, float(prompted), response]], [t])
        self.state.add_rating(t, value, prompted)
        return {"time": t, "prompted": prompted, "stamp": datetime.now().astimezone().isoformat(timespec="seconds")}
