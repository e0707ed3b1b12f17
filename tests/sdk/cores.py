"""In-memory ConnectionCore sides for the p2p tests: a fresh identity and Noise key each."""

from __future__ import annotations

from collections.abc import Callable

from glueberry.p2p.connection import ConnectionCore
from glueberry.p2p.keys import PeerID, generate_private_key, public_key_bytes
from glueberry.p2p.noise import generate_static_key, noise_signature_payload

Supports = Callable[[str], bool]


def side(
    initiator: bool,
    *,
    expected: PeerID | None = None,
    inline: bool = True,
    supports: Supports | None = None,
) -> tuple[ConnectionCore, PeerID]:
    """One side of a connection and its peer ID (``expected``: the peer the dialler must reach;
    ``supports``: which stream protocols this side accepts)."""
    identity = generate_private_key()
    static = generate_static_key()
    signature = identity.sign(noise_signature_payload(static.public_key().public_bytes_raw()))
    core = ConnectionCore(
        initiator=initiator,
        static_key=static,
        identity_key=public_key_bytes(identity),
        identity_signature=signature,
        expected_peer=expected,
        inline_muxer=inline,
        supports=supports,
    )
    return core, PeerID.from_private_key(identity)
