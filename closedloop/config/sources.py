"""``[source]``: where the EEG comes from — built-in synthetic EEG, an LSL stream, or a file.

One model per ``kind``; a pipeline with ``kind = "file"`` serves replay and
offline feature extraction, and switching ``kind`` to ``"lsl"`` (``--set
source.kind=lsl``) makes the same pipeline run live.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from closedloop.config.base import StrictModel
from closedloop.units import microvolts_per

_NAMES_1020 = ("Fp1 Fp2 F7 F3 Fz F4 F8 T7 C3 Cz C4 T8 P7 P3 Pz P4 P8 O1 O2").split()
_NAMES_1010_EXTRA = (
    "AF3 AF4 FC1 FC2 FC5 FC6 CP1 CP2 CP5 CP6 PO3 PO4 FCz CPz POz Oz F1 F2 C1 C2 P1 P2 "
    "AF7 AF8 F5 F6 FC3 FC4 FT7 FT8 C5 C6 CP3 CP4 TP7 TP8 P5 P6 PO7 PO8 Fpz AFz P9 P10 Iz"
).split()
_STANDARD_NAMES = _NAMES_1020 + _NAMES_1010_EXTRA


def standard_channel_names(n: int) -> list[str]:
    """Return ``n`` distinct EEG channel names.

    The 19 sites of the 10-20 system come first, then 10-10 sites up to 64
    names (all valid in MNE's ``standard_1005`` montage); beyond 64 the names
    are ``E65``, ``E66``, ...

    Parameters
    ----------
    n : int
        Number of names.

    Returns
    -------
    list of str
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, not {n}")
    names = _STANDARD_NAMES[:n]
    names += [f"E{i}" for i in range(len(_STANDARD_NAMES) + 1, n + 1)]
    return names


class SyntheticSourceConfig(StrictModel):
    """Built-in synthetic EEG, published over LSL on this machine and read back."""

    kind: Literal["synthetic"]
    n_channels: int = Field(32, ge=1, le=512)
    sfreq: float = Field(500.0, gt=0, le=20000)
    seed: int = 0
    chunk_size: int = Field(10, ge=1, le=10000, description="samples per pushed chunk")
    alpha_uV: float = Field(10.0, ge=0)
    theta_uV: float = Field(4.0, ge=0)
    plant_gain_per_mA: float = Field(0.8, ge=0, description="relative alpha rise per mA of stimulation")
    plant_tau_s: float = Field(2.0, gt=0)
    stall_timeout_s: float = Field(
        5.0,
        gt=0,
        description="no sample for this long ends the session ('source stalled'); the watchdog has already "
        "ramped stimulation down after watchdog_timeout_s",
    )
    clock_tolerance_s: float = Field(
        1.0,
        gt=0,
        description="largest jump between chunks and largest distance of the newest sample from the local "
        "clock (after the clock offset) before the source's timestamps are flagged",
    )
    clock_timeout_s: float = Field(
        2.0,
        gt=0,
        description="timestamps flagged for longer than this: the source is declared bad, stimulation ramps "
        "down and the session ends",
    )

    @property
    def ch_names(self) -> list[str]:
        """Return the synthetic montage's channel names."""
        return standard_channel_names(self.n_channels)


class LSLSourceConfig(StrictModel):
    """An EEG stream on the lab network, resolved by name/type/source_id."""

    kind: Literal["lsl"]
    name: str | None = None
    type: str | None = "EEG"
    source_id: str | None = None
    sfreq: float = Field(gt=0, le=20000, description="nominal rate the stream must have")
    channels: list[str] | None = Field(None, description="labels the stream must carry, in order")
    n_channels: int | None = Field(None, ge=1)
    resolve_timeout_s: float = Field(
        5.0,
        gt=0,
        description="how long to look for the stream, then how long each of its answers may take when it is opened "
        "(header, data connection, first clock offset)",
    )
    stall_timeout_s: float = Field(
        5.0,
        gt=0,
        description="no sample for this long ends the session ('source stalled'); the watchdog has already "
        "ramped stimulation down after watchdog_timeout_s",
    )
    clock_tolerance_s: float = Field(
        1.0,
        gt=0,
        description="largest jump between chunks and largest distance of the newest sample from the local "
        "clock (after the clock offset) before the source's timestamps are flagged",
    )
    clock_timeout_s: float = Field(
        2.0,
        gt=0,
        description="timestamps flagged for longer than this: the source is declared bad, stimulation ramps "
        "down and the session ends",
    )
    scope: Literal["machine", "lab"] = Field(
        "machine", description="where to discover the stream: 'machine' (this computer) or 'lab' (the network)"
    )
    units: str | None = Field(
        None, description="unit of the stream's EEG values (V, mV, µV, nV), replacing what its header declares"
    )
    poll: Literal["wait", "busy"] = Field(
        "wait",
        description="how the loop waits for samples: 'wait' sleeps inside liblsl until they arrive; 'busy' asks "
        "liblsl again and again without sleeping, and steps a twin of the pipeline (which never reaches the "
        "device) just before each chunk is due so that its code is warm — lower and steadier latency, but it "
        "keeps one CPU core at 100 % for the whole session and holds the pipeline's state twice",
    )

    @field_validator("units")
    @classmethod
    def _units(cls, v: str | None) -> str | None:
        if v is not None and microvolts_per(v) is None:
            raise ValueError("an empty unit; leave units out to use the stream's")
        return v

    @model_validator(mode="after")
    def _identified(self) -> LSLSourceConfig:
        if not (self.name or self.source_id or self.type):
            raise ValueError("give at least one of `name`, `type`, `source_id`")
        if self.channels is not None and self.n_channels is not None and len(self.channels) != self.n_channels:
            raise ValueError(f"channels: lists {len(self.channels)} labels but `n_channels` is {self.n_channels}")
        return self

    @property
    def ch_names(self) -> list[str] | None:
        """Return the labels the stream must carry (``None``: not known before it is found)."""
        return self.channels


class FileSourceConfig(StrictModel):
    """A recording file (XDF or anything MNE reads), replayed through the pipeline.

    ``path`` may be left out and given on the command line (``closedloop
    replay FILE``); a relative path is taken from the pipeline file's folder.
    """

    kind: Literal["file"]
    path: str | None = Field(None, description="the recording; relative paths start at the pipeline's folder")
    encoding: str | None = Field(None, description="text encoding of EDF+ annotations, e.g. 'latin1'")
    sfreq: float = Field(gt=0, le=20000, description="rate the file must have (checked when it is opened)")
    channels: list[str] | None = Field(None, description="channels to feed, in order (default: every EEG channel)")
    name: str | None = Field(None, description="XDF: name of the EEG stream (default: the EEG stream)")
    type: str | None = Field(None, description="XDF: type of the EEG stream")
    source_id: str | None = Field(None, description="XDF: source_id of the EEG stream")

    @property
    def ch_names(self) -> list[str] | None:
        """Return the channels the pipeline feeds (``None``: known when the file is opened)."""
        return self.channels


#: ``[source]`` section: one model per ``kind``.
SourceConfig = Annotated[SyntheticSourceConfig | LSLSourceConfig | FileSourceConfig, Field(discriminator="kind")]

#: The source kinds (also the tags pydantic puts in error locations).
SOURCE_KINDS = ("synthetic", "lsl", "file")
