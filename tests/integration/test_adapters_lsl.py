"""LSL command-stream adapter: what a lab's bridge receives."""

from __future__ import annotations

import json
import uuid

import pytest

from closedloop.lslconfig import configure_lsl

configure_lsl()

import pylsl  # noqa: E402
from adapter_helpers import adapter_maker  # noqa: E402

from closedloop.adapters import DeviceFault, LimitViolation  # noqa: E402
from closedloop.types import Command  # noqa: E402

pytestmark = [pytest.mark.lsl, pytest.mark.timeout(30)]


def unique_stream() -> dict[str, str]:
    """A stream name and source_id no other test uses (one per adapter)."""
    sid = f"cltest-cmd-{uuid.uuid4().hex[:8]}"
    return {"stream_name": sid, "source_id": sid}


@pytest.fixture
def make(repo):
    with adapter_maker(repo / "devices" / "lsl_commands.toml", unique_stream) as make:
        yield make


def inlet_for(source_id: str) -> pylsl.StreamInlet:
    found = pylsl.resolve_byprop("source_id", source_id, minimum=1, timeout=5.0)
    assert found, f"stream {source_id} not found"
    inlet = pylsl.StreamInlet(found[0], max_buflen=10)
    inlet.open_stream(timeout=5.0)
    return inlet


def pull(inlet, n: int):
    out = []
    for _ in range(25):
        sample, ts = inlet.pull_sample(timeout=0.2)
        if sample is not None:
            out.append((sample, ts))
        if len(out) >= n:
            break
    return out


def test_commands_arrive_as_numbers_and_markers_with_their_times(make):
    a = make()
    a.connect()
    data = inlet_for(a.source_id)
    markers = inlet_for(f"{a.source_id}-markers")
    info = data.info()
    ch = info.desc().child("channels").first_child()
    labels = []
    while not ch.empty():
        labels.append(ch.child_value("label"))
        ch = ch.next_sibling()
    assert labels == ["amplitude_mA", "frequency_Hz", "on"] and info.type() == "StimCommands"
    now = pylsl.local_clock()
    for k, amp in enumerate((0.5, 1.0, 1.5)):
        a.apply(Command(amp, 10.0, True, now), now + 0.01 * k)
    got = pull(data, 3)
    assert [s for s, _ in got] == [[0.5, 10.0, 1.0], [1.0, 10.0, 1.0], [1.5, 10.0, 1.0]]
    assert [ts for _, ts in got] == pytest.approx([now, now + 0.01, now + 0.02], abs=1e-6)
    docs = [json.loads(s[0]) for s, _ in pull(markers, 3)]
    assert [d["amplitude_mA"] for d in docs if "amplitude_mA" in d][-3:] == [0.5, 1.0, 1.5]
    assert a.output_mA(now) == 1.5


def test_refusal_and_emergency_stop_publish_an_explicit_zero(make):
    a = make()
    a.connect()
    data = inlet_for(a.source_id)
    markers = inlet_for(f"{a.source_id}-markers")
    now = pylsl.local_clock()
    a.apply(Command(1.0, 10.0, True, now), now)
    with pytest.raises(LimitViolation, match="amplitude 3.0 mA outside"):
        a.apply(Command(3.0, 10.0, True, now), now)
    a.emergency_stop()
    got = [s for s, _ in pull(data, 3)]
    assert got == [[1.0, 10.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    events = [json.loads(s[0]).get("event") for s, _ in pull(markers, 4)]
    assert "refused" in events and events[-1] == "emergency_stop"


def test_a_missing_bridge_is_a_fault_when_required(make):
    a = make(require_consumer=True, consumer_timeout_s=0.3)
    with pytest.raises(DeviceFault, match="no bridge subscribed"):
        a.connect()
