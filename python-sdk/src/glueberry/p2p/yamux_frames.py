"""The yamux frame format: header layout, frame types, flags and the codes frames carry.

Spec: hashicorp/yamux ``spec.md`` ("Framing"); the codes as go-yamux v5.0.1 and go-libp2p v0.46
use them (PROTOCOL.md §2.2).

Every frame starts with a 12-byte big-endian header::

    version u8 | type u8 | flags u16 | stream id u32 | length u32

``length`` is the payload size of a Data frame (the payload follows the header), the window
increment of a WindowUpdate (an error code when it carries RST, as go-yamux v5 sends it), the
opaque value of a Ping and the error code of a GoAway. Version is always 0.

There is no frame object: the session packs headers with :func:`pack_header` straight into its
output and parses them with :func:`unpack_header` at an offset in the input chunk, the cheapest
shapes in CPython for the per-frame hot path.
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = [
    "HEADER_SIZE",
    "TYPE_DATA",
    "TYPE_WINDOW_UPDATE",
    "TYPE_PING",
    "TYPE_GO_AWAY",
    "FLAG_SYN",
    "FLAG_ACK",
    "FLAG_FIN",
    "FLAG_RST",
    "GO_AWAY_NORMAL",
    "GO_AWAY_PROTOCOL_ERROR",
    "GO_AWAY_INTERNAL_ERROR",
    "RESET_RESOURCE_LIMIT",
    "RESET_PROTOCOL_VIOLATION",
    "U32_MAX",
    "pack_header",
    "unpack_header",
]

HEADER_SIZE: Final = 12
TYPE_DATA, TYPE_WINDOW_UPDATE, TYPE_PING, TYPE_GO_AWAY = 0, 1, 2, 3
FLAG_SYN, FLAG_ACK, FLAG_FIN, FLAG_RST = 1, 2, 4, 8
GO_AWAY_NORMAL, GO_AWAY_PROTOCOL_ERROR, GO_AWAY_INTERNAL_ERROR = 0, 1, 2
# go-libp2p StreamErrorCode values carried in our RST frames (``LP:core/network/mux.go``).
RESET_RESOURCE_LIMIT: Final = 0x1002
RESET_PROTOCOL_VIOLATION: Final = 0x1004

U32_MAX: Final = 0xFFFFFFFF  # stream ids, windows, codes and opaque values are u32

_HEADER = struct.Struct(">BBHII")
# pack_header(version, type, flags, stream_id, length) -> the 12 header bytes
pack_header = _HEADER.pack
# unpack_header(buffer, offset) -> (version, type, flags, stream_id, length)
unpack_header = _HEADER.unpack_from
