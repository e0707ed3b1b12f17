"""The Glueberry wire layer, sans-I/O: framing (PROTOCOL.md §6) and stream encryption (§8).

A message on the handshake stream is ``encode_frame(payload)``; on a named stream it is
``encode_frame(cipher.encrypt(plaintext))``. Received bytes go through a :class:`FrameDecoder`;
each :class:`Frame` payload is handshake data as is, or an encrypted frame for
:meth:`StreamCipher.decrypt`.
"""

from __future__ import annotations

from .cipher import (
    HKDF_INFO,
    KEY_SIZE,
    NONCE_SIZE,
    OVERHEAD,
    TAG_SIZE,
    StreamCipher,
    derive_stream_key,
    ed25519_private_to_x25519,
    ed25519_public_to_x25519,
    shared_key,
    x25519_shared_secret,
)
from .framing import (
    GO_MAX_FRAME_SIZE,
    EndOfStream,
    Frame,
    FrameDecoder,
    FrameEvent,
    encode_frame,
    frame_header,
    outer_length,
)

__all__ = [
    "GO_MAX_FRAME_SIZE",
    "HKDF_INFO",
    "KEY_SIZE",
    "NONCE_SIZE",
    "OVERHEAD",
    "TAG_SIZE",
    "EndOfStream",
    "Frame",
    "FrameDecoder",
    "FrameEvent",
    "StreamCipher",
    "derive_stream_key",
    "ed25519_private_to_x25519",
    "ed25519_public_to_x25519",
    "encode_frame",
    "frame_header",
    "outer_length",
    "shared_key",
    "x25519_shared_secret",
]
