"""libp2p Noise: the XX handshake and the framed transport, as a sans-I/O core.

Specs: libp2p/specs ``noise/README.md`` (r4) and the Noise Protocol Framework, revision 34
(§5 processing rules, §7.5 the XX pattern, §12 the 25519/ChaChaPoly/SHA256 functions).

Wire format: every Noise message, handshake or transport, is ``u16 big-endian length ‖ message``
and a message is at most 65535 bytes, so a transport record carries at most 65519 plaintext bytes.

.. code-block:: text

    -> e                  msg1, empty payload
    <- e, ee, s, es       msg2, the responder's NoiseHandshakePayload
    -> s, se              msg3, the initiator's NoiseHandshakePayload; then Split()

The payload proves the libp2p identity: an Ed25519 signature over ``noise-libp2p-static-key:`` ‖
the sender's X25519 static key. The caller signs beforehand (the signer may be remote and
asynchronous) and hands the finished signature to :class:`NoiseProtocol`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, NoReturn, TypeAlias

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .._reader import Parser, StreamReader
from ..exceptions import (
    ConnectionClosed,
    HandshakeError,
    InvalidArgument,
    InvalidHandshakePayload,
    InvalidKey,
    InvalidSignature,
    InvalidState,
    LocalProtocolError,
    NoiseDecryptError,
    PeerIDMismatch,
    RemoteProtocolError,
)
from . import _protobuf as pb
from .keys import PeerID, public_key_from_protobuf, public_key_to_protobuf, verify_signature
from .signer import NOISE_SIGNATURE_PREFIX

__all__ = [
    "MAX_MESSAGE_SIZE",
    "MAX_PLAINTEXT_SIZE",
    "PROTOCOL_ID",
    "PROTOCOL_NAME",
    "DataReceived",
    "EOFReceived",
    "HandshakeCompleted",
    "NoiseEvent",
    "NoiseProtocol",
    "check_identity_signature",
    "generate_static_key",
    "noise_signature_payload",
]

PROTOCOL_ID: Final = "/noise"
PROTOCOL_NAME: Final = b"Noise_XX_25519_ChaChaPoly_SHA256"  # exactly HASHLEN bytes: h = name, no hashing
MAX_MESSAGE_SIZE: Final = 65535
TAG_SIZE: Final = 16
MAX_PLAINTEXT_SIZE: Final = MAX_MESSAGE_SIZE - TAG_SIZE
_DH_SIZE = 32
_MSG2_MIN = _DH_SIZE + _DH_SIZE + TAG_SIZE + TAG_SIZE  # e, encrypted s, encrypted payload
_MSG3_MIN = _DH_SIZE + TAG_SIZE + TAG_SIZE  # encrypted s, encrypted payload
_MAX_NONCE = 2**64 - 1  # Noise §5.1: reserved, never used to encrypt
_MAX_PAYLOAD_FIELDS = 1024

_nonce = struct.Struct("<4xQ").pack  # ChaChaPoly nonce: 32 zero bits ‖ 64-bit little-endian counter
_u16 = struct.Struct(">H")
_SHA256 = hashes.SHA256()


def noise_signature_payload(static_public_key: bytes) -> bytes:
    """What the libp2p identity key signs: ``noise-libp2p-static-key:`` ‖ the X25519 static key."""
    if len(static_public_key) != _DH_SIZE:
        raise InvalidKey(f"X25519 public key must be 32 bytes, got {len(static_public_key)}")
    return NOISE_SIGNATURE_PREFIX + bytes(static_public_key)


def check_identity_signature(identity_key: bytes, signature: bytes, static_public_key: bytes) -> None:
    """Raise :class:`LocalProtocolError` unless ``signature`` is ``identity_key``'s signature over
    :func:`noise_signature_payload` of the static public key: our proof must verify before it is
    sent, or the remote rejects the handshake with nothing to say why."""
    payload = noise_signature_payload(static_public_key)
    if not verify_signature(bytes(identity_key), bytes(signature), payload):
        raise LocalProtocolError(
            "the identity signature does not verify: it must be the identity key's signature "
            "over noise_signature_payload(static public key)"
        )


def generate_static_key() -> X25519PrivateKey:
    """A fresh Noise static key (the spec allows one per session and advises never storing it)."""
    return X25519PrivateKey.generate()


@dataclass(frozen=True, slots=True)
class HandshakeCompleted:
    """The remote proved its identity; transport data may flow both ways from now on."""

    remote_peer_id: PeerID
    remote_identity_key: bytes  # raw 32-byte Ed25519 public key
    remote_static_key: bytes  # the remote's 32-byte X25519 Noise static key
    remote_stream_muxers: tuple[str, ...]  # NoiseExtensions.stream_muxers, in the remote's order


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Decrypted transport plaintext: every complete record of one ``receive_data`` call, joined."""

    data: bytes


@dataclass(frozen=True, slots=True)
class EOFReceived:
    """The remote ended its side of the connection at a record boundary."""


NoiseEvent: TypeAlias = HandshakeCompleted | DataReceived | EOFReceived


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


class _SymmetricState:
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
            ciphertext = self._aead.encrypt(_nonce(self._n), plaintext, self.h)
            self._n += 1
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        if self._aead is None:
            plaintext = ciphertext
        else:
            try:
                plaintext = self._aead.decrypt(_nonce(self._n), ciphertext, self.h)
            except InvalidTag as exc:
                raise NoiseDecryptError("a Noise handshake message failed authentication") from exc
            self._n += 1
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[bytes, bytes]:
        return _hkdf2(self.ck, b"")


# --- the libp2p handshake payload (noise/README.md "The libp2p Handshake Payload") ------------------


def _encode_payload(identity_key: bytes, signature: bytes, stream_muxers: Sequence[str]) -> bytes:
    payload = pb.encode_bytes_field(1, public_key_to_protobuf(identity_key))
    payload += pb.encode_bytes_field(2, signature)
    if stream_muxers:
        extensions = b"".join(pb.encode_bytes_field(2, name.encode()) for name in stream_muxers)
        payload += pb.encode_bytes_field(4, extensions)
    return payload


def _decode_payload(data: bytes) -> tuple[bytes, bytes, tuple[str, ...]]:
    """Return (raw Ed25519 identity key, signature, stream muxers); unknown fields are skipped.

    Raises:
        HandshakeError: empty or malformed payload, no identity key, or not an Ed25519 key.
    """
    if not data:
        raise InvalidHandshakePayload("the remote's Noise handshake payload is empty: no identity was sent")
    try:
        fields = pb.decode_fields(data, max_fields=_MAX_PAYLOAD_FIELDS)
        key_proto = pb.single_bytes(fields, 1)
        signature = pb.single_bytes(fields, 2) or b""
        # A repeated occurrence of a message field merges: its repeated fields concatenate.
        muxers: list[str] = []
        for extensions in pb.repeated_bytes(fields, 4):
            ext_fields = pb.decode_fields(extensions, max_fields=_MAX_PAYLOAD_FIELDS)
            for raw in pb.repeated_bytes(ext_fields, 2):
                try:
                    muxers.append(raw.decode())
                except UnicodeDecodeError:
                    continue  # proto2 does not validate strings; a name we cannot read matches nothing
    except RemoteProtocolError as exc:
        raise InvalidHandshakePayload(f"malformed Noise handshake payload: {exc}") from exc
    if not key_proto:
        raise InvalidHandshakePayload("the remote's Noise handshake payload has no identity key")
    try:
        identity_key = public_key_from_protobuf(key_proto)
    except InvalidKey as exc:
        raise InvalidHandshakePayload(f"the remote's identity key is not usable: {exc}") from exc
    return identity_key, signature, tuple(muxers)


# --- the core ------------------------------------------------------------------------------------

_HANDSHAKE = "handshake"
_TRANSPORT = "transport"
_FAILED = "failed"


class NoiseProtocol:
    """One side of a libp2p Noise session (``/noise``): the XX handshake, then framed transport.

    The initiator's first message is queued at construction: call :meth:`data_to_send` and send it.
    Feed every byte from the connection to :meth:`receive_data`, then drain :meth:`events_received`
    and :meth:`data_to_send`. The first event is :class:`HandshakeCompleted`; application bytes are
    sent with :meth:`send_data` once :attr:`handshake_complete` is true.

    Any error raised out of :meth:`receive_data` / :meth:`receive_eof` (other than
    :class:`InvalidState` for a misuse) is fatal: the connection must be closed, and further calls
    raise :class:`InvalidState`. Draining events and output stays allowed.
    """

    __slots__ = (
        "_e",
        "_eof",
        "_events",
        "_expected_peer",
        "_in",
        "_initiator",
        "_out",
        "_parser",
        "_payload",
        "_re",
        "_reader",
        "_recv",
        "_recv_n",
        "_remote_peer_id",
        "_s",
        "_s_pub",
        "_send",
        "_send_n",
        "_ss",
        "_state",
    )

    def __init__(
        self,
        *,
        initiator: bool,
        static_key: X25519PrivateKey,
        identity_key: bytes,
        identity_signature: bytes,
        expected_peer: PeerID | None = None,
        stream_muxers: Sequence[str] = (),
        signature_checked: bool = False,
    ) -> None:
        """Prepare the handshake.

        Args:
            initiator: True on the dialling side (sends msg1 and msg3).
            static_key: the X25519 Noise static key (see :func:`generate_static_key`).
            identity_key: our raw 32-byte Ed25519 identity public key.
            identity_signature: the identity key's signature over
                ``noise_signature_payload(static public key)``.
            expected_peer: the peer ID that was dialled; a remote proving another identity fails.
            stream_muxers: muxer protocol IDs to advertise in NoiseExtensions (none by default, so
                the remote negotiates the muxer with multistream-select).
            signature_checked: the caller already verified ``identity_signature`` (a host checks
                its signature once, not at every connection); otherwise it is checked here.

        Raises:
            InvalidKey: ``identity_key`` is not 32 bytes.
            LocalProtocolError: the signature does not verify, or the payload would not fit in one
                Noise message.

        After construction, as initiator: call data_to_send() and send the bytes.
        """
        if not isinstance(static_key, X25519PrivateKey):
            raise InvalidArgument("static_key must be an X25519PrivateKey")
        if isinstance(stream_muxers, str) or not all(isinstance(m, str) and m for m in stream_muxers):
            raise InvalidArgument("stream_muxers must be a sequence of non-empty protocol IDs")
        self._initiator = initiator
        self._s = static_key
        self._s_pub = _public_bytes(static_key)
        identity_key = bytes(identity_key)
        identity_signature = bytes(identity_signature)
        self._payload = _encode_payload(identity_key, identity_signature, stream_muxers)
        if not signature_checked:
            check_identity_signature(identity_key, identity_signature, self._s_pub)
        overhead = _MSG3_MIN if initiator else _MSG2_MIN
        if len(self._payload) + overhead > MAX_MESSAGE_SIZE:
            raise LocalProtocolError(
                f"the Noise handshake payload is {len(self._payload)} bytes: it does not fit in one "
                f"{MAX_MESSAGE_SIZE}-byte message"
            )
        self._expected_peer = expected_peer
        self._remote_peer_id: PeerID | None = None
        self._ss = _SymmetricState()
        self._e: X25519PrivateKey | None = None
        self._re = b""
        self._state = _HANDSHAKE
        self._eof = False
        self._events: list[NoiseEvent] = []
        self._out: list[bytes] = []
        self._reader = StreamReader()
        # Transport phase: one AEAD per direction, reused for every record.
        self._send: ChaCha20Poly1305 | None = None
        self._recv: ChaCha20Poly1305 | None = None
        self._send_n = 0
        self._recv_n = 0
        self._in = bytearray()  # an incomplete transport record, at most 65536 bytes
        if initiator:
            self._queue_message(self._write_msg1())
        self._parser = self._handshake()
        next(self._parser)  # run to the first read

    # --- public API ------------------------------------------------------------------------------

    @property
    def handshake_complete(self) -> bool:
        """True from the HandshakeCompleted event on, until the session fails."""
        return self._state == _TRANSPORT

    @property
    def remote_peer_id(self) -> PeerID | None:
        """The remote's authenticated peer ID, once the handshake has completed."""
        return self._remote_peer_id

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes received from the connection.

        After calling this method: call events_received() and data_to_send(), send the bytes.

        Raises:
            NoiseDecryptError: a handshake or transport message failed authentication.
            InvalidSignature: the remote's identity signature does not verify.
            PeerIDMismatch: the remote is not ``expected_peer``.
            HandshakeError: an empty or malformed handshake payload, or an unusable remote key.
            RemoteProtocolError: a handshake message of an impossible size.
            InvalidState: the session already failed, or ended with receive_eof().
        """
        if self._state == _FAILED:
            raise InvalidState("the Noise session has failed")
        if self._eof:
            raise InvalidState("receive_data() after receive_eof()")
        try:
            if self._state == _TRANSPORT:
                self._receive_records(data)
            else:
                self._reader.feed_data(data)
                self._advance_handshake()
        except BaseException:
            self._state = _FAILED
            raise

    def receive_eof(self) -> None:
        """The connection's read side ended.

        After calling this method: call events_received() (an :class:`EOFReceived` is queued).

        Raises:
            ConnectionClosed: the connection ended at a message boundary during the handshake.
            RemoteProtocolError: the connection ended inside a Noise message.
        """
        if self._state == _FAILED:
            raise InvalidState("the Noise session has failed")
        if self._eof:
            return
        self._eof = True
        if self._state == _HANDSHAKE:
            self._state = _FAILED
            if len(self._reader):
                raise RemoteProtocolError("the connection ended inside a Noise handshake message")
            raise ConnectionClosed("the connection closed during the Noise handshake")
        if self._in:
            self._state = _FAILED
            raise RemoteProtocolError("the connection ended inside a Noise transport message")
        self._events.append(EOFReceived())

    def events_received(self) -> list[NoiseEvent]:
        """Return and clear the events that happened since the last call."""
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> list[bytes]:
        """Return and clear the framed Noise messages to write to the connection, in order."""
        out, self._out = self._out, []
        return out

    def send_data(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt application bytes into records of at most 65519 plaintext bytes each.

        Sending nothing queues nothing (as go-libp2p does).

        After calling this method: call data_to_send() and send the bytes.

        Raises:
            InvalidState: the handshake has not completed, or the session failed.
        """
        if self._state != _TRANSPORT:
            raise InvalidState(
                "the Noise session has failed" if self._state == _FAILED else "the handshake is not complete"
            )
        size = data.nbytes if isinstance(data, memoryview) else len(data)
        n = self._send_n
        if size <= MAX_PLAINTEXT_SIZE:  # the hot path for small messages: one record, no slicing
            if size:
                if n >= _MAX_NONCE:
                    self._nonce_exhausted()
                ciphertext = self._send.encrypt(_nonce(n), data, None)  # type: ignore[union-attr]
                self._out.append(_u16.pack(len(ciphertext)) + ciphertext)
                self._send_n = n + 1
            return
        if n + -(-size // MAX_PLAINTEXT_SIZE) > _MAX_NONCE:
            self._nonce_exhausted()
        encrypt = self._send.encrypt  # type: ignore[union-attr]
        out = self._out
        view = memoryview(data).cast("B")
        for start in range(0, size, MAX_PLAINTEXT_SIZE):
            ciphertext = encrypt(_nonce(n), view[start : start + MAX_PLAINTEXT_SIZE], None)
            out.append(_u16.pack(len(ciphertext)) + ciphertext)
            n += 1
        self._send_n = n

    def _nonce_exhausted(self) -> NoReturn:
        # Noise §5.1: nonce 2**64-1 is reserved; the spec says to end the connection instead.
        self._state = _FAILED
        raise LocalProtocolError("the Noise send nonce is exhausted: the connection must be closed")

    # --- handshake (Noise §5.3, pattern XX) ------------------------------------------------------

    def _handshake(self) -> Parser[None]:
        if self._initiator:
            msg2 = yield from self._read_message()
            completed = self._read_msg2(msg2)
            self._queue_message(self._write_msg3())
        else:
            msg1 = yield from self._read_message()
            self._read_msg1(msg1)
            self._queue_message(self._write_msg2())
            msg3 = yield from self._read_message()
            completed = self._read_msg3(msg3)
        self._start_transport()
        self._events.append(completed)

    def _read_message(self) -> Parser[bytes]:
        header = yield from self._reader.read_exact(2)
        return (yield from self._reader.read_exact(_u16.unpack(header)[0]))

    def _advance_handshake(self) -> None:
        try:
            next(self._parser)
        except StopIteration:
            leftover = bytes(self._reader.buffer)
            self._reader.buffer.clear()
            self._state = _TRANSPORT
            if leftover:  # the initiator often sends its first record with msg3
                self._receive_records(leftover)

    def _queue_message(self, message: bytes) -> None:
        self._out.append(_u16.pack(len(message)) + message)

    def _write_msg1(self) -> bytes:  # -> e
        self._e = X25519PrivateKey.generate()
        e_pub = _public_bytes(self._e)
        self._ss.mix_hash(e_pub)
        return e_pub + self._ss.encrypt_and_hash(b"")

    def _read_msg1(self, message: bytes) -> None:  # -> e
        if len(message) < _DH_SIZE:
            raise RemoteProtocolError(f"Noise message 1 is {len(message)} bytes, shorter than a key")
        self._re = message[:_DH_SIZE]
        self._ss.mix_hash(self._re)
        # The payload must be empty; like go-libp2p we hash and ignore whatever is there.
        self._ss.decrypt_and_hash(message[_DH_SIZE:])

    def _write_msg2(self) -> bytes:  # <- e, ee, s, es
        ss = self._ss
        self._e = X25519PrivateKey.generate()
        e_pub = _public_bytes(self._e)
        ss.mix_hash(e_pub)
        ss.mix_key(_dh(self._e, self._re))
        encrypted_s = ss.encrypt_and_hash(self._s_pub)
        ss.mix_key(_dh(self._s, self._re))
        return e_pub + encrypted_s + ss.encrypt_and_hash(self._payload)

    def _read_msg2(self, message: bytes) -> HandshakeCompleted:  # <- e, ee, s, es
        if len(message) < _MSG2_MIN:
            raise RemoteProtocolError(f"Noise message 2 is {len(message)} bytes, shorter than {_MSG2_MIN}")
        ss = self._ss
        assert self._e is not None
        self._re = message[:_DH_SIZE]
        ss.mix_hash(self._re)
        ss.mix_key(_dh(self._e, self._re))
        rs = ss.decrypt_and_hash(message[_DH_SIZE : 2 * _DH_SIZE + TAG_SIZE])
        ss.mix_key(_dh(self._e, rs))
        payload = ss.decrypt_and_hash(message[2 * _DH_SIZE + TAG_SIZE :])
        return self._authenticate(payload, rs)

    def _write_msg3(self) -> bytes:  # -> s, se
        ss = self._ss
        encrypted_s = ss.encrypt_and_hash(self._s_pub)
        ss.mix_key(_dh(self._s, self._re))
        return encrypted_s + ss.encrypt_and_hash(self._payload)

    def _read_msg3(self, message: bytes) -> HandshakeCompleted:  # -> s, se
        if len(message) < _MSG3_MIN:
            raise RemoteProtocolError(f"Noise message 3 is {len(message)} bytes, shorter than {_MSG3_MIN}")
        ss = self._ss
        assert self._e is not None
        rs = ss.decrypt_and_hash(message[: _DH_SIZE + TAG_SIZE])
        ss.mix_key(_dh(self._e, rs))
        payload = ss.decrypt_and_hash(message[_DH_SIZE + TAG_SIZE :])
        return self._authenticate(payload, rs)

    def _authenticate(self, payload: bytes, remote_static: bytes) -> HandshakeCompleted:
        """noise/README.md "Static Key Authentication": the identity key signs the static key."""
        identity_key, signature, muxers = _decode_payload(payload)
        peer_id = PeerID.from_public_key(identity_key)
        if not verify_signature(identity_key, signature, noise_signature_payload(remote_static)):
            raise InvalidSignature(
                "the remote's identity signature over its Noise static key does not verify",
                peer_id=str(peer_id),
            )
        if self._expected_peer is not None and peer_id != self._expected_peer:
            raise PeerIDMismatch(
                f"dialled {self._expected_peer} but the remote proved {peer_id}",
                peer_id=str(self._expected_peer),
            )
        self._remote_peer_id = peer_id
        return HandshakeCompleted(peer_id, identity_key, remote_static, muxers)

    def _start_transport(self) -> None:
        k1, k2 = self._ss.split()
        send, recv = (k1, k2) if self._initiator else (k2, k1)
        self._send = ChaCha20Poly1305(send)
        self._recv = ChaCha20Poly1305(recv)
        # Drop what the handshake no longer needs, ephemeral secrets first.
        self._e = None
        self._ss = _SymmetricState()
        self._payload = b""

    # --- transport -------------------------------------------------------------------------------

    def _receive_records(self, data: bytes | bytearray | memoryview) -> None:
        """Decrypt every complete record; keep an incomplete tail (< 65537 bytes) for the next call.

        Records are decrypted in place from the caller's buffer: only a record split across calls
        is copied (into ``_in``), so bulk data is copied by the AEAD and, when several records are
        joined into one event, once more. Plaintext of records that authenticated before a failure
        is still queued.
        """
        view = memoryview(data)
        if view.itemsize != 1 or view.ndim != 1:
            view = view.cast("B")
        pending = self._in
        decrypt = self._recv.decrypt  # type: ignore[union-attr]
        n = self._recv_n
        pos = 0
        end = len(view)
        chunks: list[bytes] = []
        try:
            if pending:  # finish the record begun in an earlier call, copying only its missing bytes
                if len(pending) < 2:
                    pos = min(2 - len(pending), end)
                    pending += view[:pos]
                if len(pending) >= 2:
                    missing = 2 + (pending[0] << 8 | pending[1]) - len(pending)
                    take = min(missing, end - pos)
                    pending += view[pos : pos + take]
                    pos += take
                    if take == missing:
                        if n >= _MAX_NONCE:
                            raise RemoteProtocolError("the Noise receive nonce is exhausted")
                        with memoryview(pending) as record:
                            plaintext = decrypt(_nonce(n), record[2:], None)
                        n += 1
                        if plaintext:
                            chunks.append(plaintext)
                        pending.clear()
                if pending:
                    return
            while end - pos >= 2:
                stop = pos + 2 + (view[pos] << 8 | view[pos + 1])
                if stop > end:
                    break
                if n >= _MAX_NONCE:
                    raise RemoteProtocolError("the Noise receive nonce is exhausted")
                plaintext = decrypt(_nonce(n), view[pos + 2 : stop], None)
                n += 1
                if plaintext:
                    chunks.append(plaintext)
                pos = stop
            if pos < end:
                pending += view[pos:]
        except InvalidTag as exc:
            raise NoiseDecryptError(f"Noise transport message {n} failed authentication") from exc
        finally:
            self._recv_n = n
            if chunks:
                self._events.append(DataReceived(chunks[0] if len(chunks) == 1 else b"".join(chunks)))
            view.release()  # let the caller reuse its buffer even if a traceback holds this frame
