"""Byte links to a stimulator: a serial line (pyserial) or a TCP socket.

Both expose the same small interface: ``write``, ``read_exact`` (every read
has a timeout), ``drain`` and ``close``. Failures become exceptions the adapters
act on: :class:`ReplyTimeout` (nothing, or too little, came back in time) and
:class:`GarbledReply` (bad checksum or framing) may be retried where a retry is
safe; :class:`ErrorReply` (the device refused) and :class:`LinkLost` (the
cable, port or connection is gone) drive the device safe and are reported. Every byte sent and received goes to the
adapter's :class:`~closedloop.adapters.iolog.IOLog`.
"""

from __future__ import annotations

import socket
import time

try:  # pyserial raises termios.error (not an OSError) from ioctl/tcdrain on a dead POSIX port
    from termios import error as _TermiosError
except ImportError:  # Windows

    class _TermiosError(Exception):
        pass


from closedloop.adapters.iolog import IOLog


class LinkLost(ConnectionError):
    """The serial port or TCP connection failed or closed."""


class ReplyTimeout(TimeoutError):
    """The device did not send the expected bytes in time."""

    def __init__(self, message: str, partial: bytes = b"") -> None:
        super().__init__(message)
        self.partial = partial


class GarbledReply(ValueError):
    """A reply arrived but is malformed: bad checksum, bad framing, wrong echo."""


class ErrorReply(RuntimeError):
    """The device understood the command and refused it (an error code in its reply)."""


class _LoggedLink:
    """What both links share: every byte sent, and every batch received, goes to the I/O log."""

    def __init__(self, url: str, timeout_s: float, log: IOLog) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.log = log
        self._rx = bytearray()

    def flush_rx(self, note: str = "") -> None:
        """Log the bytes received since the last call as one ``rx`` record."""
        if self._rx:
            self.log.add("rx", bytes(self._rx), note)
            self._rx.clear()

    def _log_tx(self, data: bytes, note: str) -> None:
        """Log what is about to be sent (after the reply bytes received so far)."""
        self.flush_rx()
        self.log.add("tx", data, note)


class SerialLink(_LoggedLink):
    """A serial line opened with pyserial (a device path or a pyserial URL).

    Parameters
    ----------
    url : str
        ``/dev/ttyUSB0``, ``COM3``, a pseudo-terminal, or a pyserial URL such as
        ``socket://127.0.0.1:5000`` or ``loop://``.
    baudrate : int
        Line speed (8 data bits, no parity, 1 stop bit).
    timeout_s : float
        Default read and write timeout.
    log : IOLog
        Where every byte goes.
    """

    def __init__(self, url: str, baudrate: int, timeout_s: float, log: IOLog) -> None:
        try:
            import serial
        except ImportError as e:  # an optional dependency
            raise ImportError("serial adapters need pyserial: pip install 'closedloop[serial]'") from e

        super().__init__(url, timeout_s, log)
        self._serial_mod = serial
        self._errors = (serial.SerialException, OSError, _TermiosError)
        try:
            self.port = serial.serial_for_url(
                url, baudrate=baudrate, bytesize=8, parity="N", stopbits=1, timeout=timeout_s, write_timeout=timeout_s
            )
        except (serial.SerialException, OSError, _TermiosError, ValueError) as e:
            raise LinkLost(f"cannot open serial port {url!r}: {e}") from e
        log.add("event", note=f"opened {url} at {baudrate} baud")

    def write(self, data: bytes, note: str = "") -> None:
        """Write ``data`` to the link."""
        self._log_tx(data, note)
        try:
            self.port.write(data)
            self.port.flush()
        except self._errors as e:
            raise LinkLost(f"write to {self.url} failed: {e}") from e

    def read_exact(self, n: int, timeout_s: float | None = None, note: str = "") -> bytes:
        """Read exactly ``n`` bytes or raise :class:`ReplyTimeout` / :class:`LinkLost`."""
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        buf = bytearray()
        try:
            while len(buf) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.port.timeout = left
                chunk = self.port.read(n - len(buf))
                buf += chunk
                self._rx += chunk
        except self._errors as e:
            self.flush_rx(f"{note} (then the link failed)")
            raise LinkLost(f"read from {self.url} failed: {e}") from e
        if len(buf) < n:
            raise ReplyTimeout(f"{self.url}: {len(buf)} of {n} bytes in time", bytes(buf))
        return bytes(buf)

    def drain(self) -> bytes:
        """Discard (and log) whatever is waiting in the input buffer."""
        self.flush_rx()
        try:
            waiting = self.port.in_waiting
            data = self.port.read(waiting) if waiting else b""
        except self._errors as e:
            raise LinkLost(f"read from {self.url} failed: {e}") from e
        if data:
            self.log.add("rx", data, "stale bytes discarded")
        return data

    def set_lines(self, rts: bool | None = None, dtr: bool | None = None) -> None:
        """Drive the RTS and/or DTR modem-control lines (TTL triggers)."""
        try:
            if rts is not None:
                self.port.rts = rts
            if dtr is not None:
                self.port.dtr = dtr
        except self._errors as e:
            raise LinkLost(f"cannot set modem lines on {self.url}: {e}") from e

    def close(self) -> None:
        """Close the link."""
        try:
            self.port.close()
        except Exception:  # noqa: BLE001 - closing a dead port must not raise
            pass
        self.log.add("event", note=f"closed {self.url}")


class TcpLink(_LoggedLink):
    """A TCP client connection with timeouts on connect, read and write.

    Parameters
    ----------
    host, port : str, int
        Server address.
    timeout_s : float
        Connect, read and write timeout.
    log : IOLog
        Where every byte goes.
    """

    def __init__(self, host: str, port: int, timeout_s: float, log: IOLog) -> None:
        super().__init__(f"tcp://{host}:{port}", timeout_s, log)
        self.host, self.port_no = host, int(port)
        try:
            self.sock = socket.create_connection((host, self.port_no), timeout=timeout_s)
        except OSError as e:
            raise LinkLost(f"cannot connect to {self.url}: {e}") from e
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        log.add("event", note=f"connected to {self.url}")

    def write(self, data: bytes, note: str = "") -> None:
        """Write ``data`` to the link."""
        self._log_tx(data, note)
        try:
            self.sock.settimeout(self.timeout_s)
            self.sock.sendall(data)
        except OSError as e:
            raise LinkLost(f"send to {self.url} failed: {e}") from e

    def read_exact(self, n: int, timeout_s: float | None = None, note: str = "") -> bytes:
        """Read exactly ``n`` bytes or raise on timeout."""
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        buf = bytearray()
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                self.sock.settimeout(left)
                chunk = self.sock.recv(n - len(buf))
            except TimeoutError:
                break
            except OSError as e:
                self.flush_rx(f"{note} (then the link failed)")
                raise LinkLost(f"receive from {self.url} failed: {e}") from e
            if not chunk:
                self.flush_rx(f"{note} (then the connection closed)")
                raise LinkLost(f"{self.url} closed the connection")
            buf += chunk
            self._rx += chunk
        if len(buf) < n:
            raise ReplyTimeout(f"{self.url}: {len(buf)} of {n} bytes in time", bytes(buf))
        return bytes(buf)

    def drain(self) -> bytes:
        """Discard (and log) whatever has arrived and not been read."""
        self.flush_rx()
        data = bytearray()
        try:
            self.sock.setblocking(False)
            while True:
                chunk = self.sock.recv(4096)
                if not chunk:
                    raise LinkLost(f"{self.url} closed the connection")
                data += chunk
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as e:
            raise LinkLost(f"receive from {self.url} failed: {e}") from e
        finally:
            try:
                self.sock.setblocking(True)
            except OSError:
                pass
        if data:
            self.log.add("rx", bytes(data), "stale bytes discarded")
        return bytes(data)

    def close(self) -> None:
        """Close the link."""
        try:
            self.sock.close()
        except OSError:
            pass
        self.log.add("event", note=f"closed {self.url}")
