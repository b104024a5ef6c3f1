"""The file ``closedloop calibrate`` writes and ``[features.pain_index]`` reads: a model from features to ratings.

Pure data (JSON), so a pipeline check can read it without stage code. The
model is linear in standardised, lagged features::

    z = intercept + sum_j coef[j] * (x_j(t - lag_j) - center[j]) / scale[j]

``pain_index`` is ``z`` (``kind = "ridge"``: the predicted rating) or
``1 / (1 + exp(-z))`` (``kind = "logistic"``: the probability that the rating
is at or above ``threshold``). ``training`` records what the model was fitted
on (files and their SHA-256, the hash of the training rows, the pipeline's
feature settings) and how well it predicts out of sample; the file's own
SHA-256 identifies the model in every session that uses it.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from closedloop.config.base import StrictModel, error_lines

__all__ = ["FORMAT", "ModelTerm", "PainModel", "read_pain_model", "file_sha256", "features_hash"]

#: The ``format`` tag of a pain model file.
FORMAT = "closedloop.pain_model/1"


class ModelTerm(StrictModel):
    """One input of the model: a feature at a lag."""

    feature: str = Field(min_length=1)
    lag_s: float = Field(ge=0, description="the feature this long before the frame (s)")


class PainModel(StrictModel):
    """A fitted model from features to pain ratings (see the module docstring)."""

    format: Literal["closedloop.pain_model/1"] = FORMAT
    kind: Literal["ridge", "logistic"]
    target: str = "rating"
    threshold: float | None = Field(None, description="logistic: the rating at or above which the target is 1")
    terms: list[ModelTerm] = Field(min_length=1)
    center: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    frame_interval_s: float = Field(gt=0, description="hop / sfreq of the pipeline it was fitted with (s)")
    training: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _shapes(self) -> PainModel:
        n = len(self.terms)
        problems = [
            f"{key}: {len(getattr(self, key))} values for {n} terms"
            for key in ("center", "scale", "coef")
            if len(getattr(self, key)) != n
        ]
        if any(not (s > 0) for s in self.scale):
            problems.append("scale: every scale must be > 0")
        if self.kind == "logistic" and self.threshold is None:
            problems.append("threshold: a logistic model needs the rating threshold it predicts")
        for j, t in enumerate(self.terms):
            frames = t.lag_s / self.frame_interval_s
            if abs(frames - round(frames)) > 1e-6:
                problems.append(f"terms[{j}].lag_s: {t.lag_s} s is not a whole number of frames")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def features(self) -> list[str]:
        """Return the features the model reads (each once, in term order)."""
        return list(dict.fromkeys(t.feature for t in self.terms))

    def lag_frames(self) -> list[int]:
        """Return each term's lag in frames."""
        return [round(t.lag_s / self.frame_interval_s) for t in self.terms]

    def predict(self, z: float) -> float:
        """Return the model output for the linear predictor ``z``."""
        if self.kind == "ridge":
            return z
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


def file_sha256(path: str | Path) -> str:
    """Return the SHA-256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def features_hash(features: dict, preprocess: dict, sfreq: float) -> str:
    """Return the SHA-256 of the settings that define the features (``pain_index`` left out)."""
    feats = {k: v for k, v in features.items() if k != "pain_index"}
    text = json.dumps({"features": feats, "preprocess": preprocess, "sfreq": sfreq}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def read_pain_model(path: str | Path) -> PainModel:
    """Read and check a pain model file.

    Raises
    ------
    ValueError
        One line naming the file and what is wrong (missing, not JSON, bad keys).
    """
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"model file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"model file {p} cannot be read: {e}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"model file {p} is not JSON: {e}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ValueError(f"{p} is not a pain model file (format {FORMAT!r}); write one with closedloop calibrate")
    try:
        return PainModel.model_validate(raw)
    except ValidationError as e:
        raise ValueError(f"model file {p}: " + "; ".join(error_lines(e, PainModel))) from None
