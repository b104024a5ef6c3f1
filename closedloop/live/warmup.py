"""Start-up work done while the EEG stream is being found.

Resolving an LSL stream, fetching its header and the first
``time_correction`` mostly wait on the network inside liblsl, which releases
the GIL. :class:`Warmup` uses that wait: in a background thread it imports
the processing stack (scipy.signal, numba, the stages, the session driver
and the recording — :mod:`closedloop.live.runtime` does not import them
before the resolve starts) and loads every numba kernel the pipeline will
run from the on-disk cache (compiling it only when the cache is cold). The
session waits for that (:meth:`Warmup.join`) before the pipeline is built.

Nothing is imported in the background once the loop may run: an import
holds the GIL in long stretches, and the loop needs it every chunk. (The
report's plotting stack was imported here once, overlapping the first
feature window; with the first frame at once it overlapped the loop, and on
a busy machine with a cold cache stalled it past the watchdog's 0.3 s.) The
report writer imports it after the loop, with progress shown.

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

    Attributes
    ----------
    error : BaseException or None
        What stopped the warm-up (the session's own warm-up repeats it and reports it).
    """

    def __init__(self, resolved) -> None:
        self.resolved = resolved
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._kernels, name="closedloop-warmup", daemon=True)

    def start(self) -> Warmup:
        """Start the background work; return self."""
        self._thread.start()
        return self

    def join(self) -> None:
        """Wait until the processing stack is imported and the kernels are loaded (the thread's whole work)."""
        self._thread.join()

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
