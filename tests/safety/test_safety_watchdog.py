"""The watchdog component: stale frames, a stalled loop thread, a silent device."""

from __future__ import annotations

import time

import numpy as np
import pytest
from adapter_helpers import wait_for
from safety_helpers import at, make

from closedloop.safety import StimState, TESEnvelope, Watchdog
from closedloop.types import Command


def test_checks_are_armed_by_the_first_report_and_name_the_cause():
    w = Watchdog(frame_timeout_s=0.3, loop_timeout_s=1.0, device_timeout_s=2.0)
    assert w.check(100.0) is None  # nothing reported yet: a window is still filling
    w.frame(0.0)
    w.heartbeat(0.0)
    w.device_ack(0.0)
    assert w.check(0.3) is None
    trip = w.check(0.31)
    assert trip.kind == "frame" and not trip.ends_session and "0.3 s" in trip.reason
    w.frame(0.31)
    trip = w.check(1.5)
    assert trip.kind == "loop" and trip.ends_session and "stalled" in trip.reason
    w.heartbeat(1.5)
    w.frame(1.5)
    trip = w.check(2.5)
    assert trip.kind == "device" and trip.ends_session and "not acknowledging" in trip.reason


def test_monitor_thread_notices_a_stalled_loop_and_stops_stimulation():
    env = TESEnvelope(2.0, 0.5, 4.0, 100.0, 7.2, 0.0, 100.0, 0.3)
    safety = make(env)
    for i in range(40):
        at(safety, i * 0.1).step(Command(2.0, 10.0, True))
    timeout = 0.5
    w = Watchdog(frame_timeout_s=0.3, loop_timeout_s=timeout, clock=time.monotonic)
    trips = []

    def on_trip(trip):
        trips.append(trip)
        safety.emergency_stop(trip.reason)  # what the runtime wires

    beats = [time.monotonic()]
    w.heartbeat(beats[-1])
    w.start(on_trip, interval_s=0.02)
    try:
        for _ in range(10):  # a healthy loop keeps beating
            time.sleep(0.03)  # the scenario: the loop's pace
            beats.append(time.monotonic())
            w.heartbeat(beats[-1])
        healthy_trips = len(trips)
        # no trip while the loop beats (unless the machine really held this thread past the timeout)
        assert healthy_trips == 0 or max(np.diff(beats)) > timeout
        assert wait_for(lambda: len(trips) > healthy_trips, 10.0)  # then the loop "stalls": no more heartbeats
    finally:
        w.stop()
    assert [t.kind for t in trips] == ["loop"] * (healthy_trips + 1)  # once per stall
    assert safety.stopped and "loop thread stalled" in safety.stop_reason
    assert safety.state is StimState.RAMPING_DOWN
    assert at(safety, safety.t + 1.0).step(Command(2.0, 10.0, True)).amplitude_mA == 0.0


def test_start_twice_is_an_error():
    w = Watchdog(0.3)
    w.start(lambda trip: None)
    try:
        with pytest.raises(RuntimeError):
            w.start(lambda trip: None)
    finally:
        w.stop()
