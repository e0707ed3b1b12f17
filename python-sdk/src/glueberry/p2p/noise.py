"""libp2p Noise: the XX handshake and the framed transport, as a sans-I/O core.

Specs: libp2p/specs ``noise/README.md`` (r4) and the Noise Protocol Framework, revision 34
(§5 processing rules, §7.5 the XX pattern, §12 the 25519/ChaChaPoly/SHA256 functions).

Wire format: every Noise message, handshake or transport, is ``u16 big-endian length ‖ message``
and a message is at most 65535 bytes, so a transport record carries at most 65519 plaintext bytes.

.. code-block:: text

    -> e                  msg1, empty payload
    <- e, ee, s, es       msg2, the responder's NoiseHandshakePayload
    -> s, se              msg3, the initiator's NoiseHandshakePayload; then Split()

Theory of operation
-------------------
:class:`NoiseProtocol` frames the messages, runs the handshake as a generator parser that reads
one framed message at a time, then encrypts and decrypts transport records with one AEAD per
direction. The handshake's cryptography is :class:`~glueberry.p2p.noise_handshake.XXHandshake`
(pure Noise, ``noise_handshake.py``); what the payloads say, the libp2p identity proof, is
``noise_payload.py``: an Ed25519 signature over ``noise-libp2p-static-key:`` ‖ the sender's X25519
static key. The caller signs beforehand (the signer may be remote and asynchronous) and hands the
finished signature to :class:`NoiseProtocol`. Once the handshake completes the core keeps only the
two transport ciphers and their nonces. This module is the layer's public face: every name the
rest of the code uses is importable from here.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, NoReturn, TypeAlias

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .._reader import Parser, StreamReader
from ..exceptions import (
    ConnectionClosed,
    InvalidArgument,
    InvalidState,
    LocalProtocolError,
    NoiseDecryptError,
    RemoteProtocolError,
)
from .keys import PeerID
from .noise_handshake import (
    MSG2_MIN,
    MSG3_MIN,
    PROTOCOL_NAME,
    TAG_SIZE,
    XXHandshake,
    generate_static_key,
    pack_nonce,
)
from .noise_payload import authenticate, check_identity_signature, encode_payload, noise_signature_payload

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
MAX_MESSAGE_SIZE: Final = 65535
MAX_PLAINTEXT_SIZE: Final = MAX_MESSAGE_SIZE - TAG_SIZE
_MAX_NONCE = 2**64 - 1  # Noise §5.1: reserved, never used to encrypt

_u16 = struct.Struct(">H")


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
        "_eof",
        "_events",
        "_expected_peer",
        "_hs",
        "_in",
        "_initiator",
        "_out",
        "_parser",
        "_reader",
        "_recv",
        "_recv_n",
        "_remote_peer_id",
        "_send",
        "_send_n",
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
        identity_key = bytes(identity_key)
        identity_signature = bytes(identity_signature)
        payload = encode_payload(identity_key, identity_signature, stream_muxers)
        hs = XXHandshake(static_key, payload)
        if not signature_checked:
            check_identity_signature(identity_key, identity_signature, hs.static_public_key)
        overhead = MSG3_MIN if initiator else MSG2_MIN
        if len(payload) + overhead > MAX_MESSAGE_SIZE:
            raise LocalProtocolError(
                f"the Noise handshake payload is {len(payload)} bytes: it does not fit in one "
                f"{MAX_MESSAGE_SIZE}-byte message"
            )
        self._expected_peer = expected_peer
        self._remote_peer_id: PeerID | None = None
        self._hs: XXHandshake | None = hs  # None once the transport keys are split off
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
            self._queue_message(hs.write_msg1())
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
                ciphertext = self._send.encrypt(pack_nonce(n), data, None)  # type: ignore[union-attr]
                self._out.append(_u16.pack(len(ciphertext)) + ciphertext)
                self._send_n = n + 1
            return
        if n + -(-size // MAX_PLAINTEXT_SIZE) > _MAX_NONCE:
            self._nonce_exhausted()
        encrypt = self._send.encrypt  # type: ignore[union-attr]
        out = self._out
        view = memoryview(data).cast("B")
        for start in range(0, size, MAX_PLAINTEXT_SIZE):
            ciphertext = encrypt(pack_nonce(n), view[start : start + MAX_PLAINTEXT_SIZE], None)
            out.append(_u16.pack(len(ciphertext)) + ciphertext)
            n += 1
        self._send_n = n

    def _nonce_exhausted(self) -> NoReturn:
        # Noise §5.1: nonce 2**64-1 is reserved; the spec says to end the connection instead.
        self._state = _FAILED
        raise LocalProtocolError("the Noise send nonce is exhausted: the connection must be closed")

    # --- handshake (Noise §5.3, pattern XX) ------------------------------------------------------

    def _handshake(self) -> Parser[None]:
        hs = self._hs
        assert hs is not None
        if self._initiator:
            msg2 = yield from self._read_message()
            completed = self._authenticate(*hs.read_msg2(msg2))
            self._queue_message(hs.write_msg3())
        else:
            msg1 = yield from self._read_message()
            hs.read_msg1(msg1)
            self._queue_message(hs.write_msg2())
            msg3 = yield from self._read_message()
            completed = self._authenticate(*hs.read_msg3(msg3))
        self._start_transport(hs)
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

    def _authenticate(self, remote_static: bytes, payload: bytes) -> HandshakeCompleted:
        peer_id, identity_key, muxers = authenticate(payload, remote_static, self._expected_peer)
        self._remote_peer_id = peer_id
        return HandshakeCompleted(peer_id, identity_key, remote_static, muxers)

    def _start_transport(self, hs: XXHandshake) -> None:
        k1, k2 = hs.split()
        send, recv = (k1, k2) if self._initiator else (k2, k1)
        self._send = ChaCha20Poly1305(send)
        self._recv = ChaCha20Poly1305(recv)
        self._hs = None  # drop what the handshake no longer needs, ephemeral secrets included

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
                            plaintext = decrypt(pack_nonce(n), record[2:], None)
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
                plaintext = decrypt(pack_nonce(n), view[pos + 2 : stop], None)
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
