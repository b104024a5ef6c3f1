"""Cross-session safety rules: checked against the ledger before anything is armed.

A rule is a value with its source, named like a device-profile limit. It
comes from the study file (``[rules.NAME]``) or from the device profile
(``[limits.NAME]``, for rules that belong to the device); when both give the
same name, both are checked. The names:

``min_session_interval_h``
    Hours from the end of the participant's previous session to the start of
    the next. A session that never closed (crashed, killed, still running)
    is taken to end at its start plus its requested duration.
``max_sessions_per_<period>``
    Sessions of the participant started within the period before now
    (any modality).
``max_<quantity>_per_<period>``
    Cumulative dose of the session's modality within the period:
    ``charge_C`` (tES), ``pulses`` and ``trains`` (rTMS), ``sonication_s`` and
    ``sonications`` (TUS), ``stim_time_s`` (any).

``<period>`` is ``day`` (24 h), ``week`` (7 days) or ``<N>d`` (N days), a
rolling window ending now — stricter than calendar days, and independent of
time zones. A session that never closed counts with the most it could have
delivered (its dose cap), never with nothing: the ledger does not fail open.

Before a session starts, :func:`evaluate` refuses it when a rule is already
used up (naming the rule, its source and the sessions that used it), and
otherwise returns the dose the session may still deliver under each dose
rule; the session's own per-session limit (e.g. ``max_charge_C``) is then
tightened to that remaining budget (a ``[safety]`` override), so no session
can push the cumulative dose past a rule.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "Rule",
    "StudyRefusal",
    "Verdict",
    "evaluate",
    "parse_rule_name",
    "rule_unit",
    "rules_for",
    "dose_caps",
    "QUANTITY_MODALITY",
    "RULE_HELP",
]

#: Dose quantities a rule may limit, and the modality each belongs to (None: any).
QUANTITY_MODALITY: dict[str, str | None] = {
    "sessions": None,
    "stim_time_s": None,
    "charge_C": "tes",
    "pulses": "rtms",
    "trains": "rtms",
    "sonication_s": "tus",
    "sonications": "tus",
}
_UNITS = {
    "sessions": "sessions",
    "stim_time_s": "s",
    "charge_C": "C",
    "pulses": "pulses",
    "trains": "trains",
    "sonication_s": "s",
    "sonications": "sonications",
}
#: The per-session limit that bounds each quantity in one session ([safety] key), per modality.
_SESSION_LIMIT: dict[tuple[str, str | None], str] = {
    ("charge_C", "tes"): "max_charge_C",
    ("pulses", "rtms"): "max_pulses_per_session",
    ("sonication_s", "tus"): "max_total_sonication_s",
    ("stim_time_s", None): "max_session_duration_s",
}
_RE_INTERVAL = re.compile(r"^min_session_interval_h$")
_RE_PER = re.compile(r"^max_(?P<q>[A-Za-z_]+?)_per_(?P<p>day|week|(?P<n>[1-9]\d{0,2})d)$")
RULE_HELP = (
    "min_session_interval_h, max_sessions_per_<period>, max_<quantity>_per_<period> with <quantity> one of "
    + ", ".join(q for q in QUANTITY_MODALITY if q != "sessions")
    + " and <period> day, week or <N>d"
)


@dataclass(frozen=True)
class RuleName:
    """A parsed rule name: ``kind`` ``interval`` or ``per``; quantity and period (s) for ``per``."""

    kind: str
    quantity: str | None = None
    period_s: float = 0.0
    period: str = ""


def parse_rule_name(name: str) -> RuleName | None:
    """Return what a rule name means, or None if it is not a rule name."""
    if _RE_INTERVAL.match(name):
        return RuleName("interval")
    m = _RE_PER.match(name)
    if m is None or m["q"] not in QUANTITY_MODALITY:
        return None
    days = 1 if m["p"] == "day" else 7 if m["p"] == "week" else int(m["n"])
    return RuleName("per", m["q"], days * 86400.0, m["p"])


def rule_unit(name: str) -> str:
    """Return the unit of a rule's value (``h`` for the interval)."""
    parsed = parse_rule_name(name)
    if parsed is None:
        return ""
    return "h" if parsed.kind == "interval" else _UNITS[parsed.quantity]


@dataclass(frozen=True)
class Rule:
    """One cross-session rule to check.

    Attributes
    ----------
    name : str
        The rule name (see the module docstring).
    value : float
        Its value, in :attr:`unit`.
    unit : str
        Unit of the value.
    source : str
        Where the number comes from.
    origin : str
        Where the rule is written (the study file, or the device profile).
    """

    name: str
    value: float
    unit: str
    source: str
    origin: str

    @property
    def parsed(self) -> RuleName:
        """Return the parsed name."""
        parsed = parse_rule_name(self.name)
        assert parsed is not None
        return parsed

    def describe(self) -> str:
        """Return ``name = value unit (source: ...; in ORIGIN)``."""
        return f"{self.name} = {self.value:g} {self.unit} (source: {self.source}; {self.origin})"


class StudyRefusal(RuntimeError):
    """A cross-session rule refuses the session; the message names the rule, its source and the sessions."""

    def __init__(self, rule: Rule, message: str, triggered_by: Sequence[int] = ()) -> None:
        self.rule = rule
        self.triggered_by = list(triggered_by)
        super().__init__(message)


def rules_for(study_rules: Mapping[str, object] | None, profile=None, study_origin: str = "study file") -> list[Rule]:
    """Return the rules to check: the study file's, then the device profile's cross-session limits.

    Parameters
    ----------
    study_rules : dict of str to Limit, optional
        ``Study.rules``.
    profile : DeviceProfile, optional
        Its ``[limits]`` whose names are rule names are rules too.
    study_origin : str
        How to name the study file in messages.
    """
    out = []
    for name, lim in (study_rules or {}).items():
        out.append(Rule(name, float(lim.value), lim.unit or rule_unit(name), lim.source, study_origin))
    if profile is not None:
        for name, lim in profile.limits.items():
            if parse_rule_name(name) is not None:
                out.append(
                    Rule(
                        name,
                        float(lim.value),
                        lim.unit or rule_unit(name),
                        lim.source,
                        f"device profile {profile.device.name}",
                    )
                )
    return out


def dose_caps(resolved, duration_s: float | None) -> dict[str, float]:
    """Return the most one session of this pipeline can deliver, per quantity (``inf`` when unbounded).

    From the effective envelope (profile limits tightened by ``[safety]``):
    tES charge by ``max_charge_C``, rTMS pulses by ``max_pulses_per_session``,
    TUS sonication time by ``max_total_sonication_s``; stimulation time by the
    session duration (requested, and ``max_session_duration_s``).
    """
    env = {k: float(v["value"]) for k, v in resolved.envelope().items()}
    modality = resolved.profile.device.modality
    longest = env.get("max_session_duration_s", math.inf)
    if duration_s is not None:
        longest = min(longest, float(duration_s))
    caps = {q: math.inf for q, m in QUANTITY_MODALITY.items() if q != "sessions" and m in (None, modality)}
    caps["stim_time_s"] = longest
    for (quantity, mod), key in _SESSION_LIMIT.items():
        if mod == modality and key in env:
            caps[quantity] = min(caps.get(quantity, math.inf), env[key])
    if modality == "tus":
        caps["sonication_s"] = min(caps.get("sonication_s", math.inf), longest)
    return caps


@dataclass(frozen=True)
class PastSession:
    """What the rules need of one earlier session (from the ledger)."""

    id: int
    label: str
    modality: str
    started_at: float
    end_at: float  # when it ended, or the latest it could have ended if it never closed
    closed: bool
    dose: Mapping[str, float]  # delivered, or its cap if it never closed


@dataclass
class Verdict:
    """The rules' answer for a session allowed to start.

    Attributes
    ----------
    caps : dict of str to float
        The most the session may deliver per quantity (its own limits,
        tightened to what the dose rules leave).
    overrides : dict of str to float
        ``[safety]`` keys to tighten for the session (``max_charge_C``, ...).
    notes : list of str
        What was tightened and why.
    """

    caps: dict[str, float]
    overrides: dict[str, float]
    notes: list[str]


def _when(t: float) -> str:
    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="minutes")


def _who(s: PastSession) -> str:
    state = "" if s.closed else ", never closed: counted in full"
    return f"#{s.id} ({s.label}, started {_when(s.started_at)}{state})"


def evaluate(
    rules: Sequence[Rule],
    past: Sequence[PastSession],
    now: float,
    modality: str,
    caps: Mapping[str, float],
) -> Verdict:
    """Check a new session against the rules; return its (tightened) caps or raise :class:`StudyRefusal`.

    Parameters
    ----------
    rules : sequence of Rule
        The rules to check.
    past : sequence of PastSession
        The participant's earlier sessions that count (started, finished).
    now : float
        Start time of the new session (Unix seconds).
    modality : str
        The new session's modality.
    caps : dict of str to float
        The most the new session can deliver per quantity (:func:`dose_caps`).
    """
    caps = dict(caps)
    overrides: dict[str, float] = {}
    notes: list[str] = []
    for rule in rules:
        p = rule.parsed
        if p.kind == "interval":
            gap_s = rule.value * 3600.0
            blocking = [s for s in past if s.started_at <= now + 1e-9 and now - s.end_at < gap_s]
            if blocking:
                last = max(blocking, key=lambda s: s.end_at)
                since_h = (now - last.end_at) / 3600.0
                when = "is still running or never closed" if last.end_at > now else f"ended {since_h:.3g} h ago"
                raise StudyRefusal(
                    rule,
                    f"refused by {rule.describe()}: session {_who(last)} {when}; "
                    f"the next session may start at {_when(last.end_at + gap_s)}",
                    [s.id for s in blocking],
                )
            continue
        q = p.quantity
        q_modality = QUANTITY_MODALITY[q]
        if q_modality is not None and q_modality != modality:
            continue  # a rule for another modality's dose
        window = [s for s in past if now - p.period_s < s.started_at <= now + 1e-9]
        if q == "sessions":
            if len(window) + 1 > rule.value:
                raise StudyRefusal(
                    rule,
                    f"refused by {rule.describe()}: {len(window)} session(s) in the last {p.period}: "
                    + ", ".join(_who(s) for s in window),
                    [s.id for s in window],
                )
            continue
        same = [s for s in window if q_modality is not None or s.modality == modality]
        used = sum(float(s.dose.get(q, 0.0)) for s in same)
        left = rule.value - used
        if left <= 0.0:
            raise StudyRefusal(
                rule,
                f"refused by {rule.describe()}: {used:.4g} {rule.unit} already delivered in the last {p.period} by "
                + ", ".join(f"{_who(s)}: {float(s.dose.get(q, 0.0)):.4g}" for s in same if s.dose.get(q)),
                [s.id for s in same if s.dose.get(q)],
            )
        if left < caps.get(q, math.inf):
            caps[q] = left
            key = next((k for (qq, m), k in _SESSION_LIMIT.items() if qq == q and m in (None, modality)), None)
            if key is not None:
                overrides[key] = min(overrides.get(key, math.inf), left)
                notes.append(
                    f"{rule.name}: {used:.4g} of {rule.value:g} {rule.unit} used in the last {p.period}; "
                    f"this session's {key} is tightened to {left:.4g}"
                )
            else:
                notes.append(
                    f"{rule.name}: {used:.4g} of {rule.value:g} {rule.unit} used in the last {p.period}; "
                    f"no per-session limit bounds {q}: the ledger counts what this session delivers"
                )
    return Verdict(caps, overrides, notes)
