"""The safety layer, separate from controllers and adapters.

One layer per modality (:mod:`.tes`, :mod:`.rtms`, :mod:`.tus`) on a shared
base (:mod:`.layer`: clock, state machine, events, dose); a watchdog
component (:mod:`.watchdog`); the pipeline-level envelope (:mod:`.envelope`).
"""

from closedloop.safety.dose import Dose
from closedloop.safety.envelope import build_envelope, build_safety_layer, safety_layer_for
from closedloop.safety.events import EventLog, SafetyEvent
from closedloop.safety.layer import SafetyClockError, SafetyLayer
from closedloop.safety.rtms import RTMSEnvelope, RTMSSafetyLayer, TrainLimit
from closedloop.safety.state import StimState
from closedloop.safety.tes import TESEnvelope, TESSafetyLayer
from closedloop.safety.tus import TUSEnvelope, TUSSafetyLayer, ispta_mW_per_cm2, mechanical_index
from closedloop.safety.watchdog import Watchdog, WatchdogTrip

__all__ = [
    "Dose",
    "EventLog",
    "RTMSEnvelope",
    "RTMSSafetyLayer",
    "SafetyClockError",
    "SafetyEvent",
    "SafetyLayer",
    "StimState",
    "TESEnvelope",
    "TESSafetyLayer",
    "TUSEnvelope",
    "TUSSafetyLayer",
    "TrainLimit",
    "Watchdog",
    "WatchdogTrip",
    "build_envelope",
    "build_safety_layer",
    "ispta_mW_per_cm2",
    "mechanical_index",
    "safety_layer_for",
]
