"""Emulator of Neuroelectrics NIC2's remote-stimulation TCP server (Starstim).

Plays NIC2 on 127.0.0.1 (an ephemeral port in tests, 1235 for demos):
version handshake, remote-control permission (granted automatically),
load/start/abort/unload of a named protocol with ramp-up → full →
ramp-down, and online tACS/tDCS amplitude and tACS frequency changes, which
are carried out only while the stimulation is at full (as NIC2 does) and
within 0-2000 µA per channel and 100-10,000 ms transitions.

Assumptions to check on a real NIC2: whether a client that disconnects
stops the protocol (here it does not: ``abort_on_disconnect=False``), and
what NIC2 does with a change outside "stimulation full" (here it is ignored
and counted in :attr:`NIC2Emulator.ignored`).
"""

from __future__ import annotations

import argparse
import time

from closedloop.adapters import nic2_protocol as P
from closedloop.adapters.emulators.base import StreamEmulator


class NIC2Emulator(StreamEmulator):
    """NIC2 remote-stimulation server with a Starstim attached.

    Parameters
    ----------
    n_channels : int
        Stimulation channels of the Starstim (8, 20 or 32).
    protocols : set of str, optional
        Protocol names that load (None: any name).
    ramp_s : float
        Duration of the protocol's ramp-up (and ramp-down on abort).
    reject_remote : bool
        Answer the permission request with "remote control rejected".
    abort_on_disconnect : bool
        Abort the running protocol when the client disconnects.

    Attributes
    ----------
    changes : list of (time, code, values, transition_ms)
        Online changes carried out.
    ignored : int
        Online changes ignored (not at full stimulation, or out of range).
    """

    def __init__(
        self,
        n_channels: int = 8,
        protocols: set[str] | None = None,
        ramp_s: float = 0.1,
        reject_remote: bool = False,
        abort_on_disconnect: bool = False,
    ) -> None:
        super().__init__()
        self.n_channels = n_channels
        self.protocols = protocols
        self.ramp_s = ramp_s
        self.reject_remote = reject_remote
        self.abort_on_disconnect = abort_on_disconnect
        self.version = ""
        self.remote = False
        self.state = P.IDLE
        self.stim = P.IDLE
        self.loaded = ""
        self.amplitudes_uA = [0.0] * n_channels
        self.frequencies_Hz = [0.0] * n_channels
        self.changes: list[tuple[float, int, list[float], int]] = []
        self.ignored = 0
        self.starts = 0
        self.aborts = 0
        self._until = float("inf")
        self._next_state: tuple[int, int] | None = None

    # -- framing -------------------------------------------------------------------
    def parse(self, buf: bytearray) -> list[bytes]:
        """Split complete messages off the front of ``buf``; return them."""
        out = []
        while buf:
            if buf[0] in P.WITH_PARAMETERS:
                ends = [i for i in (buf.find(b"\0"), buf.find(b"\n"), buf.find(b"\r")) if i > 0]
                if not ends:
                    break
                end = min(ends)
                out.append(bytes(buf[:end]))
                del buf[: end + 1]
            else:
                out.append(bytes(buf[:1]))
                del buf[:1]
        return out

    # -- behaviour --------------------------------------------------------------------
    def _global_status(self) -> int:
        if not self.remote:
            self.remote = True
            return P.REMOTE_REJECTED if self.reject_remote else P.REMOTE_ALLOWED
        return self.state

    def execute(self, msg: bytes) -> bytes | None:
        """Carry out one message as the device would; return the reply."""
        code, text = msg[0], msg[1:].decode("ascii", "replace")
        now = time.monotonic()
        if code == P.VERSION:
            self.version = text
            return bytes([P.IDLE])
        if code == P.QUERY_STATUS:
            return bytes([self._global_status()])
        if code == P.QUERY_STATUS_PROTOCOL:
            return bytes([self.stim])
        if not self.remote or self.reject_remote:
            self.ignored += 1
            return None
        if code == P.LOAD_PROTOCOL and self.state not in (P.RUNNING, P.LOADING):
            ok = self.protocols is None or text in self.protocols
            self.state = P.LOADING
            self._later(now, 0.02, P.LOADED if ok else P.NOT_LOADED, self.stim)
            self.loaded = text if ok else ""
        elif code == P.UNLOAD_PROTOCOL and self.state != P.RUNNING:
            self.state, self.loaded = P.NOT_LOADED, ""
        elif code == P.START_PROTOCOL and self.loaded and self.state in (P.LOADED, P.ABORTED, P.FINISHED):
            self.state, self.stim = P.RUNNING, P.RAMP_UP
            self.starts += 1
            self._later(now, self.ramp_s, P.RUNNING, P.FULL)
        elif code == P.ABORT_PROTOCOL and self.state == P.RUNNING:
            self.aborts += 1
            self._abort(now)
        elif code in (P.ONLINE_TACS_AMPLITUDE, P.ONLINE_TDCS_AMPLITUDE, P.ONLINE_TACS_FREQUENCY):
            self._online_change(now, code, text)
        else:
            self.ignored += 1
        return None

    def _online_change(self, now: float, code: int, text: str) -> None:
        try:
            values = [float(v) for v in text.split(";")]
        except ValueError:
            self.ignored += 1
            return
        amplitude = code != P.ONLINE_TACS_FREQUENCY
        n = self.n_channels + (1 if amplitude else 0)
        if self.stim != P.FULL or len(values) != n:
            self.ignored += 1
            return
        if amplitude:
            *uA, transition = values
            lo = -P.MAX_AMPLITUDE_UA if code == P.ONLINE_TDCS_AMPLITUDE else 0
            if not (
                all(lo <= v <= P.MAX_AMPLITUDE_UA for v in uA)
                and P.MIN_TRANSITION_MS <= transition <= P.MAX_TRANSITION_MS
            ):
                self.ignored += 1
                return
            self.amplitudes_uA = uA
            self.changes.append((now, code, uA, int(transition)))
        else:
            self.frequencies_Hz = values
            self.changes.append((now, code, values, 0))

    def _abort(self, now: float) -> None:
        self.state, self.stim = P.ABORTING, P.RAMP_DOWN
        self.amplitudes_uA = [0.0] * self.n_channels
        self._later(now, self.ramp_s, P.ABORTED, P.STIM_FINISHED)

    def _later(self, now: float, delay: float, state: int, stim: int) -> None:
        self._until = now + delay
        self._next_state = (state, stim)

    def tick(self, now: float) -> None:
        """Advance time-driven state to ``now``."""
        if self._next_state is not None and now >= self._until:
            self.state, self.stim = self._next_state
            self._next_state = None

    def error_reply(self, msg: bytes) -> bytes | None:
        """Fail the protocol: stimulation stops and the next status query reads 209."""
        self.state, self.stim = P.ERROR, P.STIM_FINISHED
        self.amplitudes_uA = [0.0] * self.n_channels
        self._next_state = None
        return bytes([P.ERROR]) if msg[0] in (P.QUERY_STATUS, P.QUERY_STATUS_PROTOCOL) else None

    def corrupt(self, reply: bytes) -> bytes:
        """Return ``reply`` with a broken checksum (fault injection)."""
        return b"\x07"  # not a NIC2 status code

    def on_client_disconnected(self) -> None:
        """React as the device does when its client goes away."""
        if self.abort_on_disconnect and self.state == P.RUNNING:
            self._abort(time.monotonic())

    def on_link_dropped(self) -> None:
        """React as the device does when the link drops."""
        self.on_client_disconnected()

    @property
    def stimulating(self) -> bool:
        """Whether a protocol is running and delivering current."""
        return self.state == P.RUNNING and self.stim in (P.RAMP_UP, P.FULL)

    @property
    def safe(self) -> bool:
        """No protocol running and every channel at 0 µA."""
        return not self.stimulating and self.state != P.ABORTING and not any(self.amplitudes_uA)


def main() -> None:
    """Run the emulator from the command line (for demos)."""
    ap = argparse.ArgumentParser(description="NIC2 remote-stimulation server emulator (for demos)")
    ap.add_argument("--port", type=int, default=1235, help="TCP port on 127.0.0.1 (NIC2 uses 1235)")
    ap.add_argument("--channels", type=int, default=8)
    args = ap.parse_args()
    emu = NIC2Emulator(n_channels=args.channels, ramp_s=1.0)
    emu.serve_tcp(port=args.port)
    print(f"NIC2 emulator listening on 127.0.0.1:{emu.port} (Ctrl-C to stop)", flush=True)

    def report() -> None:
        print(f"state {P.describe(emu.state)}, stimulation {P.describe(emu.stim)}, µA {emu.amplitudes_uA}", flush=True)

    emu.run_until_interrupted(report)


if __name__ == "__main__":
    main()
