"""TTL trigger adapter: RTS pulses on pyserial's loop:// port, trigger bytes on a pseudo-terminal."""

from __future__ import annotations

import time

import numpy as np
import pytest
from adapter_helpers import ByteSink, adapter_maker, wait_for

from closedloop.adapters import LimitViolation
from closedloop.types import Command

pytestmark = pytest.mark.timeout(30)


def train(pulses: float, rate: float = 20.0, **extra) -> Command:
    return Command(
        0.0,
        rate,
        True,
        0.0,
        {"intensity_pct": 100.0, "pulses": pulses, "train_duration_s": pulses / rate, **extra},
        fire=True,
    )


class LineSpy:
    """Wraps a pyserial port and records every RTS change with its time."""

    def __init__(self, port) -> None:
        object.__setattr__(self, "_port", port)
        object.__setattr__(self, "changes", [])

    def __getattr__(self, name):
        return getattr(self._port, name)

    def __setattr__(self, name, value):
        if name == "rts":
            self.changes.append((time.monotonic(), bool(value)))
        setattr(self._port, name, value)


@pytest.fixture
def make(repo):
    with adapter_maker(repo / "devices" / "ttl_trigger.toml", {"pulse_width_ms": 5.0}) as make:
        yield make


def test_rts_pulses_have_the_train_rate_and_width(make):
    a = make(port="loop://")
    a.connect()
    spy = LineSpy(a.link.port)
    a.link.port = spy
    a.arm()
    t_apply = time.monotonic()
    a.apply(train(5), a.clock())
    assert wait_for(lambda: len(a.pulse_times) == 5)
    assert wait_for(lambda: sum(1 for _, v in spy.changes if not v) == 5)
    rises = np.array([t for t, v in spy.changes if v])
    falls = np.array([t for t, v in spy.changes if not v])
    assert len(rises) == 5 and len(falls) == 5 and not spy.rts  # line low after the train
    # 20 Hz from the start of the train: pulse k never before k / 20 s (a busy machine makes pulses late, not early)
    assert np.all(rises - t_apply >= np.arange(5) / 20.0)
    assert np.median(np.diff(rises)) == pytest.approx(0.05, rel=0.3)  # and not slower (median: one late pulse)
    assert np.all(falls - rises >= 0.005 * 0.9)  # pulses at least the configured 5 ms
    assert a.status()["pulses_sent"] == 5 and a.guard.pulses == 5


def test_trigger_bytes_on_a_serial_line_and_a_disconnect(make):
    with ByteSink() as sink:
        url = sink.open_pty()
        a = make(port=url, line="byte", trigger_byte=0x42)
        a.connect()
        a.arm()
        a.apply(train(3), a.clock())
        assert wait_for(lambda: len(sink.received) == 3)
        assert [m for _, m in sink.received] == [b"\x42"] * 3
        sink.inject("disconnect")  # the next byte arrives, then the line goes down
        a.guard.last_end = -1e9
        a.apply(train(3), a.clock())
        assert wait_for(lambda: a.fault is not None)
        assert "link lost" in a.fault and "no further triggers" in a.fault


def test_emergency_stop_cuts_a_running_train(make):
    a = make(port="loop://")
    a.connect()
    a.arm()
    a.apply(train(30, train_duration_s=1.5), a.clock())
    assert wait_for(lambda: len(a.pulse_times) >= 2)
    before = len(a.pulse_times)
    a.emergency_stop()
    a.worker.call(lambda: None, 5.0)  # the train job and the emergency stop have both run
    n = len(a.pulse_times)
    assert before <= n <= before + 1 < 30  # cut between two pulses: at most the one in progress
    assert not a.link.port.rts and a.fault is None
    assert any(r.note == f"train aborted after {n} of 30 pulses" for r in a.log.records(["event"]))


def test_out_of_profile_trains_are_refused(make):
    a = make(port="loop://")
    a.connect()
    a.arm()
    with pytest.raises(LimitViolation, match="train rate"):
        a.apply(train(5, rate=25.0), a.clock())
    a.arm()
    with pytest.raises(LimitViolation, match="pulses"):
        a.apply(train(40, train_duration_s=2.0), a.clock())
    a.worker.call(lambda: None, 5.0)  # whatever the refusals queued has run
    assert a.pulse_times == [] and a.refused == 2


def test_a_pulse_too_wide_for_the_rate_is_a_profile_error(make):
    with pytest.raises(ValueError, match="no low time"):
        make(port="loop://", pulse_width_ms=60.0)
