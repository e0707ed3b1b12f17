"""One libp2p connection over a byte stream, sans-I/O: negotiate, secure, multiplex.

Theory of operation
-------------------
A raw TCP connection is upgraded in four stages, each a sans-I/O core of its own::

    SECURITY_NEGOTIATION  multistream-select over raw bytes: "/noise" (a listener answers "na" to
                          "/tls/1.0.0", which go-libp2p proposes first, so the dialler falls back)
    NOISE_HANDSHAKE       Noise XX with the libp2p payload; learns and checks the remote peer ID
    MUXER_NEGOTIATION     multistream-select inside Noise: "/yamux/1.0.0" — skipped when both
                          sides listed yamux in their Noise payload (libp2p inlined muxer
                          negotiation; go-libp2p always lists it), which saves a round trip
    MUXED                 yamux inside Noise; each stream then runs multistream-select
                          (stream_negotiation.py) before its data reaches the application

Invariants:

1. Bytes a stage receives after its own end belong to the next stage and are handed on in order
   (``ProtocolAgreed.remainder``, Noise transport data that follows the last handshake message).
2. The dialler is the Noise initiator, the multistream client of both negotiations and the yamux
   client (odd stream IDs), as in go-libp2p.
3. Output is produced only by :meth:`data_to_send`, which drains every layer top-down (yamux →
   Noise → raw), so many yamux frames share one Noise message and one write.
4. After a fatal error the core queues whatever goodbye it still can (a yamux GoAway), re-raises,
   and from then on refuses use with ``InvalidState``.
5. Once muxed, the owner sees a stream's data only after its :class:`StreamNegotiated` event; the
   core writes, reads and accounts the negotiation bytes itself. The owner acts on streams through
   this class's methods alone (the multiplexer is not handed out), so the two never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from enum import Enum

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..exceptions import InvalidState, NegotiationFailed
from . import noise as noise_mod
from . import yamux as yamux_mod
from .keys import PeerID
from .multistream import MultistreamClient, MultistreamServer
from .stream_negotiation import StreamNegotiated, StreamNegotiationFailed, StreamNegotiations

__all__ = [
    "MUXER_PROTOCOL",
    "SECURITY_PROTOCOL",
    "ConnectionCore",
    "ConnectionEvent",
    "SecurityEstablished",
    "Stage",
    "StreamNegotiated",
    "StreamNegotiationFailed",
    "UpgradeCompleted",
]

SECURITY_PROTOCOL = "/noise"
MUXER_PROTOCOL = "/yamux/1.0.0"
_DONE = MultistreamServer(())  # stands in for a finished negotiation (never fed)


class Stage(Enum):
    SECURITY_NEGOTIATION = "security-negotiation"
    NOISE_HANDSHAKE = "noise-handshake"
    MUXER_NEGOTIATION = "muxer-negotiation"
    MUXED = "muxed"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class SecurityEstablished:
    """The Noise handshake finished: ``remote_peer_id`` proved its key."""

    remote_peer_id: PeerID
    remote_public_key: bytes


@dataclass(frozen=True, slots=True)
class UpgradeCompleted:
    """yamux is running: streams may be opened and will be accepted."""


ConnectionEvent = (
    SecurityEstablished | UpgradeCompleted | StreamNegotiated | StreamNegotiationFailed | yamux_mod.YamuxEvent
)
_NOT_MUXED = "the connection is not multiplexed yet"


class ConnectionCore:
    """The upgrade pipeline of one connection.

    Args:
        initiator: True on the dialling side.
        static_key: this side's Noise static key.
        identity_key: this side's raw Ed25519 public key.
        identity_signature: the signature of ``noise.noise_signature_payload(static public key)``
            by ``identity_key`` (made beforehand, possibly by a remote signer).
        expected_peer: the peer the dialler meant to reach; the handshake fails otherwise.
        yamux_config: limits and windows of the multiplexer.
        inline_muxer: offer yamux in the Noise payload (inlined muxer negotiation).
        signature_checked: the caller verified ``identity_signature`` already (see
            :class:`~glueberry.p2p.noise.NoiseProtocol`); otherwise it is checked here, before
            anything is sent.
        supports: whether a stream the remote opens may use a protocol (asked during its
            negotiation). None: the remote's streams are plain yamux streams, not negotiated —
            for tests of the layers below; a libp2p peer needs it.

    After construction: call :meth:`data_to_send` (the dialler speaks first).
    """

    def __init__(
        self,
        *,
        initiator: bool,
        static_key: X25519PrivateKey,
        identity_key: bytes,
        identity_signature: bytes,
        expected_peer: PeerID | None = None,
        yamux_config: yamux_mod.YamuxConfig | None = None,
        inline_muxer: bool = True,
        signature_checked: bool = False,
        supports: Callable[[str], bool] | None = None,
    ) -> None:
        if not signature_checked:
            static_public_key = static_key.public_key().public_bytes_raw()
            noise_mod.check_identity_signature(identity_key, identity_signature, static_public_key)
        self.initiator = initiator
        self.stage = Stage.SECURITY_NEGOTIATION
        self._noise_args: tuple[X25519PrivateKey, bytes, bytes, PeerID | None] | None = (
            static_key,
            identity_key,
            identity_signature,
            expected_peer,
        )
        self._yamux_config = yamux_config
        self._muxers = (MUXER_PROTOCOL,) if inline_muxer else ()
        self._events: list[ConnectionEvent] = []
        self._raw_out: list[bytes] = []
        self._negotiation: MultistreamClient | MultistreamServer = (
            MultistreamClient([SECURITY_PROTOCOL]) if initiator else MultistreamServer({SECURITY_PROTOCOL})
        )
        self._raw_out += self._negotiation.data_to_send()
        self._noise: noise_mod.NoiseProtocol | None = None
        self._yamux: yamux_mod.YamuxProtocol | None = None
        self._supports = supports
        self._streams: StreamNegotiations | None = None  # made with yamux
        # The ids of _streams.negotiating (a live view), for the check on every write.
        self._negotiating_streams: Collection[int] = ()
        self.remote_peer_id: PeerID | None = None
        self.remote_public_key: bytes | None = None

    # Public methods for receiving data.

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes read from the socket.

        After calling this method: call :meth:`data_to_send` and write the bytes, then handle
        :meth:`events_received`.

        Raises:
            HandshakeError, ProtocolError, ConnectionClosed: the connection must be closed (after
                writing out :meth:`data_to_send`).
        """
        self._check_open()
        try:
            if self.stage is not Stage.SECURITY_NEGOTIATION:
                self._noise_in(data)  # Noise carries everything after security negotiation
            else:
                self._negotiation.receive_data(data)
                self._after_security_negotiation()
        except BaseException:
            self._fail()
            raise

    def receive_eof(self) -> None:
        """The socket was closed by the remote."""
        if self.stage is Stage.CLOSED:
            return
        try:
            if self.stage is Stage.SECURITY_NEGOTIATION:
                self._negotiation.receive_eof()
            else:
                assert self._noise is not None
                self._noise.receive_eof()
                self._drain_noise()
        finally:
            self.stage = Stage.CLOSED
        if self._yamux is not None:
            assert self._streams is not None
            self._yamux.receive_eof()
            self._events += self._streams.route(self._yamux.events_received())

    def events_received(self) -> list[ConnectionEvent]:
        events, self._events = self._events, []
        return events

    # Public methods for sending data.

    def data_to_send(self) -> list[bytes]:
        """Everything to write to the socket now, in order."""
        yamux = self._yamux
        if yamux is not None and self._noise is not None:
            plain = yamux.data_to_send()
            if plain:
                self._noise.send_data(b"".join(plain) if len(plain) > 1 else plain[0])
        if self._noise is not None:
            self._raw_out += self._noise.data_to_send()
        out, self._raw_out = self._raw_out, []
        return out

    @property
    def upgraded(self) -> bool:
        return self._yamux is not None

    @property
    def has_output(self) -> bool:
        """Whether :meth:`data_to_send` has bytes queued by the stream methods below (a window
        update after :meth:`consume`, a write, a reset…). Only meaningful once muxed; after
        :meth:`receive_data` call :meth:`data_to_send` regardless."""
        yamux = self._yamux
        return bool(self._raw_out) or (yamux is not None and yamux.has_output)

    # Public methods for streams (once UpgradeCompleted was seen). Each queues frames: after
    # calling one, call data_to_send() and write the bytes.

    def open_stream(self, protocols: Sequence[str] | None) -> int:
        """Open a stream and return its id.

        With ``protocols`` the stream proposes them in order (multistream-select, the dialler's
        side): :class:`StreamNegotiated` or :class:`StreamNegotiationFailed` follows, and nothing
        may be sent or closed on the stream before the former. With None the stream is a plain
        yamux stream, usable at once (for tests of the layers below).

        Raises:
            InvalidState: not muxed yet, GoAway was sent or received, or the connection is over.
            LimitExceeded: too many streams are open.
            LocalProtocolError: ``protocols`` is empty or holds an over-long ID.
        """
        yamux = self._muxed()
        if protocols is None:
            return yamux.open_stream()
        assert self._streams is not None
        return self._streams.open_stream(protocols)

    def send_data(self, stream_id: int, data: bytes | memoryview) -> int:
        """Queue as much of ``data`` as the stream's send window allows; return how many bytes
        were taken (0: wait for :class:`~glueberry.p2p.yamux.WindowUpdated`).

        Raises:
            InvalidState: the stream is still negotiating, or the connection is not muxed.
            StreamClosed, StreamReset, InvalidArgument: see ``YamuxProtocol.send_data``.
        """
        yamux = self._yamux
        if yamux is None:
            raise InvalidState(_NOT_MUXED)
        if self._negotiating_streams and stream_id in self._negotiating_streams:
            raise InvalidState(f"stream {stream_id} is still negotiating its protocol")
        return yamux.send_data(stream_id, data)

    def send_window(self, stream_id: int) -> int:
        """Bytes :meth:`send_data` would take now on the stream (0 while it negotiates, before the
        connection is muxed, and once it cannot send)."""
        yamux = self._yamux
        if yamux is None or (self._negotiating_streams and stream_id in self._negotiating_streams):
            return 0
        return yamux.send_window(stream_id)

    def consume(self, stream_id: int, n: int) -> None:
        """The application took ``n`` of the stream's received bytes: the remote may send that
        many more (a window update goes out once half the window is owed). Streams that are over,
        and a connection not muxed yet, are ignored.

        Raises:
            InvalidArgument: ``n`` is more than was delivered in ``DataReceived`` and not consumed.
        """
        if self._yamux is not None:
            self._yamux.consume(stream_id, n)

    def close_stream(self, stream_id: int) -> None:
        """Half-close our side of the stream (FIN); closing twice does nothing.

        Raises:
            InvalidState: the stream is still negotiating, or the connection is not muxed or over.
            StreamReset, InvalidArgument: see ``YamuxProtocol.close_stream``.
        """
        yamux = self._muxed()
        if stream_id in self._negotiating_streams:
            raise InvalidState(f"stream {stream_id} is still negotiating its protocol")
        yamux.close_stream(stream_id)

    def reset_stream(self, stream_id: int, code: int = 0) -> None:
        """Reset the stream (RST with ``code``), negotiating or not; one already over is left
        alone. A negotiation it ends reports no event.

        Raises:
            InvalidState: the connection is not muxed or is over.
            InvalidArgument: the stream was never opened, or ``code`` does not fit 32 bits.
        """
        yamux = self._muxed()
        assert self._streams is not None
        self._streams.forget(stream_id)
        yamux.reset_stream(stream_id, code)

    def negotiation_expired(self, stream_id: int) -> None:
        """The owner's negotiation timer for the stream ran out: reset the stream (code 0) if it
        is still negotiating, with no event; otherwise do nothing."""
        streams = self._streams
        if streams is not None and streams.forget(stream_id):
            self._muxed().reset_stream(stream_id, 0)

    def ping(self) -> int:
        """Send a yamux ping; :class:`~glueberry.p2p.yamux.PongReceived` with the returned value
        follows.

        Raises:
            InvalidState: the connection is not muxed or is over.
            LimitExceeded: too many pings are unanswered.
        """
        return self._muxed().ping()

    def go_away(self, code: int = yamux_mod.GO_AWAY_NORMAL) -> None:
        """Tell the remote we accept no new streams; the open ones continue.

        Raises:
            InvalidState: the connection is not muxed or is over.
        """
        self._muxed().go_away(code)

    # Stages.

    def _after_security_negotiation(self) -> None:
        self._raw_out += self._negotiation.data_to_send()
        for event in self._negotiation.events_received():
            if event.protocol != SECURITY_PROTOCOL:  # pragma: no cover - the cores only agree on it
                raise NegotiationFailed(f"unexpected security protocol {event.protocol}")
            assert self._noise_args is not None
            static_key, identity_key, signature, expected = self._noise_args
            self._noise_args = None  # read once: the static key goes with Noise
            self._noise = noise_mod.NoiseProtocol(
                initiator=self.initiator,
                static_key=static_key,
                identity_key=identity_key,
                identity_signature=signature,
                expected_peer=expected,
                stream_muxers=self._muxers,
                signature_checked=True,  # at construction
            )
            self.stage = Stage.NOISE_HANDSHAKE
            if event.remainder:
                self._noise_in(event.remainder)

    def _noise_in(self, data: bytes | bytearray | memoryview) -> None:
        noise = self._noise
        assert noise is not None
        noise.receive_data(data)
        self._drain_noise()

    def _drain_noise(self) -> None:
        assert self._noise is not None
        for event in self._noise.events_received():
            if isinstance(event, noise_mod.DataReceived):
                self._plaintext_in(event.data)
            elif isinstance(event, noise_mod.HandshakeCompleted):
                self.remote_peer_id = event.remote_peer_id
                self.remote_public_key = event.remote_identity_key
                self._events.append(SecurityEstablished(event.remote_peer_id, event.remote_identity_key))
                if self._muxers and MUXER_PROTOCOL in event.remote_stream_muxers:
                    self._start_yamux(b"")
                    continue
                self.stage = Stage.MUXER_NEGOTIATION
                self._negotiation = (
                    MultistreamClient([MUXER_PROTOCOL])
                    if self.initiator
                    else MultistreamServer({MUXER_PROTOCOL})
                )
                self._send_negotiation_output()
            # EOFReceived: receive_eof() handles the end of the connection

    def _plaintext_in(self, data: bytes) -> None:
        if self.stage is Stage.MUXED:
            yamux, streams = self._yamux, self._streams
            assert yamux is not None
            assert streams is not None
            yamux.receive_data(data)
            self._events += streams.route(yamux.events_received())
            return
        self._negotiation.receive_data(data)
        self._send_negotiation_output()
        for agreed in self._negotiation.events_received():
            self._start_yamux(agreed.remainder)

    def _send_negotiation_output(self) -> None:
        assert self._noise is not None
        for chunk in self._negotiation.data_to_send():
            self._noise.send_data(chunk)

    def _start_yamux(self, remainder: bytes) -> None:
        """``remainder``: bytes that followed the muxer negotiation, already yamux's."""
        yamux = self._yamux = yamux_mod.YamuxProtocol(is_client=self.initiator, config=self._yamux_config)
        streams = self._streams = StreamNegotiations(yamux, self._supports)
        self._negotiating_streams = streams.negotiating.keys()
        self.stage = Stage.MUXED
        self._negotiation = _DONE  # free the negotiation cores: thousands of connections live long
        self._events.append(UpgradeCompleted())
        if remainder:
            yamux.receive_data(remainder)
            self._events += streams.route(yamux.events_received())

    def _fail(self) -> None:
        """Flush what can still be said (a yamux GoAway queued by the failing core), then close."""
        if self.stage is Stage.CLOSED:
            return
        try:
            self._raw_out = self.data_to_send()  # it drains _raw_out too: keep its result whole
        except Exception:  # a best-effort goodbye on a connection that is already failing
            self._raw_out = []
        self.stage = Stage.CLOSED

    def _check_open(self) -> None:
        if self.stage is Stage.CLOSED:
            raise InvalidState("connection is closed")

    def _muxed(self) -> yamux_mod.YamuxProtocol:
        if self._yamux is None:
            raise InvalidState(_NOT_MUXED)
        return self._yamux
