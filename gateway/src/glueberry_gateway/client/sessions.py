"""The sessions of one gateway socket, client side, sans I/O (docs/gateway-protocol.md §5–§6):
their numbers, opening (§5.1, with the browser's signature over the Noise key), closing (§5.4),
the data frames routed to each, and what a resume keeps or ends.

:class:`SessionTable` holds the :class:`~.record.SessionRecord` of each session and answers the
session-level messages of the gateway; the socket's :class:`~.core.ClientProtocol` owns it and
lends it what it needs through :class:`TableHost`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from glueberry.config import HANDSHAKE_STREAM
from glueberry.exceptions import (
    GlueberryError,
    InvalidArgument,
    InvalidPeerID,
    InvalidState,
    InvalidStreamName,
    LimitExceeded,
    MessageTooLarge,
)
from glueberry.p2p.keys import PeerID

from ..protocol import control
from ..protocol.auth import is_noise_payload
from ..protocol.codes import Code
from ..protocol.control import MAX_NAME_CHARS, BackendInfo
from ..protocol.errors import ProtocolViolation
from ..protocol.frames import MAX_SESSION, check_stream_name, decode_data_frame
from .errors import GatewayClosed, GatewayError, SessionClosed
from .events import (
    HandshakeFailed,
    SessionEnded,
    SessionOpened,
    SessionOpenFailed,
    SessionResumed,
    SignatureRefused,
    SignatureSent,
)
from .handshake import HandshakeContext, HandshakeFactory, as_handshake_error, hello_handshake
from .record import RecordHost, SessionBounds, SessionPhase, SessionRecord

__all__ = ["SessionTable", "TableHost"]

#: Sign requests answered per session open (the gateway needs one; a few tolerate retries).
MAX_SIGNATURES_PER_OPEN: Final = 4


class TableHost(RecordHost, Protocol):
    """What the session table needs from its socket's core."""

    @property
    def may_tell_gateway(self) -> bool:
        """Whether the socket is ready and not closing (a ``close`` may be sent)."""
        ...

    def send_control(self, message: control.ClientMessage) -> None: ...

    def request(self, kind: str, session: int) -> int:
        """A new request id (raises LimitExceeded when too many wait)."""
        ...

    def request_room(self) -> bool:
        """Whether one more request may wait."""
        ...


class SessionTable:
    """The sessions of a socket by number (module docstring).

    Args:
        host: the core of the socket.
        identity: the browser's key (it signs Noise payloads and derives stream keys).
        bounds: frame, outbox and holding bounds (the core replaces them when ``ready`` comes).
        max_message_size: the largest plaintext :meth:`send_data` accepts.
        records, next_number: what a resumed socket carries over.
    """

    def __init__(
        self,
        host: TableHost,
        identity: Ed25519PrivateKey,
        public_key: bytes,
        bounds: SessionBounds,
        max_message_size: int,
        *,
        records: Mapping[int, SessionRecord] = {},
        next_number: int = 1,
    ) -> None:
        self.host = host
        self.identity = identity
        self.public_key = public_key
        self.bounds = bounds
        self.max_message_size = max_message_size
        self.backends: tuple[BackendInfo, ...] = ()  # from ready: who a backend name means
        self.records: dict[int, SessionRecord] = dict(records)
        self.ghosts: set[int] = set()  # sessions we ended locally whose close is not confirmed
        self.next_number = next_number

    def get(self, number: int) -> SessionRecord:
        """The live session ``number``. Raises :class:`InvalidState` if there is none."""
        rec = self.records.get(number)
        if rec is None:
            raise InvalidState(f"no open session {number}")
        return rec

    def open_record(self, number: int) -> SessionRecord:
        rec = self.get(number)
        if rec.phase is not SessionPhase.OPEN:
            raise InvalidState(f"session {number} is {rec.phase.value}, not open")
        return rec

    # Actions (the core checked that the socket is ready).

    def open(self, backend: str | PeerID) -> int:
        name = str(backend)
        if not name or len(name) > MAX_NAME_CHARS:
            raise InvalidArgument(f"backend must be a name or peer ID of 1-{MAX_NAME_CHARS} chars")
        number = self._allocate()
        request_id = self.host.request("open", number)
        self.records[number] = SessionRecord(number, name, expected_peer=self._expected_peer(name))
        self.host.send_control(control.Open(request_id, number, name))
        return number

    def close(self, number: int) -> int:
        rec = self.open_record(number)
        rec.phase = SessionPhase.CLOSING
        request_id = self.host.request("close", number)
        self.host.send_control(control.Close(request_id, number))
        return request_id

    def start_handshake(
        self, number: int, streams: list[str] | None, name: str, handshake: HandshakeFactory | None = None
    ) -> None:
        rec = self.get(number)
        if rec.phase is not SessionPhase.OPEN or rec.peer_id is None:
            raise InvalidState(f"session {number} is not open")
        if rec.handshake is not None:
            raise InvalidState(f"the handshake of session {number} was started already")
        for stream in streams or ():
            check_stream_name(stream)
            if stream == HANDSHAKE_STREAM:
                raise InvalidStreamName("'handshake' is reserved for the handshake stream", stream=stream)
        make = handshake if handshake is not None else hello_handshake(name)
        context = HandshakeContext(
            self.identity,
            self.public_key,
            rec.peer_id,
            rec.backend,
            tuple(streams) if streams is not None else None,
        )
        try:
            machine = make(context)
        except Exception as exc:  # the application's factory: the session ends as for a bad handshake
            error = as_handshake_error(exc)
            self._check(rec, error)
            return
        chosen = frozenset(streams) if streams is not None else None
        self._check(rec, rec.start_handshake(machine, chosen, self.host, self.identity, self.bounds))

    def send_data(self, number: int, stream: str, data: bytes | bytearray | memoryview) -> None:
        rec = self.open_record(number)
        check_stream_name(stream)
        if stream == HANDSHAKE_STREAM or (rec.streams is not None and stream not in rec.streams):
            raise InvalidStreamName(f"stream {stream!r} was not prepared on session {number}", stream=stream)
        if rec.cipher is None:
            raise InvalidState(f"session {number} has no stream key yet: run the handshake first")
        size = memoryview(data).nbytes
        if size > self.max_message_size:
            raise MessageTooLarge(f"message of {size} bytes is over {self.max_message_size}", stream=stream)
        self.host.send(rec.frame(stream, rec.cipher.encrypt(data), self.bounds))

    def send_raw(self, number: int, stream: str, payload: bytes | bytearray | memoryview) -> None:
        rec = self.open_record(number)
        check_stream_name(stream)
        self.host.send(rec.frame(stream, bytes(payload), self.bounds))

    def drop(self, number: int) -> None:
        """Forget a session (its key is wiped)."""
        rec = self.records.pop(number)
        if rec.cipher is not None:
            rec.cipher.close()

    def end(
        self, rec: SessionRecord, code: int, message: str, *, tell_gateway: bool, report: bool = True
    ) -> None:
        """End a session we cannot use any more; with ``tell_gateway``, close it at the gateway too."""
        self.drop(rec.number)
        if tell_gateway and self.host.may_tell_gateway and self.host.request_room():
            self.host.send_control(control.Close(self.host.request("close", rec.number), rec.number))
            self.ghosts.add(rec.number)
        if report:
            self.host.emit(SessionEnded(rec.number, code, message))

    # The gateway's messages about sessions.

    def on_opened(self, message: control.Opened, requested: bool) -> None:
        """``opened``; ``requested``: it answers our pending ``open`` of that session."""
        number, peer = message.session, message.peer_id
        rec = self.records.get(number)
        if not requested or rec is None or rec.phase is not SessionPhase.OPENING:
            raise ProtocolViolation(
                Code.PROTOCOL_ERROR, f"opened for session {number} that we are not opening"
            )
        rec.peer_id = peer
        rec.phase = SessionPhase.OPEN
        if rec.expected_peer is not None and peer != rec.expected_peer:
            text = f"gateway opened {peer}, but {rec.backend!r} is {rec.expected_peer}"
            self.end(rec, Code.BACKEND_UNKNOWN, text, tell_gateway=True, report=False)
            self.host.emit(
                SessionOpenFailed(number, GatewayError(Code.BACKEND_UNKNOWN, text, session=number))
            )
            return
        self.host.emit(SessionOpened(number, rec.backend, peer))

    def on_sign(self, message: control.Sign) -> None:
        number, request_id = message.session, message.id
        rec = self.records.get(number)
        reason = ""
        if rec is None or rec.phase is not SessionPhase.OPENING:
            reason = "no session is being opened under that number"
        elif not is_noise_payload(message.payload):
            reason = "not a libp2p Noise static key payload"
        elif rec.signatures >= MAX_SIGNATURES_PER_OPEN:
            reason = "too many sign requests for one open"
        if reason:  # §5.1: the browser's key only ever vouches for a Noise static key
            self.host.send_control(control.SignRefused(request_id))
            self.host.emit(SignatureRefused(number, request_id, reason))
            return
        assert rec is not None
        rec.signatures += 1
        self.host.send_control(control.Signature(request_id, self.identity.sign(message.payload)))
        self.host.emit(SignatureSent(number, request_id))

    def on_closed(self, message: control.Closed) -> bool:
        """``closed``; True if the session was still opening (its pending ``open`` is void)."""
        number = message.session
        self.ghosts.discard(number)
        rec = self.records.get(number)
        if rec is None:
            return False  # already ended here (a race with our own close)
        self.drop(number)
        if rec.phase is SessionPhase.OPENING:
            self.host.emit(
                SessionOpenFailed(number, SessionClosed(message.code, message.message, session=number))
            )
            return True
        self.host.emit(SessionEnded(number, message.code, message.message))
        return False

    def on_request_error(self, kind: str, number: int, error: GatewayError) -> None:
        """An ``error`` answering our ``open`` or ``close`` of session ``number``."""
        rec = self.records.get(number)
        if kind == "open" and rec is not None:
            self.drop(number)
            self.host.emit(SessionOpenFailed(number, error))
        elif kind == "close":
            self.ghosts.discard(number)
            if rec is not None:
                self.drop(number)
                self.host.emit(SessionEnded(number, int(error.code), error.message))

    def on_data(self, data: bytes | memoryview, max_bytes: int) -> None:
        frame = decode_data_frame(data, max_bytes=max_bytes)
        rec = self.records.get(frame.session)
        if rec is None:
            if frame.session in self.ghosts:
                return
            raise ProtocolViolation(
                Code.PROTOCOL_ERROR, f"data frame for session {frame.session}, which is not open"
            )
        if rec.phase is SessionPhase.OPENING:
            raise ProtocolViolation(
                Code.PROTOCOL_ERROR, f"data frame for session {frame.session} before opened"
            )
        self._check(rec, rec.receive(frame.stream, frame.payload, self.host, self.identity, self.bounds))

    # Resume and the socket's end.

    def socket_closed(self, code: int, reason: str, *, resumable: bool) -> None:
        """End what cannot outlive the socket: opens in progress, closing sessions, and every
        session unless the close is ``resumable``."""
        for number, rec in list(self.records.items()):
            if rec.phase is SessionPhase.OPENING:
                self.drop(number)
                self.host.emit(SessionOpenFailed(number, GatewayClosed(code, reason or "socket closed")))
            elif rec.phase is SessionPhase.CLOSING or not resumable:
                self.drop(number)
                self.host.emit(SessionEnded(number, code, reason or "socket closed"))

    def resumed(self, outcomes: Mapping[int, control.ResumeOutcome]) -> None:
        """§6: re-attach each carried session or end it; re-send what the gateway did not get."""
        for number, rec in list(self.records.items()):
            outcome = outcomes.get(number)
            if outcome is None or not outcome.recovered or outcome.received is None:
                self.drop(number)
                self.host.emit(
                    SessionEnded(number, Code.SESSION_EXPIRED, "the gateway did not recover this session")
                )
                continue
            got = outcome.received
            if got > rec.sent:
                message = f"gateway claims {got} frames, we sent {rec.sent}"
                self.end(rec, Code.RESUME_FAILED, message, tell_gateway=True)
                continue
            if got < rec.outbox_base:
                message = (
                    f"frames {got}..{rec.outbox_base - 1} are no longer in the outbox; cannot re-send them"
                )
                self.end(rec, Code.RESUME_FAILED, message, tell_gateway=True)
                continue
            rec.confirm(got)
            for frame in rec.outbox:
                self.host.send(frame)
            self.host.emit(SessionResumed(number, len(rec.outbox)))

    # Internals.

    def _check(self, rec: SessionRecord, error: GlueberryError | None) -> None:
        """A session whose handshake failed is ended (and closed at the gateway)."""
        if error is not None:
            self.host.emit(HandshakeFailed(rec.number, error))
            self.end(rec, Code.NORMAL, f"handshake failed: {error}", tell_gateway=True)

    def _allocate(self) -> int:
        for _ in range(MAX_SESSION):
            number = self.next_number
            self.next_number = number % MAX_SESSION + 1
            if number not in self.records and number not in self.ghosts:
                return number
        raise LimitExceeded("every session number is in use", limit="sessions")

    def _expected_peer(self, name: str) -> PeerID | None:
        for backend in self.backends:
            if name in (backend.name, str(backend.peer_id)):
                return backend.peer_id
        try:  # a peer ID not listed: opened must still name that peer
            return PeerID.from_string(name)
        except InvalidPeerID:
            return None
