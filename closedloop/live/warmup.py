"""Start-up work done while the EEG stream is being found.

Resolving an LSL stream, fetching its header and the first
``time_correction`` mostly wait on the network inside liblsl, which releases
the GIL. :class:`Warmup` uses that wait: in a background thread it imports
the processing stack (scipy.signal, numba, the stages, the session driver
and the recording — :mod:`closedloop.live.runtime` does not import them
before the resolve starts) and loads every numba kernel the pipeline will
run from the on-disk cache (compiling it only when the cache is cold). The
session waits for that (:meth:`Warmup.join`) before the pipeline is built.
The same thread then goes on to import the report's plotting stack, which
the session does not wait for: it overlaps the recording's start and the
first feature window's data, and is joined (:meth:`Warmup.join_report`)
only before the report is written, at the end.

The kernels are loaded on a throwaway pipeline built for the channels the
pipeline file names (the stream is not known yet); numba specialises on
argument types, not on channel counts, so the real pipeline's warm-up then
finds them in memory. A guess that does not fit (e.g. an LSL source whose
channels the file does not list) is skipped quietly: the real warm-up loads
what is missing.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


def guess_channels(resolved) -> list[str]:
    """Return channel names a stream for this pipeline could carry (the file's own, or those it names)."""
    cfg = resolved.config
    names = getattr(cfg.source, "ch_names", None)
    if names:
        return list(names)
    from closedloop.channels import named_channels

    return list(dict.fromkeys(ch for chans in named_channels(cfg.features, cfg.preprocess).values() for ch in chans))


class Warmup:
    """Import the processing stack and load the pipeline's kernels in a background thread.

    Parameters
    ----------
    resolved : ResolvedPipeline
        The pipeline that will run.
    report : bool
        Then also import and warm the report's plotting stack.

    Attributes
    ----------
    error, report_error : BaseException or None
        What stopped the kernels' or the report's warm-up (the session's own
        warm-up, or the report writer, repeats it and reports it).
    """

    def __init__(self, resolved, report: bool = False) -> None:
        self.resolved = resolved
        self.report = report
        self.error: BaseException | None = None
        self.report_error: BaseException | None = None
        self._kernels_done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="closedloop-warmup", daemon=True)

    def start(self) -> Warmup:
        """Start the background work; return self."""
        self._thread.start()
        return self

    def join(self) -> None:
        """Wait until the processing stack is imported and the kernels are loaded (not the report's stack)."""
        self._kernels_done.wait()

    def join_report(self, timeout: float | None = None) -> bool:
        """Wait until the report's plotting stack is ready too; return whether it is."""
        if self._thread.ident is None:  # never started
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            self._kernels()
        finally:
            self._kernels_done.set()
        if self.report:
            try:
                from closedloop.offline import report

                report.prepare()
            except BaseException as e:  # noqa: BLE001 - the report writer repeats it and reports it
                self.report_error = e
                log.debug("background warm-up of the report failed: %s", e)

    def _kernels(self) -> None:
        try:
            import closedloop.recording  # noqa: F401 - what the session imports once the stream is open
            import closedloop.session.driver  # noqa: F401
            from closedloop.pipeline import Pipeline
            from closedloop.session.telemetry import RunningStats

            names = guess_channels(self.resolved)
            if names:
                try:
                    Pipeline(self.resolved, names).warmup()
                except Exception as e:  # noqa: BLE001 - a guess that does not fit: the real warm-up does it
                    log.debug("warm-up on the guessed channels skipped: %s", e)
            RunningStats(1).warmup()
        except BaseException as e:  # noqa: BLE001 - reported by the session's own warm-up, which repeats it
            self.error = e
            log.debug("background warm-up failed: %s", e)
