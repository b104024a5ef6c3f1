"""The study file, ``study.toml``: where a study's sessions go, and its cross-session rules.

::

    [study]
    name = "alpha-tacs-pilot"
    root = "data"                 # relative to this file
    ledger_timeout_s = 5          # wait this long for a busy ledger, then refuse to start

    [rules.min_session_interval_h]
    value = 20
    source = "protocol v2, section 4.1: one session a day, at least 20 h apart"

    [rules.max_charge_C_per_week]
    value = 18
    source = "protocol v2, section 4.2: ..."

Rules are named like the limits of a device profile, each with a value and a
source (:mod:`closedloop.study.rules` lists the names); a device profile may
carry the same names under ``[limits]``. ``closedloop run`` uses the file
given with ``--study``, else a ``study.toml`` beside the pipeline file or in
the folder above it (the project folder of ``closedloop init``).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field, ValidationError, field_validator

from closedloop.config.base import StrictModel, error_lines
from closedloop.config.profile import Limit

__all__ = ["STUDY_FILE", "Study", "StudyError", "find_study", "load_study"]

#: The file name a study is found by (beside a pipeline, or in the current folder).
STUDY_FILE = "study.toml"
#: The ledger's file name inside a study root.
LEDGER_FILE = "ledger.sqlite"


class StudyError(ValueError):
    """A study file is missing or invalid; the message names the file and the key."""


class _StudyInfo(StrictModel):
    name: str = Field(min_length=1, description="the study's name")
    root: str = Field(min_length=1, description="folder of sub-*/ses-* session folders and the ledger")
    description: str = ""
    ledger_timeout_s: float = Field(5.0, gt=0, le=600, description="wait for a busy ledger, then refuse")


class _StudyFile(StrictModel):
    study: _StudyInfo
    rules: dict[str, Limit] = Field(default_factory=dict)

    @field_validator("rules")
    @classmethod
    def _known(cls, rules: dict[str, Limit]) -> dict[str, Limit]:
        from closedloop.study.rules import RULE_HELP, parse_rule_name

        bad = [name for name in rules if parse_rule_name(name) is None]
        if bad:
            raise ValueError(f"{', '.join(bad)}: not a rule name; allowed: {RULE_HELP}")
        negative = [name for name, lim in rules.items() if lim.value < 0]
        if negative:
            raise ValueError(f"{', '.join(negative)}: a rule's value must be >= 0")
        return rules


@dataclass(frozen=True)
class Study:
    """A loaded study file.

    Attributes
    ----------
    path : Path
        The study file.
    name : str
        The study's name.
    root : Path
        Folder of the session folders (``sub-<P>/ses-<S>/...``) and of the ledger.
    rules : dict of str to Limit
        The study file's cross-session rules (value, unit, source).
    ledger_timeout_s : float
        How long to wait for a ledger another process is writing.
    description : str
        Free text.
    """

    path: Path
    name: str
    root: Path
    rules: dict[str, Limit] = field(default_factory=dict)
    ledger_timeout_s: float = 5.0
    description: str = ""

    @property
    def ledger_path(self) -> Path:
        """Return the ledger file of the study root."""
        return self.root / LEDGER_FILE

    def session_folder(self, participant: str, session: str, stem: str) -> Path:
        """Return ``<root>/sub-<participant>/ses-<session>/<stem>`` (``stem``: time and pipeline)."""
        return self.root / f"sub-{participant}" / f"ses-{session}" / stem


def load_study(path: str | Path) -> Study:
    """Read and check a study file.

    Raises
    ------
    StudyError
        Naming the file and every problem (key and what is allowed).
    """
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StudyError(f"study file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise StudyError(f"study file {p}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise StudyError(f"study file {p}: not valid TOML ({e})") from None
    try:
        parsed = _StudyFile.model_validate(data)
    except ValidationError as e:
        raise StudyError(f"invalid study file {p}: " + "; ".join(error_lines(e, _StudyFile))) from None
    root = Path(parsed.study.root).expanduser()
    if not root.is_absolute():
        root = p.resolve().parent / root
    rules = {}
    from closedloop.study.rules import rule_unit

    for name, lim in parsed.rules.items():
        rules[name] = lim if lim.unit else lim.model_copy(update={"unit": rule_unit(name)})
    return Study(
        path=p,
        name=parsed.study.name,
        root=root,
        rules=rules,
        ledger_timeout_s=parsed.study.ledger_timeout_s,
        description=parsed.study.description,
    )


def find_study(pipeline_path: str | Path | None = None) -> Path | None:
    """Return the ``study.toml`` beside a pipeline file or in the folder above it (else in the current folder).

    Parameters
    ----------
    pipeline_path : str or Path, optional
        The pipeline file; None looks in the current folder only.
    """
    if pipeline_path is not None:
        folder = Path(pipeline_path).resolve().parent
        for cand in (folder / STUDY_FILE, folder.parent / STUDY_FILE):
            if cand.is_file():
                return cand
        return None
    cand = Path.cwd() / STUDY_FILE
    return cand if cand.is_file() else None
