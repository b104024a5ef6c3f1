"""Shared by the pain-modelling tests: a small synthetic pipeline and sessions with planted truth."""

from __future__ import annotations

from pathlib import Path

from closedloop.config import load_pipeline
from closedloop.synthetic.eeg import PlantModel, SyntheticEEG

#: Frontal and posterior sites only: the generator's theta and alpha, at a fraction of 32 channels' cost.
CHANNELS = ["F3", "Fz", "F4", "P3", "Pz", "P4"]
SFREQ = 250.0
HOP_S = 0.1

PIPELINE = """
[pipeline]
name = "pain_test"

[source]
kind = "synthetic"
n_channels = 16
sfreq = 250.0
seed = {seed}
chunk_size = 25
plant_gain_per_mA = {gain}
plant_tau_s = {tau}

[preprocess]
highpass_hz = 1.0

[features]
rois = {{ front = ["F3", "Fz", "F4"], post = ["P3", "Pz", "P4"] }}
window_samples = 250
hop_samples = 25
smoothing_s = {smoothing}
bands = {{ theta = [4.0, 8.0], alpha = [8.0, 12.0] }}
ratios = {{}}
{pain_index}

[controller]
kind = "threshold"
feature = "alpha_post"
direction = "below"
lower = {lower}
upper = {upper}
amplitude_mA = 1.0
frequency_Hz = 10.0
onset = 4
termination = 4
blanking_s = 2.0

[ratings]
stream = {{ name = "pain-ratings" }}

[device]
profile = "sim_tacs"
"""


def write_pipeline(
    folder: Path,
    name: str = "pain_test.toml",
    *,
    seed: int = 3,
    gain: float = 0.8,
    tau: float = 2.0,
    smoothing: float = 1.0,
    lower: float = -5.0,
    upper: float = -4.0,
    model: str | None = None,
) -> Path:
    """Write the test pipeline (thresholds that never trigger by default: no stimulation)."""
    path = Path(folder) / name
    pain = f'pain_index = {{ model = "{model}" }}' if model else ""
    path.write_text(
        PIPELINE.format(seed=seed, gain=gain, tau=tau, smoothing=smoothing, lower=lower, upper=upper, pain_index=pain)
    )
    return path


def generator(seed: int = 3, gain: float = 0.8, tau: float = 2.0, **kwargs) -> SyntheticEEG:
    """Return the generator on :data:`CHANNELS` with a plant."""
    return SyntheticEEG(
        ch_names=CHANNELS, sfreq=SFREQ, seed=seed, plant=PlantModel(gain_per_mA=gain, tau_s=tau), **kwargs
    )


def load(path: Path, **overrides):
    """Load a pipeline with dotted overrides."""
    return load_pipeline(path, overrides)
