"""Sources of EEG chunks: LSL inlets, the synthetic generator, file replay."""

from closedloop.sources.lsl import LSLSource, SourceError, resolve_one

__all__ = ["LSLSource", "SourceError", "resolve_one"]
