"""The sliver of protobuf that libp2p needs: varint and length-delimited fields.

libp2p puts three small protobuf messages on the wire here (``PublicKey``, the Noise handshake
payload and identify). Generated protobuf code would be a heavy dependency for that; this module
encodes fields in ascending order (deterministic, as libp2p asks) and decodes with bounds.
"""

from __future__ import annotations

from .._varint import decode_uvarint, encode_uvarint
from ..exceptions import RemoteProtocolError

__all__ = [
    "Fields",
    "decode_fields",
    "encode_bytes_field",
    "encode_varint_field",
    "repeated_bytes",
    "single_bytes",
    "single_int",
]

WIRE_VARINT = 0
WIRE_I64 = 1
WIRE_LEN = 2
WIRE_I32 = 5

# field number -> values in arrival order (int for varints, bytes for length-delimited)
Fields = dict[int, list[int | bytes]]


def encode_varint_field(number: int, value: int) -> bytes:
    return encode_uvarint(number << 3 | WIRE_VARINT) + encode_uvarint(value)


def encode_bytes_field(number: int, value: bytes) -> bytes:
    return encode_uvarint(number << 3 | WIRE_LEN) + encode_uvarint(len(value)) + value


def decode_fields(data: bytes, *, max_fields: int = 256) -> Fields:
    """Decode a message into its fields; unknown fields are kept, fixed-width ones skipped.

    Raises:
        RemoteProtocolError: truncated data, a bad wire type or more than ``max_fields`` fields.
    """
    fields: Fields = {}
    pos = 0
    count = 0
    end = len(data)
    while pos < end:
        count += 1
        if count > max_fields:
            raise RemoteProtocolError(f"protobuf message has more than {max_fields} fields")
        key, pos = decode_uvarint(data, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise RemoteProtocolError("protobuf field number 0")
        value: int | bytes
        if wire_type == WIRE_VARINT:
            value, pos = decode_uvarint(data, pos)
        elif wire_type == WIRE_LEN:
            length, pos = decode_uvarint(data, pos)
            if length > end - pos:
                raise RemoteProtocolError("protobuf field runs past the end of the message")
            value = bytes(data[pos : pos + length])
            pos += length
        elif wire_type in (WIRE_I64, WIRE_I32):
            pos += 8 if wire_type == WIRE_I64 else 4
            if pos > end:
                raise RemoteProtocolError("protobuf field runs past the end of the message")
            continue
        else:
            raise RemoteProtocolError(f"unsupported protobuf wire type {wire_type}")
        fields.setdefault(number, []).append(value)
    return fields


def single_bytes(fields: Fields, number: int, default: bytes | None = None) -> bytes | None:
    """The last value of a bytes field (protobuf: last one wins), or ``default``."""
    values = fields.get(number)
    if not values:
        return default
    value = values[-1]
    if not isinstance(value, bytes):
        raise RemoteProtocolError(f"protobuf field {number} should be length-delimited")
    return value


def single_int(fields: Fields, number: int, default: int | None = None) -> int | None:
    values = fields.get(number)
    if not values:
        return default
    value = values[-1]
    if not isinstance(value, int):
        raise RemoteProtocolError(f"protobuf field {number} should be a varint")
    return value


def repeated_bytes(fields: Fields, number: int) -> list[bytes]:
    out = []
    for value in fields.get(number, []):
        if not isinstance(value, bytes):
            raise RemoteProtocolError(f"protobuf field {number} should be length-delimited")
        out.append(value)
    return out
