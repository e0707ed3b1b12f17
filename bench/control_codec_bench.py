"""Control messages of the gateway protocol: JSON (orjson) against a compact binary encoding of the
same fields, encode + decode per message. This is the measurement behind the choice of JSON for
control messages (docs/gateway-protocol.md §2); data frames are binary either way.

    .venv/bin/python bench/control_codec_bench.py
"""

from __future__ import annotations

import os
import struct
import timeit

from glueberry.p2p.keys import PeerID, generate_private_key
from glueberry_gateway.protocol import control

SIGNATURE = os.urandom(64)
PAYLOAD = os.urandom(56)
BACKEND = PeerID.from_private_key(generate_private_key())


def json_round_trip() -> None:
    # the messages of one session open, typed both ways: open, sign, signature, opened
    control.decode_client_message(control.encode(control.Open(7, 1, "chat")))
    control.decode_server_message(control.encode(control.Sign(3, 1, PAYLOAD)))
    control.decode_client_message(control.encode(control.Signature(3, SIGNATURE)))
    control.decode_server_message(control.encode(control.Opened(7, 1, "chat", BACKEND)))


_OPEN = struct.Struct(">BIHB")
_SIGN = struct.Struct(">BIH")


def binary_round_trip() -> None:
    name = b"chat"
    data = _OPEN.pack(2, 7, 1, len(name)) + name
    _kind, _rid, _session, n = _OPEN.unpack_from(data)
    assert data[_OPEN.size : _OPEN.size + n] == name
    data = _SIGN.pack(3, 3, 1) + PAYLOAD
    _SIGN.unpack_from(data)
    assert len(data[_SIGN.size :]) == 56
    data = struct.pack(">BI", 4, 3) + SIGNATURE
    struct.unpack_from(">BI", data)
    peer = str(BACKEND).encode()
    data = _OPEN.pack(5, 7, 1, len(name)) + name + bytes([len(peer)]) + peer
    _OPEN.unpack_from(data)


def main() -> None:
    n = 20_000
    j = min(timeit.repeat(json_round_trip, number=n, repeat=5)) / n / 4 * 1e6
    b = min(timeit.repeat(binary_round_trip, number=n, repeat=5)) / n / 4 * 1e6
    print(f"JSON (orjson, validated): {j:.2f} us per message; compact binary (unvalidated): {b:.2f} us")
    print(
        f"ratio JSON/binary: {j / b:.1f}x; a session open exchanges 4 control messages: {4 * j:.1f} us of JSON"
    )


if __name__ == "__main__":
    main()
