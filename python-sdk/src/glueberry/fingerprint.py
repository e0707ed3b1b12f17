"""Human-comparable fingerprints of peer IDs, identical to the TypeScript client's ``fingerprint``.

Definition (js-client/src/identity.ts; keep every implementation byte-identical)::

    multihash = base58btc-decode(peer_id)        38 bytes: 00 24 08 01 12 20 ‖ Ed25519 key
    digest    = SHA-256(multihash)[0:10]         80 bits
    text      = RFC 4648 base32 of digest        alphabet A–Z 2–7, uppercase, 16 chars, no '='
    result    = text[0:4] "-" text[4:8] "-" text[8:12] "-" text[12:16]

e.g. peer A of ``tests/vectors/glueberry.json`` → ``F2UZ-4BFX-EJXL-WCMF``. Two people read the
fingerprints of one connection aloud or side by side; 80 bits is far beyond what a brute-forced
look-alike key can match. Only Ed25519 peer IDs (``12D3KooW…``, PROTOCOL.md §2.1) have one.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Final

from .exceptions import InvalidPeerID
from .p2p.keys import ED25519_MULTIHASH_PREFIX, PeerID

__all__ = ["ED25519_MULTIHASH_PREFIX", "fingerprint"]
_DIGEST_BYTES: Final = 10  # 80 bits: 16 base32 characters, no padding


def fingerprint(peer_id: PeerID | str) -> str:
    """The ``XXXX-XXXX-XXXX-XXXX`` fingerprint of an Ed25519 peer ID (a :class:`PeerID` or its string).

    Raises:
        InvalidPeerID: not a peer ID, or not the canonical Ed25519 identity multihash (e.g. a
            ``Qm…`` sha2-256 ID, another key type), exactly where the TypeScript client refuses.
    """
    if isinstance(peer_id, str):
        peer_id = PeerID.from_string(peer_id)
    elif not isinstance(peer_id, PeerID):
        raise InvalidPeerID(f"not a peer ID: {type(peer_id).__name__}")
    if peer_id.ed25519_key() is None:
        raise InvalidPeerID(f"not an Ed25519 (12D3KooW…) peer ID: {peer_id}")
    text = base64.b32encode(hashlib.sha256(peer_id.multihash).digest()[:_DIGEST_BYTES]).decode("ascii")
    return "-".join(text[i : i + 4] for i in range(0, 16, 4))
