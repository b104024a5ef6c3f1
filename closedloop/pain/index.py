"""The ``pain_index`` feature: a ``closedloop calibrate`` model applied to every frame.

The model (:class:`~closedloop.config.painmodel.PainModel`) is linear in
standardised features at fixed lags; :class:`PainIndexStage` keeps the last
``max lag + 1`` frames of the features it reads in a ring, so each frame
costs one small dot product and allocates nothing. A frame flagged bad, or a
non-finite input at any lag, gives NaN: a controller reading ``pain_index``
then holds (or ramps down), as for any unusable frame.
"""

from __future__ import annotations

import math

import numpy as np

from closedloop.config.painmodel import PainModel, file_sha256, read_pain_model
from closedloop.control.frame_usability import BAD_FLAGS
from closedloop.types import Quality

__all__ = ["PainIndexStage", "model_facts"]


class PainIndexStage:
    """Append ``pain_index`` to every frame from a calibrated model.

    Parameters
    ----------
    model : PainModel
        The model.
    """

    def __init__(self, model: PainModel) -> None:
        self.model = model
        self.names = ("pain_index",)
        self._features = model.features()
        lags = model.lag_frames()
        self._term_feature = np.array([self._features.index(t.feature) for t in model.terms], dtype=np.intp)
        self._term_lag = np.array(lags, dtype=np.intp)
        self._depth = max(lags) + 1
        self._ring = np.full((self._depth, len(self._features)), np.nan)
        self._bad = np.ones(self._depth, dtype=bool)
        self._w = np.asarray(model.coef, dtype=float) / np.asarray(model.scale, dtype=float)
        self._b = float(model.intercept) - float(np.dot(self._w, np.asarray(model.center, dtype=float)))
        self._cols: np.ndarray | None = None
        self._out = -1
        self._pos = -1  # ring slot of the newest frame
        self._x = np.empty(len(model.terms))
        # per ring position of the newest frame: the slot and the flat ring index each term reads
        depth, n_feat = self._depth, len(self._features)
        self._slots = [(p - self._term_lag) % depth for p in range(depth)]
        self._flat = [s * n_feat + self._term_feature for s in self._slots]

    @classmethod
    def from_file(cls, path: str) -> PainIndexStage:
        """Build from a model file."""
        return cls(read_pain_model(path))

    def bind(self, names: tuple[str, ...]) -> None:
        """Find the model's features and the output column among the frame's ``names``."""
        self._cols = np.array([names.index(f) for f in self._features], dtype=np.intp)
        self._out = names.index("pain_index")

    def apply(self, t: float, flags: Quality, row: np.ndarray) -> None:
        """Write ``pain_index`` of the frame whose values are ``row`` (in place)."""
        pos = self._pos + 1
        if pos == self._depth:
            pos = 0
        self._pos = pos
        ring = self._ring
        np.take(row, self._cols, out=ring[pos])
        self._bad[pos] = bool(flags & BAD_FLAGS)
        if self._bad[self._slots[pos]].any():
            row[self._out] = math.nan
            return
        x = self._x
        np.take(ring.reshape(-1), self._flat[pos], out=x)
        z = float(np.dot(self._w, x)) + self._b
        row[self._out] = self.model.predict(z) if math.isfinite(z) else math.nan


def model_facts(path: str) -> dict[str, object]:
    """Return what identifies a pain model in a session: its file, SHA-256, kind, terms and training hashes."""
    model = read_pain_model(path)
    tr = model.training
    return {
        "file": str(path),
        "sha256": file_sha256(path),
        "kind": model.kind,
        "threshold": model.threshold,
        "terms": [f"{t.feature}@{t.lag_s:g}s" for t in model.terms],
        "training_data_sha256": tr.get("data_sha256"),
        "training_files": [f.get("sha256") for f in tr.get("sessions", [])],
        "features_sha256": tr.get("features_sha256"),
    }
