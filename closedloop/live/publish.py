"""Session state on LSL: features, controller state, applied commands, events and session markers.

While a live session runs (``[output] publish = true``, the default), four
LSL outlets carry what the session computes, so LabRecorder records it next
to the EEG and any LSL viewer (mne-lsl's, say) plots it:

========================= ========== =====================================================================
stream name               type       one sample per ...
========================= ========== =====================================================================
``closedloop-features``   Features   ... frame: one channel per feature, then ``flags`` and ``frame_index``
``closedloop-controller`` Controller ... frame: the controller's state (``display_state`` when blinded)
``closedloop-applied``    Commands   ... command the adapter issued: ``amplitude_mA``, ``frequency_Hz``,
                                     ``on``, ``frame_time``, ``latency_s``, ``fire``, ``abort``
``closedloop-events``     Markers    ... safety event or session marker, as JSON text
                                     (``{"kind": ..., "reason": ..., ...}``)
========================= ========== =====================================================================

The features and controller streams are stamped with the frame time and the
applied commands with their issue time, exactly as in ``session.xdf`` (whose
streams of the same names hold the same values; the applied stream adds
``fire`` and ``abort``). Every header has the channel labels, units and types
under ``desc/channels`` and ``desc/closedloop`` (role, session id, version,
identity), and every ``source_id`` is ``closedloop-<session id>-<role>``
with the session id of ``session.xdf``, so two sessions never mix.

A blinded session (the controller hides the arm) publishes no applied
commands, the controller's ``display_state`` only, and events without
amplitudes, of the kinds that do not reveal the arm (see
:data:`BLINDED_EVENT_KINDS`); ``session.xdf`` keeps everything.

The loop pushes directly, once a chunk's commands were all issued (the
runtime sets applied commands aside until then): a push copies one sample
into liblsl's per-consumer queues (lock-free, dropping the oldest sample
when a consumer does not keep up) and returns; liblsl's own threads send it.
It never waits for a consumer or the network. A frame of the shipped
pipelines costs the loop about 11 µs; handing samples to a pushing thread
instead cost the loop more (its wake-ups and the interpreter lock: 30–50 µs
per chunk, milliseconds at the 99th percentile).
``benchmarks/bench_latency.py --publish-compare`` times it and compares the
loop latency with publishing on and off (docs/dashboard.md).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np

from closedloop.lslconfig import configure_lsl

__all__ = ["SessionPublisher", "BLINDED_EVENT_KINDS", "feature_unit"]

log = logging.getLogger(__name__)

FEATURES = "closedloop-features"
CONTROLLER = "closedloop-controller"
APPLIED = "closedloop-applied"
EVENTS = "closedloop-events"

#: Channels of the published applied-commands stream (the first five are those of session.xdf's).
APPLIED_CHANNELS = ("amplitude_mA", "frequency_Hz", "on", "frame_time", "latency_s", "fire", "abort")
_APPLIED_UNITS = ("mA", "Hz", "", "s", "s", "", "")

#: Event kinds a blinded session publishes and shows (none of them tells an active arm from sham).
BLINDED_EVENT_KINDS = frozenset({"session", "operator", "watchdog", "emergency", "gap", "clock", "dose", "stop"})


def feature_unit(log10: bool) -> str:
    """Return the unit of the feature channels (the same as ``session.xdf``'s features stream)."""
    return "log10(uV^2)" if log10 else "uV^2"


class SessionPublisher:
    """Publish a live session's frames, applied commands and events on LSL.

    Parameters
    ----------
    session_id : str
        The recording's session id (``SessionRecording.session_id``): part of every source_id.
    feature_names : sequence of str
        Feature names in frame order.
    feature_unit : str
        Unit of the feature channels.
    state_names : sequence of str
        Keys of the controller state published per frame.
    frame_rate : float
        Nominal frame rate (Hz): sampling rate over hop.
    pipeline_name : str
        Written to every header.
    identity : dict, optional
        Participant and session labels, written to every header.
    blinded : bool
        Publish nothing that reveals the arm (see the module docstring).

    Attributes
    ----------
    source_ids : dict of str to str
        The ``source_id`` of each published stream, by name.
    pushed, failed : int
        Samples pushed to the outlets; pushes that raised (logged once, never raised).

    Notes
    -----
    Every method may be called from any thread (liblsl outlets are thread-safe).
    """

    def __init__(
        self,
        session_id: str,
        feature_names: Sequence[str],
        feature_unit: str,
        state_names: Sequence[str],
        frame_rate: float,
        pipeline_name: str,
        identity: Mapping[str, str] | None = None,
        blinded: bool = False,
    ) -> None:
        self.session_id = session_id
        self.feature_names = tuple(feature_names)
        self.state_names = tuple(state_names)
        self.blinded = bool(blinded)
        self.pushed = 0
        self.failed = 0
        self._outlets: dict[str, object] = {}
        self._meta = {
            "session_id": session_id,
            "pipeline": pipeline_name,
            **({"identity": dict(identity)} if identity else {}),
        }
        self._frame_rate = float(frame_rate)
        self._feature_unit = feature_unit
        self._nf = len(self.feature_names)
        self._ns = max(len(self.state_names), 1)
        self._feat_row = np.empty((1, self._nf + 2))  # one wide frame, written in place
        self.source_ids = {
            name: f"closedloop-{session_id}-{name[len('closedloop-') :]}"
            for name in (FEATURES, CONTROLLER, EVENTS, *(() if self.blinded else (APPLIED,)))
        }

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> SessionPublisher:
        """Create the outlets."""
        configure_lsl()
        import pylsl

        feats = [(n, self._feature_unit, "feature") for n in self.feature_names]
        feats += [("flags", "Quality", "flags"), ("frame_index", "", "index")]
        state = [(n, "", "state") for n in self.state_names] or [("none", "", "state")]
        specs = {
            FEATURES: ("Features", feats, self._frame_rate, pylsl.cf_double64, "features"),
            CONTROLLER: ("Controller", state, self._frame_rate, pylsl.cf_double64, "controller"),
            APPLIED: (
                "Commands",
                [(n, u, "command") for n, u in zip(APPLIED_CHANNELS, _APPLIED_UNITS)],
                pylsl.IRREGULAR_RATE,
                pylsl.cf_double64,
                "applied",
            ),
            EVENTS: ("Markers", [("event", "json", "event")], pylsl.IRREGULAR_RATE, pylsl.cf_string, "events"),
        }
        for name, source_id in self.source_ids.items():
            type_, channels, rate, fmt, role = specs[name]
            info = pylsl.StreamInfo(name, type_, len(channels), rate, fmt, source_id)
            _describe(info, channels, {"role": role, **self._meta})
            self._outlets[name] = pylsl.StreamOutlet(info, chunk_size=0, max_buffered=360)
        return self

    def close(self) -> None:
        """Close the outlets (pylsl closes an outlet when it is garbage-collected)."""
        self._outlets.clear()

    # -- the loop's calls (cheap; never block) ------------------------------------------------
    def _push(self, name: str, data, times) -> None:
        outlet = self._outlets.get(name)
        if outlet is None:
            return
        try:
            if isinstance(data, np.ndarray):  # samples × channels
                outlet.push_chunk(data, times[0] if len(times) == 1 else list(times))
            else:  # one sample as a list (or tuple)
                outlet.push_sample(data[0], times[0])
            self.pushed += len(times)
        except Exception as err:  # noqa: BLE001 - a failed push must not end the session
            self.failed += 1
            if self.failed == 1:
                log.warning("publishing %s failed: %s: %s", name, type(err).__name__, err)

    def on_steps(self, steps: Sequence, shown_state: Mapping[str, float] | None = None) -> None:
        """Publish the frames of one chunk: features (with flags and index) and controller state.

        ``shown_state`` replaces the per-frame state in a blinded session
        (the controller's ``display_state`` after the chunk).
        """
        n = len(steps)
        if n == 0:
            return
        names = self.state_names
        nf = self._nf
        if n == 1:  # the usual case
            frame = steps[0].frame
            st = (shown_state if shown_state is not None else steps[0].state) or {}
            if nf <= 30:  # as a list (~6 µs a push); wider, numpy's path (no conversion per value)
                self._push(FEATURES, ([*frame.values.tolist(), int(frame.flags), frame.index],), (frame.time,))
            else:
                row = self._feat_row
                row[0, :nf] = frame.values
                row[0, nf] = int(frame.flags)
                row[0, nf + 1] = frame.index
                self._push(FEATURES, row, (frame.time,))
            self._push(CONTROLLER, ([st.get(k, math.nan) for k in names] or [math.nan],), (frame.time,))
            return
        feats = np.empty((n, nf + 2))
        state = np.full((n, self._ns), math.nan)
        times = np.empty(n)
        for i, step in enumerate(steps):
            frame = step.frame
            times[i] = frame.time
            feats[i, :nf] = frame.values
            feats[i, nf] = int(frame.flags)
            feats[i, nf + 1] = frame.index
            st = shown_state if shown_state is not None else step.state
            if st:
                for j, key in enumerate(names):
                    state[i, j] = st.get(key, math.nan)
        self._push(FEATURES, feats, times)
        self._push(CONTROLLER, state, times)

    def applied_row(self, command, latency_s: float) -> tuple | None:
        """Return the published sample of an applied command (None in a blinded session: nothing is published)."""
        if self.blinded:
            return None
        return (
            command.amplitude_mA,
            command.frequency_Hz,
            float(command.on),
            command.time,
            latency_s,
            float(command.fire),
            float(command.abort),
        )

    def push_applied(self, row: tuple, issue_time: float) -> None:
        """Publish an applied command's sample (:meth:`applied_row`), stamped with its issue time."""
        self._push(APPLIED, (row,), (issue_time,))

    def on_applied(self, command, issue_time: float, latency_s: float) -> None:
        """Publish a command the adapter issued at ``issue_time`` (nothing in a blinded session)."""
        row = self.applied_row(command, latency_s)
        if row is not None:
            self.push_applied(row, issue_time)

    def on_event(self, event) -> None:
        """Publish a :class:`~closedloop.safety.SafetyEvent` (any thread)."""
        doc = {"kind": event.kind, "reason": event.reason}
        if self.blinded:
            if event.kind not in BLINDED_EVENT_KINDS:
                return
        else:
            doc.update(desired_mA=event.desired_mA, applied_mA=event.applied_mA)
        self._push(EVENTS, [[json.dumps(doc)]], (event.time,))

    def marker(self, time: float, event: str, **fields: object) -> None:
        """Publish a session marker (``start``, ``stop``, ``end``, ...) with its fields, at ``time`` (any thread)."""
        doc = {"kind": "session", "event": event, **fields}
        self._push(EVENTS, [[json.dumps(doc, default=str)]], (time,))


def _describe(info, channels: Sequence[tuple[str, str, str]], meta: Mapping[str, object]) -> None:
    """Write ``desc/channels`` (label, unit, type) and ``desc/closedloop`` into an LSL stream info."""
    from closedloop import __version__

    desc = info.desc()
    chans = desc.append_child("channels")
    for label, unit, ch_type in channels:
        ch = chans.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", unit)
        ch.append_child_value("type", ch_type)
    node = desc.append_child("closedloop")
    node.append_child_value("version", __version__)
    for key, value in meta.items():
        if isinstance(value, Mapping):
            child = node.append_child(key)
            for k, v in value.items():
                child.append_child_value(str(k), str(v))
        else:
            node.append_child_value(key, str(value))
