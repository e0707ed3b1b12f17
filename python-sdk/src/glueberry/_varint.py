"""Unsigned LEB128 varints (multiformats unsigned-varint, protobuf, cramberry)."""

from __future__ import annotations

from .exceptions import RemoteProtocolError

__all__ = ["decode_uvarint", "encode_uvarint"]

_SMALL = [bytes([i]) for i in range(128)]


def encode_uvarint(value: int) -> bytes:
    """Minimal encoding of ``value`` (0 ≤ value < 2**64)."""
    if value < 128:
        if value < 0:
            raise ValueError("uvarint cannot encode a negative number")
        return _SMALL[value]
    if value >= 1 << 64:
        raise ValueError("uvarint cannot encode a number of 2**64 or more")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_uvarint(
    data: bytes | bytearray | memoryview, pos: int = 0, *, minimal: bool = False
) -> tuple[int, int]:
    """Decode one varint from ``data`` at ``pos``; return ``(value, next_pos)``.

    Raises:
        RemoteProtocolError: truncated, longer than 10 bytes, over 64 bits, or (with
            ``minimal``) not minimally encoded.
    """
    value = 0
    shift = 0
    end = len(data)
    for i in range(10):
        if pos >= end:
            raise RemoteProtocolError("truncated varint")
        byte = data[pos]
        pos += 1
        if i == 9 and byte > 1:
            raise RemoteProtocolError("varint overflows 64 bits")
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if minimal and byte == 0 and i > 0:
                raise RemoteProtocolError("varint is not minimally encoded")
            return value, pos
        shift += 7
    raise RemoteProtocolError("varint longer than 10 bytes")
