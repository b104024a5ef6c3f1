"""[preprocess]/[features] validation: every problem names its key; names match what the chain builds."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from closedloop.features import FeaturesConfig, PreprocessConfig, build_chain, check_features, features_of

CH = ["Fz", "Cz", "Pz", "P3", "P4", "O1", "O2"]


def feat(**kw) -> FeaturesConfig:
    base = dict(channels=["O1", "O2"], window_samples=500, hop_samples=25)
    base.update(kw)
    return FeaturesConfig(**base)


def problems(f: FeaturesConfig | None = None, pp: PreprocessConfig | None = None, fs: float = 250.0, ch=CH) -> str:
    return "\n".join(check_features(f or feat(), pp or PreprocessConfig(), fs, ch))


def test_defaults_are_valid_and_legacy_keys_still_work():
    f = feat(method="periodogram")
    assert f.band_method == "welch" and problems(f) == ""
    assert features_of(f) == ["theta", "alpha", "theta_alpha"]


@pytest.mark.parametrize(
    "kw, key",
    [
        (dict(pp=PreprocessConfig(notch_hz=50.0, notch_harmonics=3)), "preprocess.notch_harmonics"),
        (dict(pp=PreprocessConfig(bandpass_hz=(1.0, 200.0))), "preprocess.bandpass_hz"),
        (dict(pp=PreprocessConfig(laplacian={"Cz": ["Fz", "Xx"]})), "preprocess.laplacian.Cz"),
        (dict(pp=PreprocessConfig(reference=["M1"])), "preprocess.reference"),
        (dict(pp=PreprocessConfig(picks=["O1"])), "features.channels"),
        (dict(f=feat(channels=None, rois={"occ": ["O1", "Oz"]})), "features.rois.occ"),
        (dict(f=feat(relative_to=(1.0, 200.0))), "features.relative_to"),
        (dict(f=feat(method="iir", bands={"gamma": (60.0, 125.0)}, ratios={})), "features.bands.gamma"),
        (dict(f=feat(welch={"segment_samples": 50})), "features.welch.segment_samples"),
        (dict(f=feat(paf={"segment_samples": 20})), "features.paf.segment_samples"),
        (dict(f=feat(paf={"segment_samples": 500, "peak_band": (7.0, 130.0)})), "features.paf.peak_band"),
        (dict(f=feat(), fs=50.0), "features.quality.emg_hz"),
    ],
)
def test_cross_checks_name_their_key(kw, key):
    assert key in problems(**kw)


@pytest.mark.parametrize(
    "kw, text",
    [
        (dict(channels=["O1"], rois={"a": ["O1"]}), "either channels"),
        (dict(iir={"order": 3}), "[features.iir] is given but method is 'welch'"),
        (dict(baseline={"duration_s": 60, "features": ["beta"]}), "baseline.features"),
        (dict(relative_to=(0.0, 40.0)), "relative_to"),
        (dict(paf={"segment_samples": 500, "estimators": ["mode"]}), "estimators"),
    ],
)
def test_section_errors(kw, text):
    with pytest.raises(ValidationError, match=None) as info:
        feat(**kw)
    assert text in str(info.value)


def test_feature_names_match_the_built_extractor():
    f = feat(
        channels=None,
        rois={"post": ["O1", "O2", "Pz"], "mid": {"Fz": 0.5, "Cz": 0.5}},
        relative_to=(1.0, 40.0),
        paf={"segment_samples": 500, "estimators": ["peak"]},
        method="sliding_dft",
    )
    _, ext = build_chain(f, PreprocessConfig(reference="average"), 250.0, CH)
    assert ext.names == tuple(features_of(f))
    assert features_of(f)[:6] == [
        "theta_post",
        "alpha_post",
        "theta_rel_post",
        "alpha_rel_post",
        "theta_alpha_post",
        "paf_peak_post",
    ]
