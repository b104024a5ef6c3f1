"""StreamInlets: once its thread runs, only that thread touches the inlets (liblsl queues take one consumer)."""

from __future__ import annotations

import threading

from closedloop.recording.inlets import StreamInlets


class FakeRecording:
    def __init__(self) -> None:
        self.markers: list[tuple[str, list, list]] = []
        self.offsets: list[tuple[str, float]] = []

    def on_marker(self, stream, values, stamps) -> None:
        self.markers.append((stream, list(values), list(stamps)))

    def on_clock_offset(self, collection_time, offset, stream=None) -> None:
        self.offsets.append((stream, offset))


class FakeInlet:
    """Records which thread made each call; ``time_correction`` can be held like a stuck liblsl call."""

    def __init__(self, queued: list[tuple[list, list]], hold: threading.Event | None = None) -> None:
        self.queued = list(queued)
        self.hold = hold
        self.entered = threading.Event()
        self.calls: list[tuple[str, threading.Thread]] = []

    def pull_chunk(self, timeout=0.0):
        self.calls.append(("pull_chunk", threading.current_thread()))
        return self.queued.pop(0) if self.queued else ([], [])

    def time_correction(self, timeout=0.0):
        self.calls.append(("time_correction", threading.current_thread()))
        self.entered.set()
        if self.hold is not None:
            assert self.hold.wait(60.0)
        return 0.25

    def close_stream(self):
        self.calls.append(("close_stream", threading.current_thread()))


def started(inlet: FakeInlet, recording: FakeRecording) -> StreamInlets:
    inlets = StreamInlets(recording, [])
    inlets._inlets = [("m", inlet, "string")]  # as start() leaves them after resolving
    inlets.names, inlets.samples = ["m"], {"m": 0}
    inlets._thread = threading.Thread(target=inlets._run, daemon=True)
    inlets._thread.start()
    return inlets


def test_the_last_markers_and_the_close_come_from_the_pulling_thread():
    rec = FakeRecording()
    inlet = FakeInlet([(["a"], [1.0]), (["b"], [2.0])])
    inlets = started(inlet, rec)
    assert inlet.entered.wait(60.0)
    inlets.stop(timeout=60.0)
    assert [m[1] for m in rec.markers] == [["a"], ["b"]]
    assert inlets.samples == {"m": 2}
    assert rec.offsets == [("m", 0.25)]
    assert inlet.calls[-1][0] == "close_stream"
    assert {thread for _, thread in inlet.calls} == {inlets._thread}


def test_a_thread_stuck_in_liblsl_is_left_to_close_its_inlet_and_forwards_nothing_more():
    rec = FakeRecording()
    hold = threading.Event()
    inlet = FakeInlet([(["late"], [3.0])], hold=hold)
    inlets = started(inlet, rec)
    assert inlet.entered.wait(60.0)  # the thread is inside time_correction and stays there
    inlets.stop(timeout=0.1)
    assert inlets._thread.is_alive()
    assert all(thread is inlets._thread for _, thread in inlet.calls)  # stop() touched nothing
    assert "close_stream" not in [name for name, _ in inlet.calls]
    hold.set()
    inlets._thread.join(60.0)
    assert not inlets._thread.is_alive()
    assert inlet.calls[-1] == ("close_stream", inlets._thread)
    assert rec.markers == [] and rec.offsets == []  # the recording is being finished: nothing after stop()
