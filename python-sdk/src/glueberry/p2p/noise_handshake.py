"""The Noise XX handshake over 25519, ChaChaPoly and SHA256, as the Noise Protocol Framework says.

Spec: the Noise Protocol Framework, revision 34: §4 (crypto functions, HKDF), §5 (CipherState,
SymmetricState, HandshakeState), §7.5 (the XX pattern), §12 (25519, ChaChaPoly, SHA256).

.. code-block:: text

    -> e                  msg1
    <- e, ee, s, es       msg2, carries the responder's payload
    -> s, se              msg3, carries the initiator's payload; then Split()

Theory of operation
-------------------
:class:`XXHandshake` is the HandshakeState of pattern XX with an empty prologue, and no more than
that: it writes and reads the three messages as bytes, without the length prefix that frames them
on the wire (``noise.py``). The caller runs the methods in its role's order (initiator:
``write_msg1``, ``read_msg2``, ``write_msg3``; responder: ``read_msg1``, ``write_msg2``,
``read_msg3``), then calls ``split()`` for the two transport keys. Our payload goes in as finished
bytes and the remote's comes out undecoded: what it says (libp2p's identity proof) is
``noise_payload.py``'s business. The CipherState of §5.1 is folded into :class:`SymmetricState`,
which holds one key at a time during the handshake.
"""

from __future__ import annotations

import struct
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from ..exceptions import HandshakeError, NoiseDecryptError, RemoteProtocolError

__all__ = [
    "DH_SIZE",
    "MSG2_MIN",
    "MSG3_MIN",
    "PROTOCOL_NAME",
    "TAG_SIZE",
    "SymmetricState",
    "XXHandshake",
    "generate_static_key",
    "pack_nonce",
]

PROTOCOL_NAME: Final = b"Noise_XX_25519_ChaChaPoly_SHA256"  # exactly HASHLEN bytes: h = name, no hashing
TAG_SIZE: Final = 16
DH_SIZE: Final = 32
MSG2_MIN: Final = DH_SIZE + DH_SIZE + TAG_SIZE + TAG_SIZE  # e, encrypted s, encrypted payload
MSG3_MIN: Final = DH_SIZE + TAG_SIZE + TAG_SIZE  # encrypted s, encrypted payload

# ChaChaPoly nonce (§12.3): 32 zero bits ‖ 64-bit little-endian counter; the transport uses it too.
pack_nonce = struct.Struct("<4xQ").pack
_SHA256 = hashes.SHA256()


def generate_static_key() -> X25519PrivateKey:
    """A fresh Noise static key (the spec allows one per session and advises never storing it)."""
    return X25519PrivateKey.generate()


# --- Noise Protocol Framework §4–§5: hash, HKDF, SymmetricState ------------------------------------


def _hash(data: bytes) -> bytes:
    h = hashes.Hash(_SHA256)
    h.update(data)
    return h.finalize()


def _hmac(key: bytes, data: bytes) -> bytes:
    h = hmac.HMAC(key, _SHA256)
    h.update(data)
    return h.finalize()


def _hkdf2(chaining_key: bytes, ikm: bytes) -> tuple[bytes, bytes]:
    """Noise §4.3 HKDF with two outputs."""
    temp_key = _hmac(chaining_key, ikm)
    out1 = _hmac(temp_key, b"\x01")
    return out1, _hmac(temp_key, out1 + b"\x02")


def _dh(private: X25519PrivateKey, public: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError as exc:  # a low-order point gives the all-zero secret, which OpenSSL refuses
        raise HandshakeError("the remote sent an invalid X25519 key") from exc


def _public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


class SymmetricState:
    """Noise §5.2 SymmetricState with its CipherState (§5.1) folded in."""

    __slots__ = ("_aead", "_n", "ck", "h")

    def __init__(self) -> None:
        self.h = PROTOCOL_NAME
        self.ck = PROTOCOL_NAME
        self._aead: ChaCha20Poly1305 | None = None
        self._n = 0
        self.mix_hash(b"")  # the empty prologue

    def mix_hash(self, data: bytes) -> None:
        self.h = _hash(self.h + data)

    def mix_key(self, ikm: bytes) -> None:
        self.ck, temp_key = _hkdf2(self.ck, ikm)
        self._aead = ChaCha20Poly1305(temp_key)
        self._n = 0

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        if self._aead is None:
            ciphertext = plaintext
        else:
            ciphertext = self._aead.encrypt(pack_nonce(self._n), plaintext, self.h)
            self._n += 1
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        if self._aead is None:
            plaintext = ciphertext
        else:
            try:
                plaintext = self._aead.decrypt(pack_nonce(self._n), ciphertext, self.h)
            except InvalidTag as exc:
                raise NoiseDecryptError("a Noise handshake message failed authentication") from exc
            self._n += 1
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[bytes, bytes]:
        return _hkdf2(self.ck, b"")


# --- Noise §5.3 HandshakeState, pattern XX (§7.5) ---------------------------------------------------


class XXHandshake:
    """One side's XX HandshakeState: the static key, the ephemeral keys and the SymmetricState.

    ``payload`` is ours, sent encrypted in msg2 (responder) or msg3 (initiator). The ``read_msg2``
    and ``read_msg3`` methods return ``(remote static key, remote payload)``.

    Raises:
        RemoteProtocolError: a message read is too short for its tokens.
        NoiseDecryptError: a message read failed authentication.
        HandshakeError: a remote key is not a usable X25519 key (found at the first DH with it,
            which may be while writing msg2).
    """

    __slots__ = ("_e", "_payload", "_re", "_s", "_ss", "static_public_key")

    def __init__(self, static_key: X25519PrivateKey, payload: bytes) -> None:
        self._s = static_key
        self.static_public_key = _public_bytes(static_key)
        self._payload = payload
        self._ss = SymmetricState()
        self._e: X25519PrivateKey | None = None
        self._re = b""

    def write_msg1(self) -> bytes:  # -> e
        self._e = X25519PrivateKey.generate()
        e_pub = _public_bytes(self._e)
        self._ss.mix_hash(e_pub)
        return e_pub + self._ss.encrypt_and_hash(b"")

    def read_msg1(self, message: bytes) -> None:  # -> e
        if len(message) < DH_SIZE:
            raise RemoteProtocolError(f"Noise message 1 is {len(message)} bytes, shorter than a key")
        self._re = message[:DH_SIZE]
        self._ss.mix_hash(self._re)
        # The payload must be empty; like go-libp2p we hash and ignore whatever is there.
        self._ss.decrypt_and_hash(message[DH_SIZE:])

    def write_msg2(self) -> bytes:  # <- e, ee, s, es
        ss = self._ss
        self._e = X25519PrivateKey.generate()
        e_pub = _public_bytes(self._e)
        ss.mix_hash(e_pub)
        ss.mix_key(_dh(self._e, self._re))
        encrypted_s = ss.encrypt_and_hash(self.static_public_key)
        ss.mix_key(_dh(self._s, self._re))
        return e_pub + encrypted_s + ss.encrypt_and_hash(self._payload)

    def read_msg2(self, message: bytes) -> tuple[bytes, bytes]:  # <- e, ee, s, es
        if len(message) < MSG2_MIN:
            raise RemoteProtocolError(f"Noise message 2 is {len(message)} bytes, shorter than {MSG2_MIN}")
        ss = self._ss
        assert self._e is not None
        self._re = message[:DH_SIZE]
        ss.mix_hash(self._re)
        ss.mix_key(_dh(self._e, self._re))
        rs = ss.decrypt_and_hash(message[DH_SIZE : 2 * DH_SIZE + TAG_SIZE])
        ss.mix_key(_dh(self._e, rs))
        payload = ss.decrypt_and_hash(message[2 * DH_SIZE + TAG_SIZE :])
        return rs, payload

    def write_msg3(self) -> bytes:  # -> s, se
        ss = self._ss
        encrypted_s = ss.encrypt_and_hash(self.static_public_key)
        ss.mix_key(_dh(self._s, self._re))
        return encrypted_s + ss.encrypt_and_hash(self._payload)

    def read_msg3(self, message: bytes) -> tuple[bytes, bytes]:  # -> s, se
        if len(message) < MSG3_MIN:
            raise RemoteProtocolError(f"Noise message 3 is {len(message)} bytes, shorter than {MSG3_MIN}")
        ss = self._ss
        assert self._e is not None
        rs = ss.decrypt_and_hash(message[: DH_SIZE + TAG_SIZE])
        ss.mix_key(_dh(self._e, rs))
        payload = ss.decrypt_and_hash(message[DH_SIZE + TAG_SIZE :])
        return rs, payload

    def split(self) -> tuple[bytes, bytes]:
        """Noise §5.2 Split(): the initiator's sending key, then the responder's."""
        return self._ss.split()
