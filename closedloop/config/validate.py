"""Checks that span sections of a pipeline, from config data alone.

Nyquist, window and resolution (``[source]`` × ``[features]`` ×
``[preprocess]``), channels, the features a controller reads, the controller
against the device's limits, the trigger's train or sonication against the
rTMS train table and the TUS limits, the motor threshold, the adapter, the
frame hop against the watchdog. Each check takes the sections it needs, so
:func:`check_sections` runs every check whose sections parsed and a file's
problems are all reported at once. Nothing here imports stage code: the
train table is parsed from the limit names, the adapters' facts come from
:data:`BUILTIN_ADAPTERS` (a third-party adapter's entry point is loaded).

A trigger's train or sonication is put to the safety layer itself
(:mod:`closedloop.safety`, plain Python, imported when a trigger is checked),
so the pipeline check and the running session cannot disagree.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from closedloop.config.controllers import (
    RTMSPhaseTriggerConfig,
    RTMSTriggerConfig,
    TUSPhaseTriggerConfig,
    TUSTriggerConfig,
)
from closedloop.config.features import (
    PAIN_INDEX,
    FeaturesConfig,
    PhaseConfig,
    PreprocessConfig,
    corrected_bands,
    features_of,
    spectrum_range,
)
from closedloop.config.painmodel import features_hash, read_pain_model
from closedloop.config.pipeline import RATING_FEATURES, DeviceConfig, PipelineConfig, RatingsConfig
from closedloop.config.profile import DeviceProfile, parse_train_limit
from closedloop.config.safety import SafetyOverrides
from closedloop.config.sources import SyntheticSourceConfig
from closedloop.types import Command

#: Entry-point group of third-party adapters (see :mod:`closedloop.adapters`).
ADAPTER_ENTRY_POINTS = "closedloop.adapters"


@dataclass(frozen=True)
class AdapterFacts:
    """What validation needs to know of an adapter without importing it."""

    modalities: tuple[str, ...]
    uses_motor_threshold: bool = False  # converts %MT intensities to %MSO with the participant's threshold
    module: str | None = None  # an optional dependency it imports ...
    extra: str | None = None  # ... and the extra that installs it


#: The built-in adapters (``closedloop.adapters.BUILTIN``; a test keeps the two in step).
BUILTIN_ADAPTERS: dict[str, AdapterFacts] = {
    "simulated": AdapterFacts(("tes", "rtms", "tus")),
    "lsl_commands": AdapterFacts(("tes", "rtms", "tus")),
    "ttl": AdapterFacts(("rtms", "tus"), module="serial", extra="serial"),
    "magstim": AdapterFacts(("rtms",), uses_motor_threshold=True, module="serial", extra="serial"),
    "magpro": AdapterFacts(("rtms",), uses_motor_threshold=True, module="serial", extra="serial"),
    "starstim": AdapterFacts(("tes",)),
}


def feature_names(cfg: PipelineConfig) -> list[str]:
    """Return the names of the features a pipeline produces, in frame order."""
    return features_of(cfg.features) + rating_features(cfg.ratings)


def rating_features(ratings: RatingsConfig | None) -> list[str]:
    """Return the features a ``[ratings]`` section adds to every frame (after the ``[features]`` ones)."""
    return list(RATING_FEATURES) if ratings is not None and ratings.features else []


# --- source × preprocess × features ----------------------------------------------------------------


def _bins_in(lo: float, hi: float, fs: float, n: int) -> int:
    """Return the DFT bins of an ``n``-point transform in the half-open band ``[lo, hi)``."""
    df = fs / n
    return max(0, math.ceil(hi / df - 1e-9) - math.ceil(lo / df - 1e-9))


def check_features(f: FeaturesConfig, pp: PreprocessConfig, sfreq: float, ch_names: list[str] | None) -> list[str]:
    """Return the problems that need the sampling rate or the source's channels, each naming its key."""
    problems: list[str] = []
    fs = sfreq
    nyq = fs / 2
    seg = f.segment_samples
    seg_key = "features.welch.segment_samples" if f.welch.segment_samples else "features.window_samples"
    spectral = f.band_method != "iir"
    all_bands = dict(f.bands)
    if f.relative_to is not None:
        all_bands["relative_to"] = f.relative_to
    for name, (lo, hi) in all_bands.items():
        key = "features.relative_to" if name == "relative_to" else f"features.bands.{name}"
        if hi > nyq or (not spectral and hi >= nyq):
            problems.append(f"{key}: upper edge {hi} Hz is above Nyquist ({nyq} Hz at {fs} Hz)")
            continue
        period = fs / lo
        if f.window_samples < period:
            problems.append(
                f"features.window_samples: {f.window_samples} samples is shorter than one period of "
                f"band {name!r} at {lo} Hz ({math.ceil(period)} samples at {fs} Hz); allowed: >= {math.ceil(period)}"
            )
        if spectral:
            resolution = fs / seg
            if hi - lo < resolution:
                problems.append(
                    f"{key}: {hi - lo} Hz wide but {seg_key} resolves only {resolution:.3g} Hz; "
                    f"use {seg_key.split('.')[-1]} >= {math.ceil(fs / (hi - lo))}"
                )
            elif _bins_in(lo, hi, fs, seg) == 0:
                problems.append(f"{key}: holds no DFT bin at {seg} samples ({resolution:.3g} Hz apart)")
    for key, val in (("highpass_hz", pp.highpass_hz), ("notch_hz", pp.notch_hz)):
        if val is not None and val >= nyq:
            problems.append(f"preprocess.{key}: {val} Hz is not below Nyquist ({nyq} Hz)")
    if pp.notch_hz is not None and pp.notch_hz * pp.notch_harmonics >= nyq and pp.notch_hz < nyq:
        problems.append(
            f"preprocess.notch_harmonics: {pp.notch_harmonics} x {pp.notch_hz} Hz reaches Nyquist ({nyq} Hz); "
            f"allowed: <= {math.ceil(nyq / pp.notch_hz) - 1}"
        )
    if pp.bandpass_hz is not None and pp.bandpass_hz[1] >= nyq:
        problems.append(f"preprocess.bandpass_hz: upper edge {pp.bandpass_hz[1]} Hz is not below Nyquist ({nyq} Hz)")
    q = f.quality
    if q.emg_rms_uV is not None and q.emg_hz >= nyq:
        problems.append(
            f"features.quality.emg_hz: {q.emg_hz} Hz is not below Nyquist ({nyq} Hz); "
            "lower it or set emg_rms_uV to switch the check off"
        )
    if f.paf is not None:
        p = f.paf
        for key, (_lo, hi) in (("cog_band", p.cog_band), ("peak_band", p.peak_band)):
            if hi >= nyq:
                problems.append(f"features.paf.{key}: upper edge {hi} Hz is not below Nyquist ({nyq} Hz)")
        res = fs / (p.segment_samples * p.zero_pad)
        if "peak" in p.estimators and (p.peak_band[1] - p.peak_band[0]) < 4 * res:
            problems.append(
                f"features.paf.peak_band: needs at least 4 bins; the zero-padded resolution "
                f"is {res:.3g} Hz (raise segment_samples or zero_pad)"
            )
        if p.segment_samples < fs / p.peak_band[0]:
            problems.append(
                f"features.paf.segment_samples: {p.segment_samples} samples is shorter than one period "
                f"at {p.peak_band[0]} Hz"
            )
    problems += _check_spectrum(f, fs)
    for rhythm, ph in f.phase.items():
        problems += check_phase(f"features.phase.{rhythm}", ph, fs)
    problems += _check_channels(f, pp, ch_names)
    return problems


#: The shortest ETP calibration block (s): about a hundred cycles of an alpha/mu rhythm.
MIN_ETP_TRAIN_S = 10.0


def check_phase(key: str, ph: PhaseConfig, fs: float) -> list[str]:
    """Return the problems of one ``[features.phase.<rhythm>]`` at sampling rate ``fs``, each naming its key."""
    problems: list[str] = []
    nyq = fs / 2
    lo, hi = ph.band
    if hi >= nyq:
        return [f"{key}.band: upper edge {hi} Hz is not below Nyquist ({nyq} Hz at {fs} Hz)"]
    top = hi + ph.snr_gap_hz + ph.snr_flank_hz
    if top >= nyq:
        problems.append(f"{key}.snr_flank_hz: the upper flank reaches {top:g} Hz, not below Nyquist ({nyq} Hz)")
    n = round(ph.window_s * fs)
    period = fs / lo
    if n < period:
        problems.append(
            f"{key}.window_s: {ph.window_s:g} s is shorter than one period at {lo} Hz; allowed: >= {1 / lo:.3g}"
        )
    if ph.estimator in ("ar", "etp"):
        order = ph.filter_order_at(fs)
        if order < period:
            problems.append(
                f"{key}.filter_order_s: order {order} at {fs:g} Hz is shorter than one period at {lo} Hz: the "
                f"band-pass cannot isolate the band; allowed: >= {1 / lo:.3g}"
            )
        free = n - order
        p = ph.ar_order_at(fs)
        need = 2 * p if ph.estimator == "ar" else 2 * period
        if free < need:
            what = f"an order-{p} AR model (2 x order)" if ph.estimator == "ar" else "two periods to find a peak in"
            problems.append(
                f"{key}.window_s: {n} samples minus the filter order ({order}) leave {free}, too few for {what}; "
                f"allowed: window_s >= {(order + need) / fs:.3g}"
            )
    if ph.estimator == "etp" and ph.train_s < max(MIN_ETP_TRAIN_S, 4 * ph.window_s):
        problems.append(
            f"{key}.train_s: {ph.train_s:g} s is too short to calibrate the period; "
            f"allowed: >= {max(MIN_ETP_TRAIN_S, 4 * ph.window_s):g}"
        )
    return problems


def _check_spectrum(f: FeaturesConfig, fs: float) -> list[str]:
    """Return the problems of ``[features.aperiodic]``/``[features.iaf]`` against the sampling rate."""
    rng = spectrum_range(f)
    if rng is None:
        return []
    problems: list[str] = []
    nyq = fs / 2
    seg = f.spectrum.segment_samples or f.window_samples
    seg_key = "features.spectrum.segment_samples"
    df = fs / seg
    if rng[1] >= nyq:
        key = "features.aperiodic.range_hz" if f.aperiodic and f.aperiodic.range_hz[1] >= nyq else "features.iaf.bands"
        problems.append(f"{key}: reaches {rng[1]:g} Hz, not below Nyquist ({nyq:g} Hz at {fs:g} Hz)")
    if f.aperiodic is not None:
        lo, hi = f.aperiodic.range_hz
        n_bins = _bins_in(lo, hi + df / 2, fs, seg)
        if n_bins < 10:
            problems.append(
                f"features.aperiodic.range_hz: holds {n_bins} bins at {seg} samples ({df:.3g} Hz apart); a fit "
                f"needs >= 10: widen the range or raise {seg_key.split('.')[-1]} to >= {math.ceil(10 * fs / (hi - lo))}"
            )
        for name in corrected_bands(f):
            if name in f.bands and _bins_in(*f.bands[name], fs, seg) == 0:
                problems.append(f"features.aperiodic.corrected: {name!r} holds no bin of {seg_key} ({df:.3g} Hz apart)")
    if f.iaf is not None:
        for name, (lo, hi) in f.iaf.bands.items():
            if hi - lo < df:
                problems.append(
                    f"features.iaf.bands.{name}: {hi - lo:g} Hz wide but {seg_key} resolves {df:.3g} Hz; "
                    f"use segment_samples >= {math.ceil(fs / (hi - lo))}"
                )
        lo, hi = f.iaf.search_hz
        if f.iaf.fixed_hz is None and hi - lo < 4 * df:
            problems.append(
                f"features.iaf.search_hz: needs at least 4 bins; {seg_key} resolves {df:.3g} Hz "
                f"(use segment_samples >= {math.ceil(4 * fs / (hi - lo))})"
            )
    if seg < fs / rng[0]:
        problems.append(
            f"{seg_key}: {seg} samples is shorter than one period at {rng[0]:g} Hz (the lowest frequency the "
            f"aperiodic fit or the IAF bands use); allowed: >= {math.ceil(fs / rng[0])}"
        )
    return problems


def _check_channels(f: FeaturesConfig, pp: PreprocessConfig, ch_names: list[str] | None) -> list[str]:
    problems: list[str] = []
    if f.channels is not None and len(set(f.channels)) != len(f.channels):
        problems.append("features.channels: a channel is listed twice")
    if pp.picks is not None and len(set(pp.picks)) != len(pp.picks):
        problems.append("preprocess.picks: a channel is listed twice")
    for centre, nbrs in pp.laplacian.items():
        if not nbrs:
            problems.append(f"preprocess.laplacian.{centre}: no neighbours")
        elif centre in nbrs:
            problems.append(f"preprocess.laplacian.{centre}: the centre is listed among its neighbours")
    if ch_names is None:
        return problems
    avail = list(pp.picks) if pp.picks is not None else list(ch_names)
    if pp.picks is not None:
        missing = [c for c in pp.picks if c not in ch_names]
        if missing:
            problems.append(f"preprocess.picks: {missing} not among the source's channels {ch_names}")
    if isinstance(pp.reference, list):
        missing = [c for c in pp.reference if c not in ch_names]
        if missing:
            problems.append(f"preprocess.reference: {missing} not among the source's channels {ch_names}")
    for centre, nbrs in pp.laplacian.items():
        missing = [c for c in [centre, *nbrs] if c not in avail]
        if missing:
            problems.append(f"preprocess.laplacian.{centre}: {missing} not among the picked channels {avail}")
    if f.channels is not None:
        missing = [c for c in f.channels if c not in avail]
        if missing:
            which = "picked channels" if pp.picks is not None else "source's channels"
            problems.append(f"features.channels: {missing} not among the {which} {avail}")
    for roi, members in (f.rois or {}).items():
        missing = [c for c in members if c not in avail]
        if missing:
            problems.append(f"features.rois.{roi}: {missing} not among the channels {avail}")
    return problems


# --- controller × features ------------------------------------------------------------------------


def check_controller_features(
    controller: Any, features: FeaturesConfig, ratings: RatingsConfig | None = None
) -> list[str]:
    """Return a problem for every feature the controller reads that the pipeline does not produce."""
    feats = features_of(features) + rating_features(ratings)
    return [
        f"controller.{key}: {name!r} is not a feature of this pipeline; choose one of {feats}"
        for key, name in controller.feature_refs()
        if name is not None and name not in feats
    ]


# --- pain ratings and the pain index (docs/pain-modelling.md) --------------------------------------


def check_pain_index(features: FeaturesConfig, sfreq: float) -> list[str]:
    """Return the problems of ``[features.pain_index]``: its model file, the features it reads, its lags."""
    key = "features.pain_index.model"
    try:
        model = read_pain_model(features.pain_index.model)
    except ValueError as e:
        return [f"{key}: {e}"]
    produced = [n for n in features_of(features) if n != PAIN_INDEX]
    problems = []
    for name in model.features():
        if name in (PAIN_INDEX, *RATING_FEATURES):
            problems.append(f"{key}: the model reads {name!r}; a pain index is a model of EEG features only")
        elif name not in produced:
            problems.append(f"{key}: the model reads {name!r}, not a feature of this pipeline; features: {produced}")
    interval = features.hop_samples / sfreq
    if not math.isclose(interval, model.frame_interval_s, rel_tol=1e-9):
        problems.append(
            f"{key}: the model was fitted on a frame every {model.frame_interval_s:g} s; this pipeline makes one "
            f"every {interval:g} s (hop_samples / sfreq): its lags would mean other times; calibrate again"
        )
    return problems


# --- controller, overrides, features × device profile ---------------------------------------------


def effective_limits(profile: DeviceProfile, safety: SafetyOverrides) -> dict[str, float]:
    """Return every limit of the profile, tightened by the pipeline's ``[safety]`` overrides."""
    over = safety.model_dump(exclude_none=True)
    return {name: float(over.get(name, lim.value)) for name, lim in profile.limits.items()}


def _tes_problems(c: Any, profile: DeviceProfile, over: dict[str, float]) -> list[str]:
    problems: list[str] = []
    peak = c.peak_amplitude_mA()
    device_max = profile.limit("max_amplitude_mA")
    if peak is not None and peak > device_max:
        problems.append(
            f"controller.amplitude_mA: {peak} mA exceeds the device limit {device_max} mA ({profile.device.name})"
        )
    elif peak is not None and peak > over.get("max_amplitude_mA", math.inf):
        problems.append(
            f"controller.amplitude_mA: {peak} mA exceeds this pipeline's "
            f"safety.max_amplitude_mA ({over['max_amplitude_mA']} mA)"
        )
    lo, hi = profile.limit("min_frequency_Hz"), profile.limit("max_frequency_Hz")
    for fr in c.frequencies_Hz():
        if fr is not None and not lo <= fr <= hi:
            problems.append(f"controller.frequency_Hz: {fr} Hz outside the device range [{lo}, {hi}] Hz")
    max_rate = over.get("max_ramp_rate_mA_per_s", profile.limit("max_ramp_rate_mA_per_s"))
    for key, rate in c.ramp_rates_mA_per_s().items():
        if rate > max_rate * (1 + 1e-9):
            problems.append(
                f"controller.{key}: {rate:g} mA/s is faster than the allowed ramp rate "
                f"{max_rate:g} mA/s (the safety layer would slow it); use <= {max_rate:g}"
            )
    return problems


def check_controller_limits(controller: Any, profile: DeviceProfile, safety: SafetyOverrides) -> list[str]:
    """Return the problems between the controller and the device: modality, amplitude, frequency, ramps."""
    modality = profile.device.modality
    drives = tuple(controller.modalities())
    if modality not in drives:
        return [
            f"controller.kind: {controller.kind!r} drives {', '.join(drives)}; "
            f"the {modality} device profile {profile.device.name!r} needs a controller for {modality}"
        ]
    if modality == "tes":
        return _tes_problems(controller, profile, safety.model_dump(exclude_none=True))
    return []


def check_timeouts(features: FeaturesConfig, source: Any, profile: DeviceProfile, safety: SafetyOverrides) -> list[str]:
    """Return the problems between the frame hop, the source's stall timeout and the watchdog's timeouts."""
    problems = []
    over = safety.model_dump(exclude_none=True)
    watchdog = over.get("watchdog_timeout_s") or profile.limits.get("watchdog_timeout_s")
    watchdog = getattr(watchdog, "value", watchdog)
    fs = source.sfreq
    if watchdog is not None and features.hop_samples / fs >= watchdog:
        problems.append(
            f"features.hop_samples: a frame every {features.hop_samples / fs:.3g} s is slower than the watchdog "
            f"({watchdog} s) would allow; allowed: hop_samples < {math.floor(watchdog * fs)}"
        )
    stall = getattr(source, "stall_timeout_s", None)
    if watchdog is not None and stall is not None and stall < watchdog:
        problems.append(
            f"source.stall_timeout_s: {stall} s ends the session before the watchdog ({watchdog} s) has ramped "
            f"stimulation down; allowed: stall_timeout_s >= {watchdog}"
        )
    bad = over.get("bad_data_timeout_s") or profile.limits.get("bad_data_timeout_s")
    bad = getattr(bad, "value", bad)
    if bad is not None and watchdog is not None and bad < watchdog:
        problems.append(
            f"safety.bad_data_timeout_s: {bad} s is shorter than the watchdog timeout ({watchdog} s); "
            f"allowed: bad_data_timeout_s >= {watchdog}"
        )
    return problems


def check_overrides(safety: SafetyOverrides, profile: DeviceProfile) -> list[str]:
    """Return a problem for every ``[safety]`` override the profile lacks or that loosens its limit."""
    problems = []
    for key, val in safety.model_dump(exclude_none=True).items():
        if key not in profile.limits:
            problems.append(f"safety.{key}: the {profile.device.modality} profile has no such limit")
            continue
        device = profile.limit(key)
        looser = val < device if key.startswith("min_") else val > device
        if looser:
            problems.append(f"safety.{key}: {val} is looser than the device limit {device}; overrides may only tighten")
    return problems


def check_pipeline_limits(cfg: PipelineConfig, profile: DeviceProfile) -> list[str]:
    """Return the problems between a pipeline's controller/overrides and its device profile, each naming its key."""
    problems = check_controller_limits(cfg.controller, profile, cfg.safety)
    problems += check_timeouts(cfg.features, cfg.source, profile, cfg.safety)
    return problems + check_overrides(cfg.safety, profile)


# --- adapter and motor threshold ------------------------------------------------------------------


def _entry_point(name: str) -> Any:
    return next((ep for ep in entry_points(group=ADAPTER_ENTRY_POINTS) if ep.name == name), None)


def check_adapter(profile: DeviceProfile) -> list[str]:
    """Return a problem when the profile's adapter is not installed or does not drive its modality."""
    name, modality = profile.device.adapter, profile.device.modality
    facts = BUILTIN_ADAPTERS.get(name)
    if facts is None:
        if _entry_point(name) is not None:
            return []
        installed = sorted({*BUILTIN_ADAPTERS, *(ep.name for ep in entry_points(group=ADAPTER_ENTRY_POINTS))})
        return [f"device.adapter: no adapter named {name!r} is installed; available: {', '.join(installed)}"]
    if modality not in facts.modalities:
        return [f"device.adapter: {name!r} drives {', '.join(facts.modalities)}, not {modality}"]
    if facts.module is not None and importlib.util.find_spec(facts.module) is None:
        return [f"device.adapter: {name!r} needs the {facts.module!r} module: pip install 'closedloop[{facts.extra}]'"]
    return []


def uses_motor_threshold(adapter: str) -> bool:
    """Return whether an adapter converts %MT intensities to %MSO (third-party adapters are loaded to ask)."""
    facts = BUILTIN_ADAPTERS.get(adapter)
    if facts is not None:
        return facts.uses_motor_threshold
    ep = _entry_point(adapter)
    try:
        return ep is not None and bool(getattr(ep.load(), "uses_motor_threshold", False))
    except Exception:  # noqa: BLE001 - a broken plug-in is reported when it is built, not here
        return False


def needs_motor_threshold(profile: DeviceProfile) -> bool:
    """Return whether a session with this profile must give the participant's ``motor_threshold_pct_mso``."""
    if profile.device.modality != "rtms" or "motor_threshold_pct_mso" in profile.adapter_options:
        return False
    lim = profile.limits.get("max_intensity_pct")
    in_mso = lim is not None and lim.unit.replace(" ", "").upper() == "%MSO"
    return uses_motor_threshold(profile.device.adapter) and not in_mso


def check_motor_threshold(device: DeviceConfig, profile: DeviceProfile) -> list[str]:
    """Return a problem for ``device.motor_threshold_pct_mso`` given to a non-rTMS device, or missing where needed."""
    mt = device.motor_threshold_pct_mso
    if mt is not None and profile.device.modality != "rtms":
        return [
            f"device.motor_threshold_pct_mso: only rTMS devices use a motor threshold; "
            f"{profile.device.name!r} is {profile.device.modality}"
        ]
    if mt is None and needs_motor_threshold(profile):
        return [
            f"device.motor_threshold_pct_mso: the {profile.device.adapter} adapter sets the stimulator in % of "
            f"maximum output from intensities in %MT, so it needs the participant's resting motor threshold "
            f"(% of maximum stimulator output), e.g. motor_threshold_pct_mso = 45"
        ]
    return []


# --- trigger × train table / TUS limits ------------------------------------------------------------


def train_cells(profile: DeviceProfile) -> list[tuple[float, float, float, str]]:
    """Return the verified train-table cells ``(rate Hz, intensity %MT, max train s, source)`` of a profile."""
    cells = []
    for name, lim in profile.limits.items():
        cell = parse_train_limit(name)
        if cell is not None:
            cells.append((cell[0], cell[1], lim.value, lim.source))
    return cells


def _layer_refusal(controller: Any, profile: DeviceProfile, safety: SafetyOverrides) -> str:
    """Return why the safety layer that will run refuses the trigger's first fire ("" if it allows it).

    The request is put to the very layer a session builds, on the pipeline's
    effective limits, so nothing is checked twice differently. The safety
    layer is plain Python (no numba, no stage code): validation may use it.
    """
    # imported here, not at the top: the safety layer imports the profile schema (a cycle otherwise)
    from closedloop.safety.envelope import ENVELOPES, safety_layer_for

    over = safety.model_dump(exclude_none=True)
    env = {
        name: {"value": over.get(name, lim.value), "unit": lim.unit, "source": lim.source}
        for name, lim in profile.limits.items()
    }
    try:
        layer = safety_layer_for(ENVELOPES[profile.device.modality].from_envelope(env), clock=lambda: 0.0)
    except ValueError as err:
        return str(err)
    rtms = isinstance(controller, RTMSTriggerConfig | RTMSPhaseTriggerConfig)
    rate = controller.train.frequency_Hz if rtms else controller.sonication.prf_Hz
    out = layer.step(Command(0.0, rate, True, 0.0, controller.fire_extra(), fire=True))
    if out.on:
        return ""
    reasons = [e.reason for e in layer.events if e.kind == "refuse"] or [layer.stop_reason or "refused"]
    return reasons[-1]


def check_trigger(controller: Any, profile: DeviceProfile, safety: SafetyOverrides) -> list[str]:
    """Return why the safety layer would refuse the trigger's train or sonication, each naming a key.

    The configured request is put to the safety layer itself, on the
    effective limits (profile tightened by ``[safety]``); then the time
    between fires is checked against the train plus the inter-train interval
    (rTMS) or the sonication plus the pause (TUS): a trigger's
    ``refractory_s``, a phase trigger's ``min_interval_s`` (which also covers
    ``max_horizon_s``: pulses are spaced on their predicted times, which the
    layer's clock may see up to that much closer). A controller of another
    modality is reported by :func:`check_controller_limits`.
    """
    triggers = RTMSTriggerConfig | TUSTriggerConfig | RTMSPhaseTriggerConfig | TUSPhaseTriggerConfig
    if not isinstance(controller, triggers):
        return []
    if profile.device.modality not in controller.modalities():
        return []
    rtms = isinstance(controller, RTMSTriggerConfig | RTMSPhaseTriggerConfig)
    phase = isinstance(controller, RTMSPhaseTriggerConfig | TUSPhaseTriggerConfig)
    key, what = ("controller.train", "train") if rtms else ("controller.sonication", "sonication")
    refusal = _layer_refusal(controller, profile, safety)
    if refusal:
        return [f"{key}: the safety layer would refuse every {what}: {refusal}"]
    lim = effective_limits(profile, safety)
    if rtms:
        t = controller.train
        duration = t.pulses / t.frequency_Hz if t.pulses is not None else float(t.duration_s)
        gap, after = duration + lim["min_inter_train_interval_s"], "minimum inter-train interval"
        pause = lim["min_inter_train_interval_s"]
    else:
        duration = controller.sonication.duration_s
        h = lim["watchdog_timeout_s"]
        if duration + h > lim["max_sonication_s"]:
            return [
                f"{key}.duration_s: {duration:g} s plus the watchdog time ({h:g} s) exceeds max_sonication_s "
                f"({lim['max_sonication_s']:g} s); the layer would cut it"
            ]
        gap, after, pause = duration + lim["min_pause_s"], "minimum pause", lim["min_pause_s"]
    if phase:
        need = gap + controller.max_horizon_s
        if controller.min_interval_s < need - 1e-9:
            return [
                f"controller.min_interval_s: {controller.min_interval_s:g} s is shorter than the {what} "
                f"({duration:g} s) plus the {after} ({pause:g} s) plus max_horizon_s ({controller.max_horizon_s:g} s); "
                f"the safety layer would refuse {what}s; use >= {need:g}"
            ]
        return []
    if controller.refractory_s < gap:
        return [
            f"controller.refractory_s: {controller.refractory_s:g} s is shorter than the {what} ({duration:g} s) "
            f"plus the {after} ({pause:g} s); the safety layer would refuse {what}s; use >= {gap:g}"
        ]
    return []


# --- the whole pipeline ---------------------------------------------------------------------------


def check_sections(sections: dict[str, Any], profile: DeviceProfile | None) -> list[str]:
    """Run every cross-section check whose sections are valid.

    Parameters
    ----------
    sections : dict
        Section name (``"source"``, ``"features"``, ...) -> its validated
        model, or ``None`` when it is absent or invalid (its own problems are
        reported elsewhere); checks that need it are skipped.
    profile : DeviceProfile or None
        The device profile, when ``[device]`` named a valid one.
    """
    src, pp, feat = sections.get("source"), sections.get("preprocess"), sections.get("features")
    ctl, dev, safety = sections.get("controller"), sections.get("device"), sections.get("safety")
    problems: list[str] = []
    if src is not None and pp is not None and feat is not None:
        problems += check_features(feat, pp, src.sfreq, src.ch_names)
    ratings = sections.get("ratings")
    if ctl is not None and feat is not None:
        problems += check_controller_features(ctl, feat, ratings)
    if feat is not None and feat.pain_index is not None and src is not None:
        problems += check_pain_index(feat, src.sfreq)
    if profile is None:
        return problems
    problems += [f"device.profile ({profile.device.name}): {p}" for p in check_adapter(profile)]
    if dev is not None:
        problems += check_motor_threshold(dev, profile)
    if safety is not None:
        problems += check_overrides(safety, profile)
        if feat is not None and src is not None:
            problems += check_timeouts(feat, src, profile, safety)
        if ctl is not None:
            limits = check_controller_limits(ctl, profile, safety)
            problems += limits or check_trigger(ctl, profile, safety)
    return problems


def check_pipeline(cfg: PipelineConfig, profile: DeviceProfile | None) -> list[str]:
    """Return every cross-section problem of a parsed pipeline."""
    return check_sections(dict(cfg), profile)


# --- warnings ------------------------------------------------------------------------------------


def pipeline_warnings(cfg: PipelineConfig) -> list[str]:
    """Return what is allowed but probably unintended (printed by ``check`` and ``run``; never an error)."""
    warnings = []
    src, hop = cfg.source, cfg.features.hop_samples
    if isinstance(src, SyntheticSourceConfig) and hop % src.chunk_size:
        warnings.append(
            f"features.hop_samples: {hop} is not a multiple of source.chunk_size ({src.chunk_size}): a frame "
            f"then waits for the rest of its chunk, which adds up to {src.chunk_size - 1} samples "
            f"({(src.chunk_size - 1) / src.sfreq * 1000:.3g} ms) of latency (at 500 Hz, chunk 10 and hop 25 "
            f"gave a median latency of 10.8 ms instead of 1.2 ms); use a multiple, e.g. "
            f"{max(src.chunk_size, round(hop / src.chunk_size) * src.chunk_size)}"
        )
    warnings += stimulation_artefact_warnings(cfg)
    warnings += _pain_index_warnings(cfg)
    return warnings


def stimulation_artefact_warnings(cfg: PipelineConfig) -> list[str]:
    """Warn when a band the pipeline measures holds the tACS frequency or one of its first harmonics.

    On real EEG the stimulation artefact sits at the stimulation frequency and its harmonics: a
    controller reading such a band during tACS reads the artefact, not the brain (docs/control.md).
    """
    ctl = cfg.controller
    if ctl is None or "tes" not in ctl.modalities() or isinstance(cfg.source, SyntheticSourceConfig):
        return []  # the synthetic EEG has no stimulation artefact
    out = []
    for f in sorted({f for f in ctl.frequencies_Hz() if f and f > 0}):
        for band, (lo, hi) in cfg.features.bands.items():
            inside = [k * f for k in (1, 2, 3) if lo <= k * f <= hi]
            if inside:
                out.append(
                    f"features.bands.{band}: {lo:g}-{hi:g} Hz holds {inside[0]:g} Hz, the tACS frequency "
                    f"{f:g} Hz{' or a harmonic' if inside[0] != f else ''}: on real EEG, features from this band read "
                    "the stimulation artefact while stimulating; measure in off-windows or a band away from it "
                    "(docs/control.md)"
                )
    return out


def _pain_index_warnings(cfg: PipelineConfig) -> list[str]:
    """Warn when a pain model was fitted on features computed differently from this pipeline's."""
    if cfg.features.pain_index is None:
        return []
    try:
        model = read_pain_model(cfg.features.pain_index.model)
    except ValueError:
        return []  # reported as an error by check_pain_index
    trained = model.training.get("features_sha256")
    here = features_hash(cfg.features.model_dump(mode="json"), cfg.preprocess.model_dump(mode="json"), cfg.source.sfreq)
    if trained and trained != here:
        return [
            "features.pain_index.model: the model was fitted on features computed with other [features] or "
            "[preprocess] settings than this pipeline's; its weights may not fit these features (calibrate again)"
        ]
    return []


def notch_warning(pp: PreprocessConfig, line_hz: float | None, how: str) -> str | None:
    """Return a warning when ``preprocess.notch_hz`` does not match the recording's line frequency.

    Parameters
    ----------
    pp : PreprocessConfig
        The pipeline's preprocessing.
    line_hz : float or None
        The line frequency of the data (50 or 60), or ``None`` when unknown.
    how : str
        Where ``line_hz`` comes from, for the message ("declared in the file", "detected in its spectrum").
    """
    if line_hz is None or pp.notch_hz is None or math.isclose(pp.notch_hz, line_hz, rel_tol=0.02):
        return None
    return (
        f"preprocess.notch_hz: {pp.notch_hz:g} Hz, but the line frequency of the data is {line_hz:g} Hz ({how}); "
        f"set notch_hz = {line_hz:g}"
    )
