"""The algorithmic pipeline: preprocess → features → controller → safety, no I/O.

The same object runs live (:mod:`closedloop.runtime`) and offline (replay),
so what a researcher tunes offline is what runs live.
"""

from __future__ import annotations

from dataclasses import dataclass

from closedloop.config import ResolvedPipeline
from closedloop.control import build_controller
from closedloop.features import FeatureExtractor
from closedloop.preprocess import Preprocessor
from closedloop.safety import SafetyEvent, SafetyLayer, TESEnvelope
from closedloop.types import Chunk, Command, Frame


@dataclass(slots=True)
class Step:
    """What happened on one frame."""

    frame: Frame
    desired: Command
    allowed: Command


class Pipeline:
    """Build every stage a resolved pipeline describes, for a stream with ``ch_names``.

    Parameters
    ----------
    resolved : ResolvedPipeline
        The validated pipeline and its device profile.
    ch_names : list of str
        Channels of the incoming stream, in order.
    on_event : callable, optional
        Receives every safety event.
    """

    def __init__(self, resolved: ResolvedPipeline, ch_names: list[str], on_event=None) -> None:
        cfg = resolved.config
        f = cfg.features
        pp = cfg.preprocess
        self.resolved = resolved
        self.preprocess = Preprocessor(
            ch_names, f.channels, cfg.sfreq, combine=f.combine, reference=pp.reference,
            highpass_hz=pp.highpass_hz, notch_hz=pp.notch_hz, filter_order=pp.filter_order,
        )
        self.features = FeatureExtractor(
            cfg.sfreq, self.preprocess.out_names, f.bands, f.ratios, f.window_samples, f.hop_samples,
            log10=f.log10, smoothing_s=f.smoothing_s, per_channel=f.combine == "each",
        )
        self.controller = build_controller(cfg.controller)
        self.safety = SafetyLayer(TESEnvelope.from_envelope(resolved.envelope()), on_event=on_event)
        self.samples_in = 0

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.features.names

    def process(self, chunk: Chunk) -> list[Step]:
        """Run one chunk through every stage; one :class:`Step` per completed frame."""
        self.samples_in += chunk.n_samples
        frames = self.features.step(self.preprocess.step(chunk))
        steps = []
        for frame in frames:
            desired = self.controller.update(frame)
            allowed = self.safety.step(desired, frame.time)
            steps.append(Step(frame, desired, allowed))
        return steps

    def warmup(self) -> None:
        """Compile every numba kernel before the session clock starts."""
        self.preprocess.warmup()
        self.features.warmup()
