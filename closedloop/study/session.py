"""One live session inside a study: admitted by the rules before it starts, written to the ledger at its end.

The command line does (and a script may do the same)::

    run = StudyRun.admit(study, resolved, "01", None, duration_s=1200)  # StudyRefusal, LedgerError
    resolved = run.tighten(resolved)       # the dose rules' remaining budgets as [safety] limits
    try:
        summary = LiveSession(resolved, 1200, run.folder, identity=run.identity).run()
    except SourceError as e:               # nothing was armed: the session does not count
        run.abandon(f"did not start: {e}")
        raise
    run.finish(summary)

Nothing is armed before :meth:`StudyRun.admit` returns; the ledger row it
writes counts the session in full until :meth:`StudyRun.finish` replaces
the cap with what was delivered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from closedloop.study.config import Study
from closedloop.study.ledger import Admission, Ledger
from closedloop.study.rules import rules_for

__all__ = ["StudyRun"]

log = logging.getLogger(__name__)


@dataclass
class StudyRun:
    """A study session admitted by the ledger (see the module docstring).

    Attributes
    ----------
    study : Study
        The study.
    ledger : Ledger
        Its ledger.
    admission : Admission
        The ledger row and what the rules tightened.
    participant, session : str
        Labels.
    folder : Path
        The session folder (``<root>/sub-P/ses-S/<time>-<pipeline>`` unless given).
    """

    study: Study
    ledger: Ledger
    admission: Admission
    participant: str
    session: str
    folder: Path

    @classmethod
    def admit(
        cls,
        study: Study,
        resolved,
        participant: str,
        session: str | None,
        duration_s: float | None,
        folder: Path | None = None,
        now: Callable[[], float] | None = None,
    ) -> StudyRun:
        """Check the study's and the profile's cross-session rules and record the session as started.

        Parameters
        ----------
        session : str, optional
            Session label; by default the participant's next number.
        folder : Path, optional
            Session folder; by default under the study root.
        now : callable, optional
            Wall clock (Unix s) for the ledger.

        Raises
        ------
        StudyRefusal, LedgerError
        """
        ledger = Ledger(study.ledger_path, timeout_s=study.ledger_timeout_s, now=now)
        if session is None:
            session = ledger.next_session_label(participant)
        if folder is None:
            stem = f"{datetime.fromtimestamp(ledger.now()):%Y%m%d-%H%M%S}-{resolved.config.pipeline.name}"
            folder = study.session_folder(participant, session, stem)
        rules = rules_for(study.rules, resolved.profile, f"study file {study.path}")
        admission = ledger.admit(resolved, participant, session, duration_s, rules, folder)
        return cls(study, ledger, admission, participant, session, Path(folder))

    @property
    def identity(self) -> dict[str, str]:
        """Return the identity for the recording: participant, session, study."""
        return {"participant": self.participant, "session": self.session, "study": self.study.name}

    def tighten(self, resolved):
        """Return ``resolved`` with the dose rules' remaining budgets as ``[safety]`` limits.

        Each override is below the pipeline's effective limit (the rules only
        tighten), so the envelope stays within the device profile.
        """
        if not self.admission.overrides:
            return resolved
        safety = resolved.config.safety.model_copy(update=dict(self.admission.overrides))
        config = resolved.config.model_copy(update={"safety": safety})
        return resolved.model_copy(update={"config": config})

    def finish(self, summary: dict) -> None:
        """Write the ended session to the ledger: stop reason, dose, safety events, ratings, summary.

        Raises
        ------
        LedgerError
            If the ledger cannot be written (the session then stays counted in full).
        """
        from closedloop.study.ratings import read_ratings, summarize_ratings

        ratings: dict = {"n": 0}
        xdf = self.folder / "session.xdf"
        if xdf.is_file():
            try:
                ratings = summarize_ratings(read_ratings(xdf))
            except Exception as e:  # noqa: BLE001 - a damaged recording must not keep the dose out of the ledger
                log.warning("ratings of %s could not be read: %s", xdf, e)
                ratings = {"n": 0, "error": str(e)}
        self.ledger.finish(self.admission.entry_id, summary, ratings)

    def abandon(self, reason: str) -> None:
        """Mark the session as not started (its start failed before anything was armed)."""
        self.ledger.abandon(self.admission.entry_id, reason)
