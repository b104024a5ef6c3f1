"""The session ledger: one SQLite file per study root, every stimulation session in it.

A session is written twice: when it is admitted — after the cross-session
rules (:mod:`closedloop.study.rules`) passed, in the same write transaction,
so two sessions starting at once cannot both use the last of a budget — and
when it ends (stop reason, dose, safety events, ratings, the summary). A
session that never ends (crash, power cut, killed) stays ``started`` and
counts toward every rule with the most it could have delivered; a session
whose start failed before anything was armed is marked ``not_started`` and
does not count.

The file is opened in WAL mode (any number of readers beside one writer)
with a busy timeout; a writer holds the write lock only for the checks and
the insert. A ledger that cannot be read — not a database, damaged, locked
past the timeout, or of another schema — raises :class:`LedgerError`, and
the session is refused: the rules never fail open.

Schema migrations are numbered; ``schema_version`` records those applied.
A ledger written by a newer closedloop (a higher version) is refused rather
than guessed at.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from closedloop.study.rules import PastSession, Rule, StudyRefusal, dose_caps, evaluate

__all__ = ["Admission", "Ledger", "LedgerEntry", "LedgerError", "SCHEMA_VERSION", "pipeline_hash", "profile_hash"]

#: Migrations, in order: version -> SQL statements. Append; never edit an applied one.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE sessions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            participant TEXT NOT NULL,
            session TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('started', 'finished', 'not_started')),
            pipeline TEXT NOT NULL,
            pipeline_file TEXT NOT NULL,
            pipeline_sha256 TEXT NOT NULL,
            profile TEXT NOT NULL,
            profile_sha256 TEXT NOT NULL,
            device TEXT NOT NULL,
            modality TEXT NOT NULL,
            folder TEXT NOT NULL,
            started_at REAL NOT NULL,
            requested_duration_s REAL,
            latest_end_at REAL NOT NULL,
            dose_cap TEXT NOT NULL,
            stopped_at REAL,
            stop_reason TEXT,
            dose TEXT,
            safety_events INTEGER,
            ratings TEXT,
            summary TEXT
        )""",
        "CREATE INDEX sessions_by_participant ON sessions (participant, started_at)",
    ),
}
#: The schema version this closedloop writes.
SCHEMA_VERSION = max(MIGRATIONS)


class LedgerError(RuntimeError):
    """The ledger cannot be read or written; no session may start."""


def _sha256(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def pipeline_hash(resolved) -> str:
    """Return the SHA-256 of the resolved pipeline (the file with its ``--set`` overrides), as canonical JSON."""
    return _sha256(resolved.config.model_dump(mode="json"))


def profile_hash(profile) -> str:
    """Return the SHA-256 of a device profile (device, limits, adapter options), as canonical JSON."""
    return _sha256(profile.model_dump(mode="json", exclude={"path"}))


def _json_num(d: Mapping[str, float]) -> str:
    return json.dumps({k: (None if not math.isfinite(float(v)) else float(v)) for k, v in d.items()}, sort_keys=True)


@dataclass(frozen=True)
class LedgerEntry:
    """One session of the ledger.

    Attributes
    ----------
    id : int
        Ledger id.
    participant, session : str
        Labels.
    status : str
        ``started`` (never closed, or running), ``finished`` or ``not_started``.
    pipeline, pipeline_file, pipeline_sha256 : str
        Pipeline name, file and hash of the resolved pipeline.
    profile, profile_sha256, device, modality : str
        Device profile file, its hash, device name and modality.
    folder : str
        The session folder.
    started_at : float
        Unix time the session was admitted.
    requested_duration_s : float or None
        Duration asked for.
    latest_end_at : float
        Latest time it can have ended (start + its longest possible duration).
    dose_cap : dict
        The most it could deliver (counted while it is ``started``).
    stopped_at : float or None
        Unix time it ended.
    stop_reason : str or None
        Why it ended.
    dose : dict
        What it delivered (from its summary).
    safety_events : int or None
        Safety events recorded.
    ratings : dict
        Ratings summary (``n``, ``mean``, ``min``, ``max``, ``first``, ``last``).
    summary : dict
        The session's ``summary.json``.
    """

    id: int
    participant: str
    session: str
    status: str
    pipeline: str
    pipeline_file: str
    pipeline_sha256: str
    profile: str
    profile_sha256: str
    device: str
    modality: str
    folder: str
    started_at: float
    requested_duration_s: float | None
    latest_end_at: float
    dose_cap: dict
    stopped_at: float | None
    stop_reason: str | None
    dose: dict
    safety_events: int | None
    ratings: dict
    summary: dict

    @property
    def counted_dose(self) -> dict[str, float]:
        """Return the dose the rules count: delivered once finished, else the cap."""
        if self.status == "finished":
            return {k: float(v) for k, v in self.dose.items() if v is not None}
        return {k: (math.inf if v is None else float(v)) for k, v in self.dose_cap.items()}

    def started_text(self) -> str:
        """Return the start time as local ISO text (minutes)."""
        return datetime.fromtimestamp(self.started_at).astimezone().isoformat(timespec="minutes")


@dataclass(frozen=True)
class Admission:
    """A session the rules admitted: its ledger id and what the rules tightened.

    Attributes
    ----------
    entry_id : int
        The ledger row (``started``) to close with :meth:`Ledger.finish` or :meth:`Ledger.abandon`.
    overrides : dict of str to float
        ``[safety]`` keys to tighten for the session (dose rules' remaining budgets).
    notes : list of str
        What was tightened and why.
    caps : dict of str to float
        The most the session may deliver per quantity.
    """

    entry_id: int
    overrides: dict[str, float]
    notes: list[str]
    caps: dict[str, float]


class Ledger:
    """The session ledger of one study root.

    Parameters
    ----------
    path : str or Path
        The SQLite file (created with its folder when missing).
    timeout_s : float
        How long to wait for another writer before giving up (refusal).
    now : callable, optional
        Wall clock, Unix seconds (default :func:`time.time`); tests inject one to simulate days.

    Raises
    ------
    LedgerError
        If the file is not a ledger this closedloop can read (see module docstring).
    """

    def __init__(self, path: str | Path, timeout_s: float = 5.0, now: Callable[[], float] | None = None) -> None:
        self.path = Path(path)
        self.timeout_s = float(timeout_s)
        self.now = now or time.time
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LedgerError(f"ledger {self.path}: cannot create its folder ({e})") from None
        self._migrate()

    # -- connection -------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        try:
            con = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
            con.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.Error as e:
            raise self._error(e) from None
        if str(mode).lower() != "wal":
            con.close()
            raise LedgerError(f"ledger {self.path}: cannot switch to WAL mode (got {mode!r}); refusing to start")
        con.row_factory = sqlite3.Row
        return con

    def _error(self, e: sqlite3.Error) -> LedgerError:
        text = str(e)
        if "locked" in text or "busy" in text:
            return LedgerError(
                f"ledger {self.path} is locked by another process for more than {self.timeout_s:g} s ({text}); "
                "refusing to start — wait for the other session's start or end, then try again"
            )
        return LedgerError(f"ledger {self.path} cannot be read ({type(e).__name__}: {text}); refusing to start")

    def _current(self, con: sqlite3.Connection) -> bool:
        """Return whether the schema is this closedloop's already (read only: readers never take the write lock)."""
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "schema_version" not in tables:
            return False
        return max((int(r[0]) for r in con.execute("SELECT version FROM schema_version")), default=0) == SCHEMA_VERSION

    def _migrate(self) -> None:
        con = self._connect()
        try:
            if self._current(con):
                return
            con.execute("BEGIN IMMEDIATE")
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            tables.discard("sqlite_sequence")
            if tables and "schema_version" not in tables:
                raise LedgerError(
                    f"ledger {self.path} has tables {sorted(tables)} but no schema_version: not a closedloop "
                    "ledger; refusing to start"
                )
            if not tables:
                con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
            done = {int(r[0]) for r in con.execute("SELECT version FROM schema_version")}
            newest = max(done, default=0)
            if newest > SCHEMA_VERSION:
                raise LedgerError(
                    f"ledger {self.path} has schema version {newest}, newer than this closedloop knows "
                    f"({SCHEMA_VERSION}); upgrade closedloop — refusing to start"
                )
            for version in sorted(MIGRATIONS):
                if version in done:
                    continue
                for statement in MIGRATIONS[version]:
                    con.execute(statement)
                con.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (version, datetime.now().astimezone().isoformat(timespec="seconds")),
                )
            con.execute("COMMIT")
        except LedgerError:
            con.execute("ROLLBACK")
            raise
        except sqlite3.Error as e:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise self._error(e) from None
        finally:
            con.close()

    def _check(self, con: sqlite3.Connection) -> None:
        """Refuse a damaged file (quick_check) or a sessions table of the wrong shape."""
        problems = [r[0] for r in con.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise LedgerError(f"ledger {self.path} is damaged ({'; '.join(problems[:3])}); refusing to start")
        cols = {r[1] for r in con.execute("PRAGMA table_info(sessions)")}
        missing = {"participant", "status", "started_at", "latest_end_at", "dose_cap", "dose", "modality"} - cols
        if missing:
            raise LedgerError(
                f"ledger {self.path}: sessions table lacks {sorted(missing)} (wrong schema); refusing to start"
            )

    # -- reading --------------------------------------------------------------------
    def sessions(self, participant: str | None = None, include_not_started: bool = True) -> list[LedgerEntry]:
        """Return the ledger's sessions (of one participant), oldest first."""
        con = self._connect()
        try:
            self._check(con)
            sql = "SELECT * FROM sessions"
            args: tuple = ()
            where = []
            if participant is not None:
                where.append("participant = ?")
                args = (participant,)
            if not include_not_started:
                where.append("status != 'not_started'")
            if where:
                sql += " WHERE " + " AND ".join(where)
            rows = con.execute(sql + " ORDER BY started_at, id", args).fetchall()
        except sqlite3.Error as e:
            raise self._error(e) from None
        finally:
            con.close()
        return [_entry(r) for r in rows]

    def next_session_label(self, participant: str) -> str:
        """Return the next numeric session label of a participant (``1`` for the first)."""
        labels = [e.session for e in self.sessions(participant, include_not_started=False)]
        numbers = [int(x) for x in labels if x.isdigit()]
        return str(max(numbers, default=0) + 1)

    # -- writing --------------------------------------------------------------------
    def admit(
        self,
        resolved,
        participant: str,
        session: str,
        duration_s: float | None,
        rules: Sequence[Rule],
        folder: str | Path,
    ) -> Admission:
        """Check the rules against the participant's sessions and, if they pass, record the session as started.

        Both happen in one write transaction (``BEGIN IMMEDIATE``).

        Raises
        ------
        StudyRefusal
            If a rule refuses the session (nothing is written).
        LedgerError
            If the ledger cannot be read or written.
        """
        now = float(self.now())
        caps = dose_caps(resolved, duration_s)
        modality = resolved.profile.device.modality
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            self._check(con)
            rows = con.execute(
                "SELECT * FROM sessions WHERE participant = ? AND status != 'not_started'", (participant,)
            ).fetchall()
            past = [_past(_entry(r)) for r in rows]
            verdict = evaluate(rules, past, now, modality, caps)
            longest = verdict.caps.get("stim_time_s", math.inf)
            env = resolved.envelope()
            if not math.isfinite(longest):
                longest = float(env.get("max_session_duration_s", {}).get("value", 86400.0))
            cur = con.execute(
                """INSERT INTO sessions (participant, session, status, pipeline, pipeline_file, pipeline_sha256,
                    profile, profile_sha256, device, modality, folder, started_at, requested_duration_s,
                    latest_end_at, dose_cap)
                   VALUES (?, ?, 'started', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    participant,
                    session,
                    resolved.config.pipeline.name,
                    str(resolved.path),
                    pipeline_hash(resolved),
                    str(resolved.profile.path or resolved.profile.device.name),
                    profile_hash(resolved.profile),
                    resolved.profile.device.name,
                    modality,
                    str(folder),
                    now,
                    None if duration_s is None else float(duration_s),
                    now + longest + 60.0,  # + start-up and the final ramp
                    _json_num(verdict.caps),
                ),
            )
            con.execute("COMMIT")
        except StudyRefusal:
            con.execute("ROLLBACK")
            raise
        except LedgerError:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        except sqlite3.Error as e:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise self._error(e) from None
        finally:
            con.close()
        return Admission(int(cur.lastrowid), verdict.overrides, verdict.notes, verdict.caps)

    def finish(self, entry_id: int, summary: Mapping, ratings: Mapping | None = None) -> None:
        """Close a session with its summary: stop time and reason, dose, safety events, ratings.

        Raises
        ------
        LedgerError
            If the ledger cannot be written (the session then stays ``started`` and counts in full).
        """
        dose = {k: float(v) for k, v in (summary.get("dose") or {}).items() if isinstance(v, int | float)}
        dose.setdefault("stim_time_s", float(summary.get("stim_time_s") or 0.0))
        if "charge_C" in summary:
            dose.setdefault("charge_C", float(summary.get("charge_C") or 0.0))
        if "sonication_s" in dose:
            dose.setdefault("stim_time_s", dose["sonication_s"])
        events = sum(int(v) for v in (summary.get("safety_events") or {}).values() if isinstance(v, int | float))
        self._update(
            entry_id,
            status="finished",
            stopped_at=float(self.now()),
            stop_reason=str(summary.get("stop_reason", "")),
            dose=_json_num(dose),
            safety_events=events,
            ratings=json.dumps(dict(ratings or {}), sort_keys=True),
            summary=json.dumps(summary, sort_keys=True, default=str),
        )

    def abandon(self, entry_id: int, reason: str) -> None:
        """Mark a session whose start failed before anything was armed (it no longer counts)."""
        self._update(
            entry_id,
            status="not_started",
            stopped_at=float(self.now()),
            stop_reason=reason,
            dose=_json_num({}),
            safety_events=0,
        )

    def _update(self, entry_id: int, **values) -> None:
        sets = ", ".join(f"{k} = ?" for k in values)
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            cur = con.execute(f"UPDATE sessions SET {sets} WHERE id = ?", (*values.values(), entry_id))
            if cur.rowcount != 1:
                raise LedgerError(f"ledger {self.path} has no session #{entry_id}")
            con.execute("COMMIT")
        except LedgerError:
            con.execute("ROLLBACK")
            raise
        except sqlite3.Error as e:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise self._error(e) from None
        finally:
            con.close()


def _loads(text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise LedgerError(f"ledger holds unreadable JSON ({e}); refusing to start") from None
    return value if isinstance(value, dict) else {}


def _entry(r: sqlite3.Row) -> LedgerEntry:
    return LedgerEntry(
        id=int(r["id"]),
        participant=r["participant"],
        session=r["session"],
        status=r["status"],
        pipeline=r["pipeline"],
        pipeline_file=r["pipeline_file"],
        pipeline_sha256=r["pipeline_sha256"],
        profile=r["profile"],
        profile_sha256=r["profile_sha256"],
        device=r["device"],
        modality=r["modality"],
        folder=r["folder"],
        started_at=float(r["started_at"]),
        requested_duration_s=r["requested_duration_s"],
        latest_end_at=float(r["latest_end_at"]),
        dose_cap=_loads(r["dose_cap"]),
        stopped_at=r["stopped_at"],
        stop_reason=r["stop_reason"],
        dose=_loads(r["dose"]),
        safety_events=r["safety_events"],
        ratings=_loads(r["ratings"]),
        summary=_loads(r["summary"]),
    )


def _past(e: LedgerEntry) -> PastSession:
    closed = e.status == "finished"
    end = float(e.stopped_at) if closed and e.stopped_at is not None else e.latest_end_at
    return PastSession(
        id=e.id,
        label=f"sub-{e.participant} ses-{e.session}",
        modality=e.modality,
        started_at=e.started_at,
        end_at=end,
        closed=closed,
        dose=e.counted_dose,
    )
