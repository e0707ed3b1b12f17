"""Encryption of Glueberry named streams (PROTOCOL.md §8).

* §8.1 key conversion: :func:`ed25519_private_to_x25519`, :func:`ed25519_public_to_x25519`
  (Go ``pkg/crypto/keys.go`` with ``filippo.io/edwards25519`` decoding rules, mirrored exactly).
* §8.2–8.3 key agreement: :func:`shared_key` = HKDF-SHA256(X25519(local, remote)), one static key
  per peer pair for both directions, every stream name and every session.
* §8.4–8.5 frames: :class:`StreamCipher`, ``nonce(12) || ChaCha20-Poly1305 ciphertext || tag(16)``
  with no associated data.

Interop requires keeping Go's weaknesses (§8.6): no forward secrecy, random nonces, no AAD, so
frames can be replayed or moved between streams of the same peer pair. Do not "fix" them here.
"""

from __future__ import annotations

import os
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..exceptions import DecryptionFailed, InvalidArgument, InvalidKey, InvalidState
from ..p2p.keys import private_key_from_bytes

__all__ = [
    "HKDF_INFO",
    "KEY_SIZE",
    "NONCE_SIZE",
    "OVERHEAD",
    "TAG_SIZE",
    "StreamCipher",
    "derive_stream_key",
    "ed25519_private_to_x25519",
    "ed25519_public_to_x25519",
    "shared_key",
    "x25519_shared_secret",
]

KEY_SIZE: Final = 32
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
#: Bytes an encrypted frame adds to its plaintext; also the smallest valid frame.
OVERHEAD: Final = NONCE_SIZE + TAG_SIZE
HKDF_INFO: Final = b"glueberry-v1-stream-key"

_P: Final = 2**255 - 19
_D: Final = (-121665 * pow(121666, -1, _P)) % _P  # edwards25519 curve constant d
_LOW_255_BITS: Final = (1 << 255) - 1


# --------------------------------------------------------------------------------------------
# §8.1 Ed25519 → X25519


def ed25519_private_to_x25519(key: Ed25519PrivateKey | bytes) -> bytes:
    """``clamp(SHA-512(seed)[:32])``, Go's ``Ed25519PrivateToX25519``.

    ``key`` is a ``cryptography`` key, a 32-byte seed or a 64-byte Go ``ed25519.PrivateKey``
    (seed || public; the public half must match, see :func:`glueberry.p2p.keys.private_key_from_bytes`).

    Raises:
        InvalidKey: wrong length or inconsistent 64-byte key.
    """
    if not isinstance(key, Ed25519PrivateKey):
        key = private_key_from_bytes(bytes(key))
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    digest = hashes.Hash(hashes.SHA512())
    digest.update(seed)
    scalar = bytearray(digest.finalize()[:32])
    scalar[0] &= 0xF8
    scalar[31] &= 0x7F
    scalar[31] |= 0x40
    return bytes(scalar)


def ed25519_public_to_x25519(public_key: bytes) -> bytes:
    """The Montgomery ``u = (1 + y) / (1 − y)`` of an Ed25519 public key, Go's ``Ed25519PublicToX25519``.

    Decoding follows ``edwards25519.Point.SetBytes`` (§8.1): y is the low 255 bits, reduced mod p
    (non-canonical encodings are accepted); the sign bit does not affect u; the key is rejected
    only when ``(y² − 1) / (d·y² + 1)`` is not a square mod p. ``1/0`` is taken as 0, so the
    identity (y = 1) converts to u = 0, which :func:`shared_key` then rejects as low-order.

    Raises:
        InvalidKey: not 32 bytes, or not the encoding of a curve point.
    """
    if len(public_key) != 32:
        raise InvalidKey(f"Ed25519 public key must be 32 bytes, got {len(public_key)}")
    y = (int.from_bytes(public_key, "little") & _LOW_255_BITS) % _P
    y2 = y * y % _P
    # x² = (y² − 1) / (d·y² + 1); the denominator is never 0 because −1/d is not a square.
    x2 = (y2 - 1) * pow((_D * y2 + 1) % _P, _P - 2, _P) % _P
    if x2 and pow(x2, (_P - 1) // 2, _P) != 1:  # Euler's criterion
        raise InvalidKey("invalid Ed25519 public key: not a point on the curve")
    u = (1 + y) * pow((1 - y) % _P, _P - 2, _P) % _P  # pow(0, p−2, p) == 0, as Go's Invert(0)
    return u.to_bytes(32, "little")


# --------------------------------------------------------------------------------------------
# §8.2–8.3 key agreement


def x25519_shared_secret(x25519_private: bytes, x25519_public: bytes) -> bytes:
    """Raw ``X25519(private, public)`` (RFC 7748); never use it directly as a key.

    Raises:
        InvalidKey: a key of the wrong length, or a low-order public key (all-zero result),
            which Go also rejects.
    """
    if len(x25519_private) != 32 or len(x25519_public) != 32:
        raise InvalidKey("X25519 keys must be 32 bytes")
    private = X25519PrivateKey.from_private_bytes(x25519_private)
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(x25519_public))
    except ValueError as exc:  # cryptography refuses an all-zero shared secret
        raise InvalidKey("remote key is a low-order point (X25519 result is all zero)") from exc


def derive_stream_key(shared_secret: bytes) -> bytes:
    """HKDF-SHA256(IKM = shared secret, salt = none (32 zero bytes), info = :data:`HKDF_INFO`, L = 32)."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=HKDF_INFO).derive(shared_secret)


def shared_key(local_private: Ed25519PrivateKey | bytes, remote_public: bytes) -> bytes:
    """The stream key Go's ``PrepareStreams`` derives for this peer pair (§8.2–8.3).

    ``local_private`` as for :func:`ed25519_private_to_x25519`; ``remote_public`` is the remote's
    raw 32-byte Ed25519 public key. Both peers get the same key.

    Raises:
        InvalidKey: the remote key is not 32 bytes, not a curve point, or low-order.
    """
    u = ed25519_public_to_x25519(remote_public)
    return derive_stream_key(x25519_shared_secret(ed25519_private_to_x25519(local_private), u))


# --------------------------------------------------------------------------------------------
# §8.4–8.5 frames


class StreamCipher:
    """ChaCha20-Poly1305 with Glueberry's frame layout (§8.4): ``nonce || ciphertext || tag``, no AAD.

    One instance serves both directions and every stream of a peer pair (the key is shared).

    Key hygiene: the key is kept in a ``bytearray`` that :meth:`close` overwrites with zeros.
    That is the only copy this class controls: the ``bytes`` the caller passed in, and the copy
    inside ``cryptography``'s cipher object (freed, not necessarily wiped, when it is garbage
    collected) cannot be wiped from Python. Treat ``close()`` as hygiene, not a guarantee.
    """

    __slots__ = ("_aead", "_key")

    def __init__(self, key: bytes | bytearray) -> None:
        if len(key) != KEY_SIZE:
            raise InvalidKey(f"stream key must be {KEY_SIZE} bytes, got {len(key)}")
        self._key: bytearray | None = bytearray(key)
        self._aead: ChaCha20Poly1305 | None = ChaCha20Poly1305(self._key)

    @property
    def closed(self) -> bool:
        return self._aead is None

    def encrypt(self, plaintext: bytes | bytearray | memoryview, nonce: bytes | None = None) -> bytes:
        """Encrypt one message into a frame (the payload to hand to :func:`..framing.encode_frame`).

        ``nonce`` defaults to 12 fresh random bytes, as Go does; pass one only for tests —
        reusing a nonce with this static key destroys confidentiality.

        Raises:
            InvalidArgument: ``nonce`` is not 12 bytes.
            InvalidState: the cipher is closed.
        """
        aead = self._aead
        if aead is None:
            raise InvalidState("stream cipher is closed")
        if nonce is None:
            nonce = os.urandom(NONCE_SIZE)
        elif len(nonce) != NONCE_SIZE:
            raise InvalidArgument(f"nonce must be {NONCE_SIZE} bytes, got {len(nonce)}")
        return nonce + aead.encrypt(nonce, plaintext, None)

    def decrypt(self, frame: bytes | bytearray | memoryview) -> bytes:
        """Authenticate and decrypt one frame.

        Go drops a frame that fails here and keeps reading the stream (§8.5); do the same.

        Raises:
            DecryptionFailed: the frame is shorter than 28 bytes or its tag does not verify.
            InvalidState: the cipher is closed.
        """
        aead = self._aead
        if aead is None:
            raise InvalidState("stream cipher is closed")
        with memoryview(frame) as raw:  # slices without copying; released before returning
            if raw.nbytes < OVERHEAD:
                raise DecryptionFailed(f"encrypted frame of {raw.nbytes} bytes is shorter than {OVERHEAD}")
            view = raw if raw.format == "B" else raw.cast("B")
            try:
                return aead.decrypt(view[:NONCE_SIZE], view[NONCE_SIZE:], None)
            except InvalidTag:
                raise DecryptionFailed("encrypted frame failed authentication") from None

    def close(self) -> None:
        """Wipe this object's copy of the key and refuse further use (idempotent)."""
        if self._key is not None:
            self._key[:] = bytes(KEY_SIZE)
        self._key = None
        self._aead = None

    def __enter__(self) -> StreamCipher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<StreamCipher {'closed' if self.closed else 'open'}>"
