"""Studies: participants and sessions over days, a session ledger, cross-session rules, BIDS, longitudinal reports.

- :mod:`~closedloop.study.config` — the study file (``study.toml``): the study root and its rules.
- :mod:`~closedloop.study.rules` — cross-session safety rules (interval, sessions and dose per period).
- :mod:`~closedloop.study.ledger` — the SQLite session ledger of a study root.
- :mod:`~closedloop.study.bids` — BIDS export of recorded sessions (``closedloop bids``).
- :mod:`~closedloop.study.longitudinal` — a participant's sessions in one report.

Importing this package loads no numba, MNE or matplotlib (docs/study.md).
"""

from closedloop.study.config import STUDY_FILE, Study, StudyError, find_study, load_study
from closedloop.study.ledger import Admission, Ledger, LedgerEntry, LedgerError
from closedloop.study.rules import Rule, StudyRefusal, rules_for

__all__ = [
    "STUDY_FILE",
    "Study",
    "StudyError",
    "find_study",
    "load_study",
    "Admission",
    "Ledger",
    "LedgerEntry",
    "LedgerError",
    "Rule",
    "StudyRefusal",
    "rules_for",
]
