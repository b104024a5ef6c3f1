"""A study over simulated days: the ledger and the cross-session rules, on an injected wall clock.

No test waits for a real day: the ledger's clock is a list the test moves.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from pathlib import Path

import pytest

from closedloop.config import load_pipeline
from closedloop.config.profile import Limit
from closedloop.study import Ledger, LedgerError, StudyError, StudyRefusal, load_study, rules_for
from closedloop.study.rules import dose_caps, parse_rule_name
from closedloop.study.session import StudyRun

REPO = Path(__file__).resolve().parents[2]
DAY = 86400.0
T0 = 1_900_000_000.0  # 2030-03-17 UTC; only differences matter


class Clock:
    """The ledger's wall clock, moved by the test."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, hours: float) -> None:
        self.t += hours * 3600.0


@pytest.fixture(scope="module")
def tacs():
    return load_pipeline(REPO / "pipelines" / "alpha_tacs.toml")


def rule(value: float, why: str = "protocol of the test study, section 4") -> Limit:
    return Limit(value=value, source=why)


def summary(charge_C: float, stim_time_s: float = 600.0, reason: str = "duration reached") -> dict:
    return {
        "stop_reason": reason,
        "dose": {"charge_C": charge_C, "stim_time_s": stim_time_s},
        "charge_C": charge_C,
        "stim_time_s": stim_time_s,
        "safety_events": {"clamp": 2, "state": 3},
        "features": {"alpha": {"mean": 1.5, "std": 0.1, "n": 100}},
    }


def test_rule_names_parse_with_their_periods():
    assert parse_rule_name("min_session_interval_h").kind == "interval"
    p = parse_rule_name("max_charge_C_per_week")
    assert (p.quantity, p.period_s) == ("charge_C", 7 * DAY)
    assert parse_rule_name("max_sessions_per_day").period_s == DAY
    assert parse_rule_name("max_pulses_per_28d").period_s == 28 * DAY
    for bad in ("max_charge_per_week", "max_charge_C_per_month", "min_interval_h", "max_sessions_per_0d"):
        assert parse_rule_name(bad) is None


def test_dose_caps_come_from_the_effective_envelope(tacs):
    caps = dose_caps(tacs, 1200.0)
    env = {k: v["value"] for k, v in tacs.envelope().items()}
    assert caps["charge_C"] == env["max_charge_C"]
    assert caps["stim_time_s"] == min(1200.0, env["max_session_duration_s"])
    tighter = load_pipeline(REPO / "pipelines" / "alpha_tacs.toml", {"safety.max_charge_C": 1.0})
    assert dose_caps(tighter, None)["charge_C"] == 1.0


def test_a_study_over_days_refuses_the_session_that_breaks_a_rule_and_accepts_the_next(tmp_path, tacs):
    clock = Clock()
    ledger = Ledger(tmp_path / "ledger.sqlite", now=clock)
    rules = rules_for(
        {
            "min_session_interval_h": rule(20),
            "max_sessions_per_week": rule(3),
            "max_charge_C_per_week": rule(10),
        },
        study_origin="study file test.toml",
    )

    def start(label: str):
        return ledger.admit(tacs, "01", label, 1200.0, rules, tmp_path / label)

    # day 0: the first session, 4 C
    a1 = start("1")
    assert a1.overrides == {} and a1.caps["charge_C"] == 7.2
    clock.advance(0.5)
    ledger.finish(a1.entry_id, summary(4.0), {"n": 3, "mean": 5.0, "min": 4.0, "max": 6.0, "first": 6, "last": 4})
    # 3 h later: too soon
    clock.advance(3)
    with pytest.raises(StudyRefusal) as refused:
        start("2")
    text = str(refused.value)
    assert "min_session_interval_h = 20 h" in text and "protocol of the test study" in text
    assert "study file test.toml" in text and f"#{a1.entry_id}" in text and "sub-01 ses-1" in text
    assert refused.value.triggered_by == [a1.entry_id]
    assert len(ledger.sessions("01")) == 1  # a refusal writes nothing
    # day 1: allowed; 6 C of the week's 10 C are left, more than the 7.2 C session cap? no: 6 < 7.2 -> tightened
    clock.advance(20)
    a2 = start("2")
    assert a2.caps["charge_C"] == pytest.approx(6.0) and a2.overrides == {"max_charge_C": pytest.approx(6.0)}
    assert "max_charge_C_per_week" in a2.notes[0] and "tightened to 6" in a2.notes[0]
    clock.advance(0.5)
    ledger.finish(a2.entry_id, summary(5.0))
    # day 2: 1 C left of the week's budget -> admitted with a 1 C cap
    clock.advance(24)
    a3 = start("3")
    assert a3.overrides["max_charge_C"] == pytest.approx(1.0)
    clock.advance(0.5)
    ledger.finish(a3.entry_id, summary(1.0))
    # day 3: the week's charge is used up (and three sessions were given): refused, naming the sessions
    clock.advance(24)
    with pytest.raises(StudyRefusal) as refused:
        start("4")
    assert refused.value.rule.name == "max_sessions_per_week"
    assert all(f"#{e}" in str(refused.value) for e in (a1.entry_id, a2.entry_id, a3.entry_id))
    # day 7 + 1 h: the first session left the rolling week, 6 C were delivered in it -> allowed, 4 C cap
    clock.t = T0 + 7 * DAY + 3600.0
    a4 = start("4")
    assert a4.overrides["max_charge_C"] == pytest.approx(10.0 - 6.0)
    entries = ledger.sessions("01")
    assert [e.status for e in entries] == ["finished", "finished", "finished", "started"]
    first = entries[0]
    assert first.dose == {"charge_C": 4.0, "stim_time_s": 600.0} and first.safety_events == 5
    assert first.ratings["mean"] == 5.0 and first.summary["features"]["alpha"]["mean"] == 1.5
    assert first.pipeline == "alpha_tacs" and len(first.pipeline_sha256) == 64 and first.modality == "tes"


def test_the_charge_rule_refuses_when_the_budget_is_spent(tmp_path, tacs):
    clock = Clock()
    ledger = Ledger(tmp_path / "l.sqlite", now=clock)
    rules = rules_for({"max_charge_C_per_day": rule(5)})
    a = ledger.admit(tacs, "02", "1", 600.0, rules, tmp_path / "a")
    ledger.finish(a.entry_id, summary(5.0))
    clock.advance(2)
    with pytest.raises(StudyRefusal) as refused:
        ledger.admit(tacs, "02", "2", 600.0, rules, tmp_path / "b")
    assert "max_charge_C_per_day = 5 C" in str(refused.value) and "5 C already delivered" in str(refused.value)
    # other participants are not affected
    ledger.admit(tacs, "03", "1", 600.0, rules, tmp_path / "c")
    clock.advance(23)  # 25 h after the first: out of the rolling day
    ledger.admit(tacs, "02", "2", 600.0, rules, tmp_path / "d")


def test_a_session_that_never_closed_counts_in_full_and_a_failed_start_not_at_all(tmp_path, tacs):
    clock = Clock()
    ledger = Ledger(tmp_path / "l.sqlite", now=clock)
    rules = rules_for({"min_session_interval_h": rule(1), "max_charge_C_per_week": rule(10)})
    crashed = ledger.admit(tacs, "01", "1", 1200.0, rules, tmp_path / "a")  # never finished: 7.2 C counted
    clock.advance(24)
    second = ledger.admit(tacs, "01", "2", 1200.0, rules, tmp_path / "b")
    assert second.overrides["max_charge_C"] == pytest.approx(10 - 7.2)
    ledger.abandon(second.entry_id, "did not start: no EEG stream")
    clock.advance(0.1)  # the abandoned start does not block the interval rule, nor use the budget
    third = ledger.admit(tacs, "01", "3", 1200.0, rules, tmp_path / "c")
    assert third.overrides["max_charge_C"] == pytest.approx(10 - 7.2)
    # a session still running (or crashed a minute ago) blocks the interval rule
    clock.advance(0.05)
    with pytest.raises(StudyRefusal, match="still running or never closed"):
        ledger.admit(tacs, "01", "4", 1200.0, rules, tmp_path / "d")
    clock.advance(2)  # past the interval: now the budget (7.2 C + 2.8 C counted in full) refuses
    with pytest.raises(StudyRefusal, match="10 C already delivered.*never closed: counted in full"):
        ledger.admit(tacs, "01", "4", 1200.0, rules, tmp_path / "d")
    assert [e.status for e in ledger.sessions("01")] == ["started", "not_started", "started"]
    assert ledger.sessions("01")[0].counted_dose["charge_C"] == pytest.approx(7.2)
    assert crashed.entry_id == 1


def test_rules_in_the_device_profile_are_checked_and_named(tmp_path):
    profile = (REPO / "devices" / "sim_tacs.toml").read_text()
    profile += (
        '\n[limits.max_sessions_per_day]\nvalue = 1\nsource = "device manufacturer: one session a day (test profile)"\n'
    )
    (tmp_path / "tacs_daily.toml").write_text(profile.replace('name = "sim_tacs"', 'name = "tacs_daily"'))
    resolved = load_pipeline(
        REPO / "pipelines" / "alpha_tacs.toml", {"device.profile": str(tmp_path / "tacs_daily.toml")}
    )
    rules = rules_for({}, resolved.profile)
    assert [(r.name, r.origin) for r in rules] == [("max_sessions_per_day", "device profile tacs_daily")]
    clock = Clock()
    ledger = Ledger(tmp_path / "l.sqlite", now=clock)
    a = ledger.admit(resolved, "01", "1", 60.0, rules, tmp_path / "a")
    ledger.finish(a.entry_id, summary(0.1))
    clock.advance(5)
    with pytest.raises(StudyRefusal, match="device profile tacs_daily"):
        ledger.admit(resolved, "01", "2", 60.0, rules, tmp_path / "b")


def test_study_run_tightens_the_session_envelope_and_records_identity(tmp_path, tacs):
    (tmp_path / "study.toml").write_text(
        '[study]\nname = "pilot"\nroot = "data"\n'
        '[rules.max_charge_C_per_week]\nvalue = 3\nsource = "protocol v1, section 2: 3 C a week"\n'
    )
    study = load_study(tmp_path / "study.toml")
    assert study.root == (tmp_path / "data").resolve() and study.rules["max_charge_C_per_week"].unit == "C"
    clock = Clock()
    run = StudyRun.admit(study, tacs, "07", None, 600.0, now=clock)
    assert run.session == "1" and run.folder.parent == study.root / "sub-07" / "ses-1"
    assert run.identity == {"participant": "07", "session": "1", "study": "pilot"}
    tight = run.tighten(tacs)
    assert tight.envelope()["max_charge_C"]["value"] == pytest.approx(3.0)
    assert tacs.envelope()["max_charge_C"]["value"] == 7.2  # the original is untouched
    run.finish(summary(1.0))
    clock.advance(30)
    nxt = StudyRun.admit(study, tacs, "07", None, 600.0, now=clock)
    assert nxt.session == "2" and nxt.tighten(tacs).envelope()["max_charge_C"]["value"] == pytest.approx(2.0)


@pytest.mark.parametrize(
    "text, word",
    [
        ('[study]\nname = "x"\n', "study.root"),
        (
            '[study]\nname = "x"\nroot = "d"\n[rules.max_charge_per_week]\nvalue = 1\nsource = "long enough source"\n',
            "not a rule name; allowed: min_session_interval_h",
        ),
        ('[study]\nname = "x"\nroot = "d"\n[rules.max_sessions_per_day]\nvalue = 1\n', "source"),
        (
            '[study]\nname = "x"\nroot = "d"\n[rules.max_sessions_per_day]\nvalue = -1\nsource = "long enough src"\n',
            "must be >= 0",
        ),
        ('[study]\nname = "x"\nroot = "d"\nbogus = 1\n', "bogus"),
        ("[study\n", "not valid TOML"),
    ],
)
def test_a_bad_study_file_is_one_clear_error(tmp_path, text, word):
    path = tmp_path / "study.toml"
    path.write_text(text)
    with pytest.raises(StudyError) as err:
        load_study(path)
    assert word in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


# -- a ledger that cannot be read refuses to start ----------------------------------------------
def test_a_corrupted_ledger_refuses(tmp_path, tacs):
    path = tmp_path / "ledger.sqlite"
    Ledger(path).admit(tacs, "01", "1", 60.0, [], tmp_path / "a")
    raw = bytearray(path.read_bytes())
    raw[:100] = b"this is not an SQLite header" + bytes(72)
    path.write_bytes(bytes(raw))
    for wal in tmp_path.glob("ledger.sqlite-*"):
        wal.unlink()
    with pytest.raises(LedgerError, match="cannot be read .*refusing to start"):
        Ledger(path).admit(tacs, "01", "2", 60.0, [], tmp_path / "b")


def test_a_damaged_page_is_found_by_the_integrity_check(tmp_path, tacs):
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    for i in range(60):  # enough rows for several pages
        a = ledger.admit(tacs, "01", str(i), 60.0, [], tmp_path / str(i))
        ledger.finish(a.entry_id, {**summary(0.01), "padding": "x" * 2000})
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    raw = bytearray(path.read_bytes())
    page = 4096
    raw[page : 3 * page] = bytes([0xA5]) * (2 * page)  # scribble over the pages after the header page
    path.write_bytes(bytes(raw))
    with pytest.raises(LedgerError, match="damaged|cannot be read"):
        Ledger(path).admit(tacs, "01", "x", 60.0, [], tmp_path / "x")


def test_a_ledger_of_another_schema_refuses(tmp_path, tacs):
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE things (a INTEGER)")
    con.commit()
    con.close()
    with pytest.raises(LedgerError, match="no schema_version: not a closedloop ledger"):
        Ledger(other)
    newer = tmp_path / "newer.sqlite"
    Ledger(newer)
    con = sqlite3.connect(newer)
    con.execute("INSERT INTO schema_version VALUES (99, 'future')")
    con.commit()
    con.close()
    with pytest.raises(LedgerError, match="schema version 99, newer than this closedloop"):
        Ledger(newer)


def test_a_locked_ledger_refuses_after_its_timeout(tmp_path, tacs):
    path = tmp_path / "ledger.sqlite"
    Ledger(path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing and not letting go
    try:
        ledger = Ledger(path, timeout_s=0.2, now=Clock())  # opening only reads (WAL: not blocked)
        with pytest.raises(LedgerError, match="locked by another process for more than 0.2 s"):
            ledger.admit(tacs, "01", "1", 60.0, [], tmp_path / "a")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert Ledger(path, timeout_s=0.2).admit(tacs, "01", "1", 60.0, [], tmp_path / "a").entry_id == 1


def test_readers_see_the_ledger_while_a_writer_holds_it(tmp_path, tacs):
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    ledger.admit(tacs, "01", "1", 60.0, [], tmp_path / "a")
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE sessions SET stop_reason = 'uncommitted' WHERE id = 1")
    try:
        seen = Ledger(path, timeout_s=0.2).sessions()  # WAL: a reader is not blocked by the writer
        assert [e.stop_reason for e in seen] == [None]
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_two_sessions_starting_at_once_cannot_share_the_last_slot(tmp_path, tacs):
    path = tmp_path / "ledger.sqlite"
    Ledger(path)
    rules = rules_for({"max_sessions_per_day": rule(1)})
    results: list[object] = []
    barrier = threading.Barrier(4)

    def start(i: int) -> None:
        barrier.wait(timeout=10)
        try:
            results.append(Ledger(path, timeout_s=10).admit(tacs, "01", str(i), 60.0, rules, tmp_path / str(i)))
        except StudyRefusal as e:
            results.append(e)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    admitted = [r for r in results if not isinstance(r, StudyRefusal)]
    assert len(results) == 4 and len(admitted) == 1
    assert len(Ledger(path).sessions()) == 1


def test_caps_never_hold_infinity_in_json(tmp_path, tacs):
    ledger = Ledger(tmp_path / "l.sqlite")
    ledger.admit(tacs, "01", "1", None, [], tmp_path / "a")
    (entry,) = ledger.sessions()
    assert all(v is None or math.isfinite(v) for v in entry.dose_cap.values())
