"""Who may touch the dashboard: loopback by default, a token when exposed, and only a stop or a rating."""

from __future__ import annotations

import gzip
import http.client
import json
import threading

import pytest

pytest.importorskip("tornado", reason="the dashboard extra (tornado) is not installed")
pytest.importorskip("plotly", reason="the dashboard extra (plotly) is not installed")

from closedloop.live.dashboard.server import DashboardOptions, DashboardServer, is_loopback, plotly_js  # noqa: E402
from closedloop.live.signals import StopSignals  # noqa: E402


class FakeLive:
    """A live backend that records what the server asked of it."""

    live = True

    def __init__(self) -> None:
        self.stops: list[tuple[bool, str]] = []
        self.ratings: list[tuple[float, float, object]] = []
        self.done = threading.Event()

    def hello(self) -> dict:
        return {"type": "hello", "mode": "live"}

    def snapshot(self) -> dict:
        return {"type": "snapshot"}

    def tick(self) -> dict:
        return {"type": "delta"}

    def stop(self, emergency: bool, who: str) -> str:
        self.stops.append((emergency, who))
        return "stopping"

    def rating(self, value: float, delay_s: float, prompt) -> dict:
        self.ratings.append((value, delay_s, prompt))
        return {"time": 1.0, "prompted": False, "stamp": "now"}


@pytest.fixture
def serve():
    servers = []

    def start(host="127.0.0.1", backend=None):
        backend = backend or FakeLive()
        server = DashboardServer(DashboardOptions(host=host, port=0)).start(backend)
        servers.append(server)
        return server, backend

    yield start
    for s in servers:
        s.stop()


def request(server, method, path, body=None, headers=None, host=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    h = {"Host": host or f"127.0.0.1:{server.port}", **(headers or {})}
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    conn.request(method, path, body=data, headers=h)
    r = conn.getresponse()
    payload = r.read()
    conn.close()
    return r.status, payload, r


JSON = {"Content-Type": "application/json"}


def test_loopback_is_told_from_the_network():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("127.0.0.5")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20") and not is_loopback("lab-pc")
    assert DashboardOptions().token is None
    assert len(DashboardOptions(host="0.0.0.0").token) >= 20


def test_loopback_serves_the_page_the_plot_library_and_a_stop(serve):
    server, backend = serve()
    assert server.url == f"http://127.0.0.1:{server.port}/"
    status, page, _ = request(server, "GET", "/")
    assert status == 200 and b'<script src="/vendor/plotly.min.js">' in page
    status, js, r = request(server, "GET", "/vendor/plotly.min.js", headers={"Accept-Encoding": "identity"})
    assert status == 200 and len(js) > 1_000_000 and b"plotly" in js[:2000].lower()
    # a browser on this machine gets the file as it is, even when it accepts gzip (nothing compressed in-process)
    status, same, r = request(server, "GET", "/vendor/plotly.min.js", headers={"Accept-Encoding": "gzip, deflate"})
    assert status == 200 and r.getheader("Content-Encoding") is None and same == js == plotly_js().read_bytes()
    for asset in ("/static/app.js", "/static/style.css"):
        assert request(server, "GET", asset)[0] == 200
    status, body, _ = request(server, "POST", "/api/stop", {"confirm": True, "who": "Ana <b>"}, JSON)
    assert status == 200 and json.loads(body)["ok"]
    assert backend.stops == [(False, "Ana b (127.0.0.1)")]  # markup stripped, the client's address added


def test_loopback_refuses_other_host_names_foreign_origins_and_forms(serve):
    server, backend = serve()
    assert request(server, "GET", "/", host="evil.example:80")[0] == 403  # DNS rebinding
    stop = {"confirm": True}
    assert request(server, "POST", "/api/stop", json.dumps(stop).encode(), {"Content-Type": "text/plain"})[0] == 403
    foreign = {**JSON, "Origin": "http://evil.example"}
    assert request(server, "POST", "/api/stop", stop, foreign)[0] == 403
    assert request(server, "POST", "/api/stop", {"who": "x"}, JSON)[0] == 400  # not confirmed
    assert backend.stops == []


def test_an_exposed_dashboard_needs_the_token_everywhere(serve):
    server, backend = serve(host="0.0.0.0")
    token = server.token
    assert token and f"token={token}" in server.url
    assert request(server, "GET", "/")[0] == 403
    assert request(server, "GET", "/?token=wrong")[0] == 403
    assert request(server, "GET", "/static/app.js")[0] == 403
    assert request(server, "GET", "/api/info")[0] == 403
    status, _, r = request(server, "GET", f"/?token={token}")
    assert status == 200
    cookie = r.getheader("Set-Cookie")
    assert "closedloop_token=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    # the page's own requests carry the cookie; a stop needs the token in its header too
    assert request(server, "GET", "/api/info", headers={"Cookie": f"closedloop_token={token}"})[0] == 200
    stop = {"confirm": True, "who": "op"}
    assert request(server, "POST", "/api/stop", stop, {**JSON, "Cookie": f"closedloop_token={token}"})[0] == 403
    assert request(server, "POST", f"/api/stop?token={token}", stop, JSON)[0] == 403
    assert request(server, "POST", "/api/rating", {"value": 3}, JSON)[0] == 403
    assert backend.stops == [] and backend.ratings == []
    assert request(server, "POST", "/api/stop", stop, {**JSON, "X-Closedloop-Token": token})[0] == 200
    # across the network the plot library goes compressed
    cookie = {"Cookie": f"closedloop_token={token}"}
    status, packed, r = request(server, "GET", "/vendor/plotly.min.js", headers={**cookie, "Accept-Encoding": "gzip"})
    assert status == 200 and r.getheader("Content-Encoding") == "gzip"
    assert len(packed) < len(plotly_js().read_bytes()) / 2 and gzip.decompress(packed) == plotly_js().read_bytes()
    assert backend.stops == [(False, "op (127.0.0.1)")]


@pytest.mark.parametrize("value", [-1, 11, "7", None, True, float("nan")])
def test_a_rating_is_a_number_from_0_to_10(serve, value):
    server, backend = serve()
    body = json.dumps({"value": value}).replace("NaN", '"NaN"').encode()
    status, payload, _ = request(server, "POST", "/api/rating", body, JSON)
    assert status == 400 and "0 to 10" in json.loads(payload)["error"]
    assert backend.ratings == []


def test_a_rating_reaches_the_backend_with_its_delay(serve):
    server, backend = serve()
    status, _, _ = request(server, "POST", "/api/rating", {"value": 7, "delay_s": 0.25, "prompt": 2}, JSON)
    assert status == 200 and backend.ratings == [(7.0, 0.25, 2)]
    request(server, "POST", "/api/rating", {"value": 10, "delay_s": 1e9}, JSON)
    assert backend.ratings[-1] == (10.0, 5.0, None)  # a client cannot back-date a rating by more than 5 s


def test_a_recording_cannot_be_stopped_or_rated(serve):
    class Recorded:
        live = False

        def hello(self):
            return {"type": "hello", "mode": "recorded"}

        def window(self, t):
            return {"type": "snapshot", "t": t}

    server, _ = serve(backend=Recorded())
    assert request(server, "POST", "/api/stop", {"confirm": True}, JSON)[0] == 404
    assert request(server, "POST", "/api/rating", {"value": 1}, JSON)[0] == 404
    status, body, _ = request(server, "GET", "/api/window?t=2.5")
    assert status == 200 and json.loads(body)["t"] == 2.5
    assert request(server, "GET", "/api/window?t=nan")[0] == 400


def test_a_port_in_use_is_reported_before_anything_starts(serve):
    server, _ = serve()
    from closedloop.live.dashboard.server import DashboardUnavailable

    with pytest.raises(DashboardUnavailable, match=f"cannot listen on 127.0.0.1:{server.port}.*--port"):
        DashboardServer(DashboardOptions(port=server.port)).bind()


def test_a_dashboard_stop_request_is_a_stop_signal_that_never_raises():
    signals = StopSignals()
    signals.request("stop from the dashboard by Ana")
    assert signals.requested == "operator" and not signals.emergency
    assert signals.reason == "stop from the dashboard by Ana"
    signals.request("stop from the dashboard by Bo")  # a second stop: the first reason stays, still not emergency
    assert signals.reason.endswith("Ana") and not signals.emergency
    signals.request("emergency stop from the dashboard by Bo", emergency=True)
    assert signals.emergency and signals.reason.endswith("Ana")


def test_ratings_are_prompted_on_schedule_and_stamped_when_entered():
    from closedloop.live.dashboard.feed import LiveFeed
    from closedloop.live.dashboard.server import LiveBackend
    from closedloop.live.dashboard.state import DashboardInfo, DashboardState

    cfg = {"pipeline": {"name": "p"}, "source": {"sfreq": 100.0}, "features": {"channels": ["C3"]}}
    cfg["output"] = {"rating_prompt_s": 30.0}
    info = DashboardInfo.from_config(cfg, {}, "tes", ["C3"], ["alpha"])
    now = {"clock": 1000.0, "elapsed": 0.0}

    class Session:
        def dashboard_status(self):
            return {"phase": "running", "elapsed_s": now["elapsed"]}

    class Outlet:
        pushed: list = []

        def push(self, value, t, prompted, response):
            self.pushed.append((value, t, prompted, response))

    outlet = Outlet()
    backend = LiveBackend(
        DashboardState(info), LiveFeed(["C3"], ["C3"], ["C3"]), Session(), outlet, lambda: now["clock"]
    )
    assert backend.tick()["status"]["prompt"] is None
    now["elapsed"], now["clock"] = 30.0, 1030.0
    prompt = backend.tick()["status"]["prompt"]
    assert prompt == {"id": 1, "since_s": 30.0}
    now["clock"] = 1034.0
    assert backend.rating(4.0, 0.5, prompt_id=1)["prompted"]  # answered 3.5 s after the prompt (0.5 s in transit)
    assert outlet.pushed[-1] == (4.0, 1033.5, True, 3.5)
    assert backend.tick()["status"]["prompt"] is None  # answered: no longer shown
    now["clock"] = 1040.0
    backend.rating(2.0, 0.0, prompt_id=1)  # at will (the prompt was answered already)
    value, t, prompted, response = outlet.pushed[-1]
    assert (value, t, prompted) == (2.0, 1040.0, False) and response != response  # NaN at will
    now["elapsed"] = 59.0
    assert backend.tick()["status"]["prompt"] is None
    now["elapsed"] = 60.0
    assert backend.tick()["status"]["prompt"]["id"] == 2
