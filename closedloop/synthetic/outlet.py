"""Publish a :class:`~closedloop.synthetic.eeg.SyntheticEEG` over LSL, paced like an amplifier.

A background thread pushes ``chunk_size`` samples whenever the last of them is
due by the LSL clock, stamping sample ``k`` (counted from the start) with
``start_time + k / sfreq``. Blinks go out on a separate marker stream, stamped
with the time of their onset sample. ``pylsl`` is imported only when a
publisher starts, after :func:`~closedloop.lslconfig.configure_lsl`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from closedloop.lslconfig import configure_lsl
from closedloop.synthetic.eeg import SyntheticEEG

__all__ = ["SynthPublisher", "run_synth"]

log = logging.getLogger(__name__)


class SynthPublisher:
    """Stream a synthetic EEG generator as an LSL outlet from a background thread.

    Parameters
    ----------
    generator : SyntheticEEG
        The generator; the publisher's thread is its only user once started.
    name : str
        LSL stream name of the EEG outlet; the marker stream is
        ``f"{name}-markers"``.
    source_id : str or None
        LSL source_id; default ``f"closedloop-synth-{name}"``. The marker
        stream's is ``f"{source_id}-markers"``.
    chunk_size : int
        Samples per push.
    stim_amplitude : callable or None
        Polled once per chunk; its value (mA) is passed to the generator's
        plant as ``stim_mA``. None: no stimulation.
    markers : bool
        Whether to open the marker stream with blink onsets.
    preroll_s : float
        Seconds of data stamped before :meth:`start`, pushed at once when the
        first inlet connects (waiting at most ``preroll_wait_s`` for one): the
        stream then looks like an amplifier that was already running when the
        session started, and a session's first feature window is there as soon
        as its loop runs. 0 (the default): the first sample is stamped at the
        start.
    preroll_wait_s : float
        How long the thread waits for a first inlet before it pushes the
        pre-roll anyway.

    Attributes
    ----------
    start_time : float or None
        LSL timestamp of the first pushed sample (with a pre-roll, set by the
        thread just before it pushes).
    first_sample : int
        Generator sample index of the first pushed sample.
    samples_pushed : int
        Samples pushed so far.
    error : BaseException or None
        What stopped the thread, if it failed.
    """

    def __init__(
        self,
        generator: SyntheticEEG,
        name: str = "closedloop-synth",
        source_id: str | None = None,
        chunk_size: int = 10,
        stim_amplitude: Callable[[], float] | None = None,
        markers: bool = True,
        preroll_s: float = 0.0,
        preroll_wait_s: float = 5.0,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, not {chunk_size}")
        if not preroll_s >= 0.0:
            raise ValueError(f"preroll_s must be >= 0, not {preroll_s}")
        self.preroll_s = float(preroll_s)
        self.preroll_wait_s = float(preroll_wait_s)
        self.generator = generator
        self.name = name
        self.source_id = source_id if source_id is not None else f"closedloop-synth-{name}"
        self.marker_name = f"{name}-markers"
        self.marker_source_id = f"{self.source_id}-markers"
        self.chunk_size = int(chunk_size)
        self.stim_amplitude = stim_amplitude
        self.markers = markers
        self.start_time: float | None = None
        self.first_sample = 0
        self.samples_pushed = 0
        self.error: BaseException | None = None
        self._outlet = None
        self._marker_outlet = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def info(self) -> dict[str, str]:
        """Names and source_ids of the EEG and marker streams."""
        return {
            "name": self.name,
            "source_id": self.source_id,
            "marker_name": self.marker_name,
            "marker_source_id": self.marker_source_id,
        }

    @property
    def running(self) -> bool:
        """Whether the publishing thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def timestamp_of(self, sample_index: int) -> float:
        """LSL timestamp of a generator sample index (valid once started)."""
        if self.start_time is None:
            raise RuntimeError("publisher not started")
        return self.start_time + (sample_index - self.first_sample) / self.generator.sfreq

    # ----------------------------------------------------------------- outlets
    def _eeg_info(self):
        import pylsl

        gen = self.generator
        info = pylsl.StreamInfo(self.name, "EEG", gen.n_channels, gen.sfreq, pylsl.cf_float32, self.source_id)
        desc = info.desc()
        desc.append_child_value("manufacturer", "closedloop")
        channels = desc.append_child("channels")
        for label in gen.ch_names:
            ch = channels.append_child("channel")
            ch.append_child_value("label", label)
            ch.append_child_value("unit", "microvolts")
            ch.append_child_value("type", "EEG")
        meta = desc.append_child("closedloop")
        meta.append_child_value("generator", type(gen).__name__)
        for key, value in gen.params.items():
            if isinstance(value, dict):
                sub = meta.append_child(key)
                for k, v in value.items():
                    sub.append_child_value(k, repr(v))
            else:
                meta.append_child_value(key, "none" if value is None else repr(value))
        return info

    def _marker_info(self):
        import pylsl

        info = pylsl.StreamInfo(
            self.marker_name, "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, self.marker_source_id
        )
        info.desc().append_child_value("manufacturer", "closedloop")
        return info

    # --------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Create the outlets and start pushing from a daemon thread."""
        if self._thread is not None:
            raise RuntimeError("a SynthPublisher can be started only once")
        configure_lsl()
        import pylsl

        self._outlet = pylsl.StreamOutlet(self._eeg_info(), chunk_size=self.chunk_size)
        if self.markers:
            self._marker_outlet = pylsl.StreamOutlet(self._marker_info())
        self.first_sample = self.generator.samples_generated
        if self.preroll_s == 0:
            self.generator.warm_up()  # compile before the clock starts
            self.start_time = pylsl.local_clock()
        # with a pre-roll the thread loads the kernels while an inlet finds the stream, then starts the clock
        self._thread = threading.Thread(target=self._run, name=f"synth-{self.name}", daemon=True)
        self._thread.start()

    def halt(self, timeout: float = 2.0) -> None:
        """Stop pushing (end the thread); the outlets stay until :meth:`stop`.

        A session halts its stream before it closes the inlets that read it:
        liblsl's outlet queues take one producer, and an inlet that
        disconnects makes liblsl's own thread touch the queue the pushing
        thread fills.
        """
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("synth publisher thread %s did not stop within %.1f s", self.name, timeout)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread and destroy the outlets, so inlets see the stream lost.

        The thread holds its own references to the outlets: if it does not
        end within ``timeout`` (a kernel still compiling), the outlets live on
        until it does and are destroyed by it, never while it uses them.
        """
        self.halt(timeout)
        # dropping the last reference destroys the outlet (pylsl's __del__)
        self._outlet = None
        self._marker_outlet = None

    def __enter__(self) -> SynthPublisher:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        import pylsl

        gen = self.generator
        period = 1.0 / gen.sfreq
        buf = np.empty((self.chunk_size, gen.n_channels), dtype=np.float32)
        outlet, marker_outlet = self._outlet, self._marker_outlet  # stop() drops its references, not these
        try:
            if self.preroll_s > 0:  # an inlet only receives what is pushed after it connected
                gen.warm_up()
                waited_until = time.monotonic() + self.preroll_wait_s
                while not self._stop.is_set() and time.monotonic() < waited_until:
                    if outlet.wait_for_consumers(0.1):
                        break
                self.start_time = pylsl.local_clock() - self.preroll_s
            while not self._stop.is_set():
                last = self.samples_pushed + self.chunk_size - 1
                last_time = self.start_time + last * period
                delay = last_time - pylsl.local_clock()
                if delay > 0 and self._stop.wait(delay):
                    break
                stim = float(self.stim_amplitude()) if self.stim_amplitude is not None else 0.0
                gen.generate(self.chunk_size, stim, out=buf)
                # a float timestamp stamps the LAST sample; liblsl derives the earlier ones
                outlet.push_chunk(buf, last_time)
                self.samples_pushed += self.chunk_size
                events = gen.pop_events()
                if marker_outlet is not None:
                    for index, label in events:
                        marker_outlet.push_sample([label], self.timestamp_of(index))
        except BaseException as exc:  # noqa: BLE001 - reported through .error and the log
            self.error = exc
            log.exception("synth publisher %s failed", self.name)


def run_synth(
    name: str = "closedloop-synth",
    n_channels: int = 32,
    sfreq: float = 500.0,
    seed: int = 0,
    chunk_size: int = 10,
    duration_s: float | None = None,
    *,
    source_id: str | None = None,
    stim_mA: float = 0.0,
    markers: bool = True,
    on_start: Callable[[SynthPublisher], None] | None = None,
    **generator_kwargs,
) -> None:
    """Publish synthetic EEG until ``duration_s`` has passed or Ctrl-C.

    Parameters
    ----------
    name, source_id, chunk_size, markers
        See :class:`SynthPublisher`.
    n_channels, sfreq, seed, **generator_kwargs
        See :class:`~closedloop.synthetic.eeg.SyntheticEEG`.
    duration_s : float or None
        How long to stream; None: until interrupted.
    stim_mA : float
        Constant stimulation amplitude fed to the plant.
    on_start : callable or None
        Called with the running publisher (e.g. to print its stream names).
    """
    configure_lsl()
    generator = SyntheticEEG(n_channels=n_channels, sfreq=sfreq, seed=seed, **generator_kwargs)
    publisher = SynthPublisher(
        generator,
        name=name,
        source_id=source_id,
        chunk_size=chunk_size,
        stim_amplitude=(lambda: stim_mA) if stim_mA else None,
        markers=markers,
    )
    publisher.start()
    try:
        if on_start is not None:
            on_start(publisher)
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while publisher.running:
            remaining = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if remaining <= 0:
                break
            time.sleep(remaining)
    except KeyboardInterrupt:
        pass
    finally:
        publisher.stop()
    if publisher.error is not None:
        raise RuntimeError(f"synth publisher {name!r} failed") from publisher.error
