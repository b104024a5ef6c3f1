"""Codes of the Neuroelectrics NIC2 remote-stimulation TCP protocol (docs/devices.md).

A client connects to TCP port 1235 of the computer running NIC2 and sends
one command byte, followed for some commands by ASCII parameters separated
by ``;`` and ended by a NUL byte. Status queries (and the version
handshake) are answered by one status byte; other commands have no reply,
so their effect is confirmed by querying the status.

Codes as given by docs/devices.md and by the MatNIC2 toolbox's public code table
(two sources agree); the version string and the exact parameter formats of
the frequency and phase changes are assumptions to check on a real NIC2.
"""

from __future__ import annotations

QUERY_STATUS = 128
QUERY_STATUS_PROTOCOL = 129
VERSION = 131
LOAD_PROTOCOL = 135
UNLOAD_PROTOCOL = 136
START_PROTOCOL = 137
ABORT_PROTOCOL = 138
PAUSE_PROTOCOL = 139
ONLINE_TDCS_AMPLITUDE = 146
ONLINE_TACS_AMPLITUDE = 147
ONLINE_TACS_FREQUENCY = 148
ONLINE_TACS_PHASE = 149

#: Commands followed by an ASCII parameter string ended by NUL.
WITH_PARAMETERS = frozenset(
    {
        VERSION,
        LOAD_PROTOCOL,
        ONLINE_TDCS_AMPLITUDE,
        ONLINE_TACS_AMPLITUDE,
        ONLINE_TACS_FREQUENCY,
        ONLINE_TACS_PHASE,
        150,
        151,
    }
)
#: Commands answered by one status byte.
WITH_REPLY = frozenset({QUERY_STATUS, QUERY_STATUS_PROTOCOL, VERSION})

STATUS = {
    200: "remote control allowed",
    201: "remote control rejected",
    202: "version received",
    203: "synchronizing",
    204: "idle",
    205: "protocol not loaded",
    206: "protocol loading",
    207: "protocol loaded",
    208: "protocol running",
    209: "protocol error",
    210: "protocol finished",
    211: "protocol paused",
    212: "protocol aborted",
    213: "protocol aborting",
    214: "EEG on",
    215: "EEG off",
    216: "stimulation ramp-up",
    217: "stimulation full",
    218: "stimulation ramp-down",
    219: "stimulation finished",
    220: "waiting for second sham",
    221: "checking impedance",
    222: "impedance check finished",
    223: "impedance check aborting",
    224: "impedance check aborted",
    225: "pulse disabled",
    226: "pulse enabled",
}

REMOTE_ALLOWED, REMOTE_REJECTED, SYNCHRONIZING, IDLE = 200, 201, 203, 204
NOT_LOADED, LOADING, LOADED, RUNNING, ERROR, FINISHED = 205, 206, 207, 208, 209, 210
ABORTED, ABORTING = 212, 213
RAMP_UP, FULL, RAMP_DOWN, STIM_FINISHED = 216, 217, 218, 219

#: Limits of online changes (MatNIC2's checks): µA per channel and transition time.
MAX_AMPLITUDE_UA = 2000
MIN_TRANSITION_MS = 100
MAX_TRANSITION_MS = 10000


def describe(code: int) -> str:
    """``"217 (stimulation full)"``."""
    return f"{code} ({STATUS.get(code, 'unknown code')})"
