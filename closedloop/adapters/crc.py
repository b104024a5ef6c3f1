"""Checksums of the stimulator serial protocols (docs/devices.md).

Both are written from the public protocol descriptions, not from any
toolbox's code.
"""

from __future__ import annotations


def magstim_crc(data: bytes) -> int:
    """Magstim checksum: the bitwise complement of the byte sum, low 8 bits.

    Parameters
    ----------
    data : bytes
        Command byte and ASCII data (everything before the checksum).

    Returns
    -------
    int
        ``(~sum(data)) & 0xFF``. For example ``b"Q@"`` gives ``0x6E`` (``"n"``).
    """
    return (~sum(data)) & 0xFF


def _maxim_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8C if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_MAXIM = _maxim_table()


def crc8_maxim(data: bytes) -> int:
    """Dallas/Maxim CRC-8 (polynomial x⁸+x⁵+x⁴+1, reflected, initial value 0).

    The MagVenture MagPro frame checksum over command byte and payload.
    Catalogue check value: ``crc8_maxim(b"123456789") == 0xA1``.
    """
    crc = 0
    for b in data:
        crc = _MAXIM[crc ^ b]
    return crc
