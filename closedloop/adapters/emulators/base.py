"""The device side of a serial line or TCP connection, run on a thread, with fault injection."""

from __future__ import annotations

import argparse
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

FAULT_KINDS = ("no_reply", "bad_crc", "error", "disconnect")


@dataclass
class _Fault:
    kind: str
    after: int  # matching messages still to handle normally before the fault applies
    count: int  # matching messages the fault applies to
    match: bytes = b""  # only messages starting with these bytes (empty: every message)


class StreamEmulator:
    """Base of the protocol emulators.

    Subclasses implement :meth:`parse` (split the byte stream into messages),
    :meth:`execute` (update the device state, return the reply),
    :meth:`error_reply` and :meth:`corrupt`, and optionally :meth:`tick`
    (time-driven state such as ramps or auto-disarm).

    Serve it with :meth:`open_pty` (returns the serial port path) or
    :meth:`serve_tcp` (returns the port on 127.0.0.1); stop it with
    :meth:`close` (or use it as a context manager).
    """

    tick_s = 0.01

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.received: list[tuple[float, bytes]] = []
        self.sent: list[tuple[float, bytes]] = []
        self.faults_applied: list[tuple[float, str, bytes]] = []
        self.link_up = False
        self.url = ""
        self._faults: list[_Fault] = []
        self._buf = bytearray()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._server: socket.socket | None = None
        self._client: socket.socket | None = None

    # -- serving -----------------------------------------------------------------
    def open_pty(self) -> str:
        """Serve on a new pseudo-terminal; return the path a serial adapter opens."""
        import pty
        import tty

        master, slave = pty.openpty()
        tty.setraw(slave)
        self._master, self._slave = master, slave
        self.url = os.ttyname(slave)
        self.link_up = True
        self._start(self._run_pty)
        return self.url

    def serve_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0 = an ephemeral port); return the port."""
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((host, port))
        srv.listen(1)
        srv.settimeout(self.tick_s * 5)
        self._server = srv
        self.port = srv.getsockname()[1]
        self.url = f"socket://{host}:{self.port}"
        self.link_up = True
        self._start(self._run_tcp)
        return self.port

    def _start(self, target) -> None:
        self._thread = threading.Thread(target=target, name=f"{type(self).__name__}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the pty or sockets."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2.0)
        self._drop_link()
        for fd in (self._slave,):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._slave = None
        if self._server is not None:
            self._server.close()
            self._server = None

    def run_until_interrupted(self, report: Callable[[], None] | None = None) -> None:
        """Keep serving (for a demo) until Ctrl-C, calling ``report`` every second; then :meth:`close`."""
        try:
            while True:
                time.sleep(1.0)
                if report is not None:
                    report()
        except KeyboardInterrupt:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _run_pty(self) -> None:
        while not self._stop.is_set():
            fd = self._master
            if fd is None:
                self._tick_locked()
                time.sleep(self.tick_s)
                continue
            try:
                ready, _, _ = select.select([fd], [], [], self.tick_s)
                data = os.read(fd, 4096) if ready else b""
            except OSError:
                data = b""
                time.sleep(self.tick_s)
            if data:
                self._feed(data)
            self._tick_locked()

    def _run_tcp(self) -> None:
        while not self._stop.is_set():
            if self._client is None:
                if self._server is None:
                    self._tick_locked()
                    time.sleep(self.tick_s)
                    continue
                try:
                    client, _ = self._server.accept()
                except (TimeoutError, OSError):
                    self._tick_locked()
                    continue
                client.settimeout(self.tick_s)
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with self.lock:
                    self._client = client
                    self._buf.clear()
                    self.on_client_connected()
            try:
                data = self._client.recv(4096)
                if not data:  # the client hung up
                    with self.lock:
                        self._client.close()
                        self._client = None
                        self.on_client_disconnected()
            except TimeoutError:
                data = b""
            except (OSError, AttributeError):
                data = b""
            if data:
                self._feed(data)
            self._tick_locked()

    def _tick_locked(self) -> None:
        with self.lock:
            self.tick(time.monotonic())

    # -- message handling -----------------------------------------------------------
    def _feed(self, data: bytes) -> None:
        with self.lock:
            self._buf += data
            for msg in self.parse(self._buf):
                self.received.append((time.monotonic(), msg))
                self._handle(msg)

    def _take_fault(self, msg: bytes) -> str | None:
        if not self._faults:
            return None
        f = self._faults[0]
        if not msg.startswith(f.match):
            return None
        if f.after > 0:
            f.after -= 1
            return None
        f.count -= 1
        if f.count <= 0:
            self._faults.pop(0)
        return f.kind

    def _handle(self, msg: bytes) -> None:
        fault = self._take_fault(msg)
        if fault is not None:
            self.faults_applied.append((time.monotonic(), fault, msg))
        if fault == "disconnect":
            self._drop_link()
            return
        if fault == "error":
            reply = self.error_reply(msg)
        else:
            reply = self.execute(msg)
            if fault == "no_reply":
                reply = None
            elif fault == "bad_crc" and reply:
                reply = self.corrupt(reply)
        if reply:
            self.send(reply)

    def send(self, data: bytes) -> None:
        """Write ``data`` to the connected client (ignored when the link is down)."""
        with self.lock:
            self.sent.append((time.monotonic(), data))
            try:
                if self._master is not None:
                    os.write(self._master, data)
                elif self._client is not None:
                    self._client.sendall(data)
            except OSError:
                pass

    def _drop_link(self) -> None:
        with self.lock:
            self.link_up = False
            if self._master is not None:
                try:
                    os.close(self._master)
                except OSError:
                    pass
                self._master = None
            if self._client is not None:
                try:
                    self._client.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self._client.close()
                self._client = None
            if self._server is not None:
                self._server.close()
                self._server = None
            self.on_link_dropped()

    # -- fault injection ---------------------------------------------------------------
    def inject(self, kind: str, after: int = 0, count: int = 1, match: bytes = b"") -> None:
        """Apply fault ``kind`` to ``count`` messages, after ``after`` more are handled normally.

        With ``match``, only messages starting with those bytes count (e.g.
        ``b"EH"`` for a Magstim fire).

        ``"no_reply"`` executes the command but sends no reply (the reply is
        lost); ``"bad_crc"`` sends the reply with a corrupted checksum (or a
        garbled status byte); ``"error"`` refuses the command with the
        device's error reply; ``"disconnect"`` drops the link.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; choose from {FAULT_KINDS}")
        with self.lock:
            self._faults.append(_Fault(kind, after, count, bytes(match)))

    # -- for subclasses ----------------------------------------------------------------
    def parse(self, buf: bytearray) -> list[bytes]:
        """Remove complete messages from the front of ``buf`` and return them."""
        raise NotImplementedError

    def execute(self, msg: bytes) -> bytes | None:
        """Carry out ``msg`` and return the reply (None: no reply)."""
        raise NotImplementedError

    def error_reply(self, msg: bytes) -> bytes | None:
        """Return the device's refusal of ``msg`` (the command is not carried out)."""
        raise NotImplementedError

    def corrupt(self, reply: bytes) -> bytes:
        """``reply`` with a wrong checksum."""
        return reply[:-1] + bytes([(reply[-1] + 1) & 0xFF])

    def tick(self, now: float) -> None:
        """Advance time-driven state (called every ``tick_s`` under the lock)."""

    def on_client_connected(self) -> None:
        """Note that a client connected (a device subclass may react)."""

    def on_client_disconnected(self) -> None:
        """React as the device does when its client goes away (default: nothing)."""

    def on_link_dropped(self) -> None:
        """React as the device does when the link drops (default: nothing)."""


def serial_demo_parser(description: str) -> argparse.ArgumentParser:
    """Command line of a serial-port emulator: a pseudo-terminal, or ``--tcp PORT``."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--tcp", type=int, default=None, help="serve socket://127.0.0.1:PORT instead of a pty")
    return ap


def serve_serial_demo(emu: StreamEmulator, label: str, tcp: int | None) -> None:
    """Serve ``emu`` on a pseudo-terminal (or 127.0.0.1:``tcp``), say which port to use, run until Ctrl-C."""
    if tcp is not None:
        emu.serve_tcp(port=tcp)
    else:
        emu.open_pty()
    print(f"{label} emulator: set adapter_options.port = {emu.url!r} (Ctrl-C to stop)", flush=True)
    emu.run_until_interrupted()
