"""Live EEG sources: the :class:`Source` contract and its LSL implementation."""

from closedloop.sources.base import Source
from closedloop.sources.lsl import LSLSource, SourceError, resolve_one

__all__ = ["LSLSource", "Source", "SourceError", "resolve_one"]
