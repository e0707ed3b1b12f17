"""The gateway client (docs/gateway-protocol.md), browser side.

The sans-I/O core is driven with scripted gateway messages and checked with the gateway's own
decoders (``codec.decode_client_message``, ``auth.verify_auth``); the backend behind the gateway is
a real :class:`HelloHandshake` responder with the Glueberry cipher, so the handshake and the
encryption run end to end in memory. ``TestDriver`` runs the asyncio client against a small
scripted gateway on a real WebSocket (websockets' server on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from glueberry.exceptions import (
    HandshakeTimeout,
    InvalidArgument,
    InvalidState,
    InvalidStreamName,
    KeyMismatch,
    MessageTooLarge,
)
from glueberry.handshake import HelloHandshake
from glueberry.p2p.keys import PeerID, public_key_bytes, verify_signature
from glueberry_gateway.client import ConnectionState, GatewayClient, Message
from glueberry_gateway.client.core import ClientProtocol, ClientState
from glueberry_gateway.client.errors import GatewayClosed, GatewayError, GatewayProtocolError, SessionClosed
from glueberry_gateway.client.events import (
    Authenticated,
    ClientEvent,
    CloseInfo,
    ConnectionEnded,
    DrainRequested,
    FrameDropped,
    FrameUndecryptable,
    GatewayErrorReceived,
    HandshakeCompleted,
    HandshakeFailed,
    MessageReceived,
    PeerHelloReceived,
    Pong,
    RequestFailed,
    SessionEnded,
    SessionErrorReceived,
    SessionOpened,
    SessionOpenFailed,
    SessionResumed,
    SignatureRefused,
    SignatureSent,
    StreamEnded,
    TokenExpiring,
    TokenRefreshed,
)
from glueberry_gateway.client.record import SessionPhase
from glueberry_gateway.protocol.auth import NOISE_PREFIX, verify_auth
from glueberry_gateway.protocol.codes import CloseSocket, Code
from glueberry_gateway.protocol.control import (
    SUBPROTOCOL,
    Auth,
    BackendInfo,
    Close,
    GatewayLimits,
    Open,
    Ping,
    Refresh,
    Signature,
    SignRefused,
    decode_client_message,
)
from glueberry_gateway.protocol.frames import decode_batch, decode_data_frame, encode_batch, encode_data_frame
from tests.gateway.client_script import ORIGIN, FakeBackend, Script, key, msg, peer


def expect_violation(script: Script, feed: Callable[[], None], code: Code) -> None:
    with pytest.raises(GatewayProtocolError) as info:
        feed()
    assert info.value.close_code == code
    out = script.core.data_to_send()
    assert isinstance(out[-1], CloseSocket)
    assert out[-1].code == code
    assert script.core.state is ClientState.CLOSED
    with pytest.raises(InvalidState):
        script.core.receive_text(msg("pong", id=1))


# ----------------------------------------------------------------------------------------------


class TestAuthentication:
    """§3: challenge → auth (signed, origin-bound) → ready."""

    def test_auth_is_signed_over_the_challenge(self) -> None:
        s = Script()
        assert s.core.state is ClientState.AWAIT_CHALLENGE
        auth = s.challenge()
        assert s.core.state is ClientState.AWAIT_READY
        assert auth.public_key == public_key_bytes(s.identity)
        assert auth.token is None
        assert auth.resume_token is None
        got = verify_auth(
            public_key=auth.public_key,
            signature=auth.signature,
            gateway_peer_id=str(s.gateway),
            origin=ORIGIN,
            nonce=s.nonce,
        )
        assert got == s.core.peer_id
        assert s.core.gateway_peer_id == s.gateway

    def test_signature_does_not_verify_for_another_origin(self) -> None:
        s = Script()
        auth = s.challenge()
        with pytest.raises(Exception, match="does not verify"):
            verify_auth(
                public_key=auth.public_key,
                signature=auth.signature,
                gateway_peer_id=str(s.gateway),
                origin="https://evil.example",
                nonce=s.nonce,
            )

    def test_token_is_sent(self) -> None:
        s = Script(token="a.b.c")
        assert s.challenge().token == "a.b.c"

    def test_ready(self) -> None:
        s = Script()
        events = s.authenticate()
        assert s.core.state is ClientState.READY
        assert events == [
            Authenticated(
                s.core.peer_id,
                (BackendInfo("chat", s.backend.peer_id),),
                GatewayLimits(),
                s.resume_token,
                30.0,
            )
        ]
        assert s.core.resume_token == s.resume_token

    def test_ready_limits_default_when_absent(self) -> None:
        s = Script()
        s.challenge()
        fields = s.ready_fields()
        fields["limits"] = {"max_frame_bytes": 2000}
        s.core.receive_text(msg("ready", **fields))
        assert s.core.limits == GatewayLimits(max_frame_bytes=2000)

    def test_ready_for_another_peer_is_refused(self) -> None:
        s = Script()
        s.challenge()
        fields = s.ready_fields(peer_id=str(peer(key())))
        expect_violation(s, lambda: s.core.receive_text(msg("ready", **fields)), Code.PROTOCOL_ERROR)

    def test_unsupported_challenge_version(self) -> None:
        s = Script()
        challenge = msg("challenge", version=2, nonce=s.nonce, gateway=str(s.gateway))
        expect_violation(s, lambda: s.core.receive_text(challenge), Code.UNSUPPORTED_VERSION)

    def test_anything_before_the_challenge_is_a_protocol_error(self) -> None:
        s = Script()
        expect_violation(s, lambda: s.core.receive_text(msg("pong", id=1)), Code.PROTOCOL_ERROR)

    def test_data_before_ready_is_a_protocol_error(self) -> None:
        s = Script()
        s.challenge()
        expect_violation(
            s, lambda: s.core.receive_binary(encode_data_frame(1, "x", b"")), Code.PROTOCOL_ERROR
        )

    def test_pinned_gateway(self) -> None:
        s = Script(gateway_peer_id=str(peer(key())))
        expect_violation(
            s,
            lambda: s.core.receive_text(msg("challenge", version=1, nonce=s.nonce, gateway=str(s.gateway))),
            Code.PROTOCOL_ERROR,
        )

    def test_unknown_type_after_ready(self) -> None:
        s = Script()
        s.authenticate()
        expect_violation(s, lambda: s.core.receive_text(msg("fancy_new_thing")), Code.PROTOCOL_ERROR)

    def test_second_challenge_after_ready(self) -> None:
        s = Script()
        s.authenticate()
        again = msg("challenge", version=1, nonce=s.nonce, gateway=str(s.gateway))
        expect_violation(s, lambda: s.core.receive_text(again), Code.PROTOCOL_ERROR)

    def test_bad_json_and_oversized_control(self) -> None:
        s = Script()
        expect_violation(s, lambda: s.core.receive_text("{not json"), Code.PROTOCOL_ERROR)
        s = Script(max_control_bytes=100)
        expect_violation(s, lambda: s.core.receive_text(msg("ping", pad="x" * 200)), Code.MESSAGE_TOO_BIG)

    def test_auth_error_then_close(self) -> None:
        s = Script()
        s.challenge()
        s.core.receive_text(msg("error", code=4002, message="bad signature"))
        s.core.connection_closed(4002)
        events = s.core.events_received()
        assert isinstance(events[0], GatewayErrorReceived)
        assert events[0].error.code is Code.AUTH_FAILED
        assert events[-1] == ConnectionEnded(CloseInfo(4002, "bad signature", False))

    @pytest.mark.parametrize("origin", ["", "http://é.example", "x" * 256])
    def test_bad_origin(self, origin: str) -> None:
        with pytest.raises(InvalidArgument):
            ClientProtocol(key(), origin)


class TestOpen:
    """§5.1: open → sign (only Noise payloads) → opened, or error."""

    def test_open_sign_opened(self) -> None:
        s = Script()
        s.authenticate()
        number = s.core.open("chat")
        (text,) = s.core.data_to_send()
        request = decode_client_message(str(text))
        assert request == Open(request.id, number, "chat")  # type: ignore[union-attr]
        payload = NOISE_PREFIX + os.urandom(32)
        s.core.receive_text(msg("sign", id=900001, session=number, payload=payload))
        (answer,) = s.core.data_to_send()
        signature = decode_client_message(str(answer))
        assert isinstance(signature, Signature)
        assert signature.id == 900001
        assert verify_signature(s.core.public_key, signature.signature, payload)
        assert s.core.events_received() == [SignatureSent(number, 900001)]
        assert isinstance(request, Open)
        s.core.receive_text(
            msg("opened", id=request.id, session=number, backend="chat", peer_id=str(s.backend.peer_id))
        )
        assert s.core.events_received() == [SessionOpened(number, "chat", s.backend.peer_id)]
        assert s.core.session(number).phase is SessionPhase.OPEN

    @pytest.mark.parametrize(
        "payload",
        [
            b"noise-libp2p-static-key:" + b"\x00" * 31,  # short key
            b"noise-libp2p-static-key:" + b"\x00" * 33,  # long key
            b"glueberry-gateway-auth-v1\x00" + b"\x00" * 30,  # another domain
            b"\x00" * 56,
            b"",
        ],
    )
    def test_refuses_to_sign_anything_else(self, payload: bytes) -> None:
        s = Script()
        s.authenticate()
        number = s.core.open("chat")
        s.core.data_to_send()
        s.core.receive_text(msg("sign", id=7, session=number, payload=payload))
        (answer,) = s.core.data_to_send()
        assert decode_client_message(str(answer)) == SignRefused(7)
        (event,) = s.core.events_received()
        assert isinstance(event, SignatureRefused)

    def test_refuses_to_sign_for_a_session_not_being_opened(self) -> None:
        s = Script()
        s.authenticate()
        number = s.open()
        for session in (number, 99):
            s.core.receive_text(msg("sign", id=8, session=session, payload=NOISE_PREFIX + bytes(32)))
            (answer,) = s.core.data_to_send()
            assert decode_client_message(str(answer)) == SignRefused(8)

    def test_signs_a_bounded_number_of_times_per_open(self) -> None:
        s = Script()
        s.authenticate()
        number = s.core.open("chat")
        s.core.data_to_send()
        kinds = []
        for i in range(6):
            s.core.receive_text(msg("sign", id=i + 1, session=number, payload=NOISE_PREFIX + os.urandom(32)))
            (answer,) = s.core.data_to_send()
            kinds.append(type(decode_client_message(str(answer))))
        assert kinds == [Signature] * 4 + [SignRefused] * 2

    @pytest.mark.parametrize(
        "code",
        [Code.BACKEND_UNKNOWN, Code.BACKEND_NOT_ALLOWED, Code.BACKEND_UNAVAILABLE, Code.TOO_MANY_SESSIONS],
    )
    def test_error_answer(self, code: Code) -> None:
        s = Script()
        s.authenticate()
        number = s.core.open("nope")
        request = decode_client_message(str(s.core.data_to_send()[0]))
        assert isinstance(request, Open)
        s.core.receive_text(msg("error", id=request.id, session=number, code=int(code), message="no"))
        (event,) = s.core.events_received()
        assert isinstance(event, SessionOpenFailed)
        assert event.error.code is code
        assert event.error.request_id == request.id
        assert number not in s.core.sessions
        other = s.open()  # the socket is untouched
        assert s.core.session(other).phase is SessionPhase.OPEN

    def test_opened_with_another_peer_than_ready_listed(self) -> None:
        s = Script()
        s.authenticate()
        number = s.core.open("chat")
        request = decode_client_message(str(s.core.data_to_send()[0]))
        assert isinstance(request, Open)
        intruder = peer(key())
        s.core.receive_text(
            msg("opened", id=request.id, session=number, backend="chat", peer_id=str(intruder))
        )
        (event,) = s.core.events_received()
        assert isinstance(event, SessionOpenFailed)
        (close,) = s.core.data_to_send()
        assert decode_client_message(str(close)) == Close(2, number)

    def test_opened_by_peer_id_must_be_that_peer(self) -> None:
        s = Script()
        s.authenticate()
        wanted = peer(key())
        number = s.core.open(wanted)
        request = decode_client_message(str(s.core.data_to_send()[0]))
        assert request == Open(1, number, str(wanted))
        s.core.receive_text(msg("opened", id=1, session=number, backend="x", peer_id=str(s.backend.peer_id)))
        assert isinstance(s.core.events_received()[0], SessionOpenFailed)

    def test_opened_for_nothing_we_asked(self) -> None:
        s = Script()
        s.authenticate()
        opened = msg("opened", id=5, session=3, backend="chat", peer_id=str(s.backend.peer_id))
        expect_violation(s, lambda: s.core.receive_text(opened), Code.PROTOCOL_ERROR)

    def test_closed_instead_of_opened(self) -> None:
        s = Script()
        s.authenticate()
        number = s.core.open("chat")
        s.core.data_to_send()
        s.core.receive_text(msg("closed", session=number, code=4111, message="sign timeout"))
        (event,) = s.core.events_received()
        assert isinstance(event, SessionOpenFailed)
        assert isinstance(event.error, SessionClosed)
        assert event.error.code is Code.SIGN_TIMEOUT

    def test_session_numbers_are_distinct(self) -> None:
        s = Script()
        s.authenticate()
        numbers = [s.core.open("chat") for _ in range(5)]
        assert len(set(numbers)) == 5
        assert all(1 <= n <= 65535 for n in numbers)

    def test_actions_need_ready(self) -> None:
        s = Script()
        with pytest.raises(InvalidState):
            s.core.open("chat")
        with pytest.raises(InvalidState):
            s.core.ping()


class TestDataFrames:
    """§5.2: binary frames, 0x01 ‖ u16 session ‖ n ‖ name ‖ payload."""

    def test_header_layout(self) -> None:
        s = Script()
        s.authenticate()
        number = s.open()
        s.core.send_raw(number, "handshake", b"\x01hi")
        (frame,) = s.core.data_to_send()
        assert frame == bytes([0x01, number >> 8, number & 0xFF, 9]) + b"handshake" + b"\x01hi"

    def test_send_data_encrypts_for_the_backend(self) -> None:
        s = Script()
        number = s.established()
        s.backend.echo = False
        s.core.send_data(number, "chat", b"secret")
        (frame,) = s.core.data_to_send()
        assert isinstance(frame, bytes)
        assert b"secret" not in frame
        decoded = decode_data_frame(frame, max_bytes=1 << 20)
        assert (decoded.session, decoded.stream) == (number, "chat")
        assert s.backend.cipher is not None
        assert s.backend.cipher.decrypt(decoded.payload) == b"secret"

    def test_receive_decrypts_and_counts_failures(self) -> None:
        s = Script()
        number = s.established()
        s.from_backend(number, "chat", b"one")
        assert s.backend.cipher is not None
        tampered = bytearray(s.backend.cipher.encrypt(b"two"))
        tampered[-1] ^= 1
        s.core.receive_binary(encode_data_frame(number, "chat", bytes(tampered)))
        s.core.receive_binary(encode_data_frame(number, "chat", b"short"))
        s.from_backend(number, "chat", b"three")
        assert s.core.events_received() == [
            MessageReceived(number, "chat", b"one"),
            FrameUndecryptable(number, "chat"),
            FrameUndecryptable(number, "chat"),
            MessageReceived(number, "chat", b"three"),
        ]
        assert s.core.session(number).decryption_errors == 2

    def test_send_before_the_handshake(self) -> None:
        s = Script()
        s.authenticate()
        number = s.open()
        with pytest.raises(InvalidState, match="handshake"):
            s.core.send_data(number, "chat", b"x")

    @pytest.mark.parametrize("stream", ["", "a b", "é", "x" * 65, "handshake", "other"])
    def test_bad_stream_names(self, stream: str) -> None:
        s = Script()
        number = s.established()
        with pytest.raises(InvalidStreamName):
            s.core.send_data(number, stream, b"x")

    def test_size_limits(self) -> None:
        s = Script(max_message_size=100)
        number = s.established()
        with pytest.raises(MessageTooLarge):
            s.core.send_data(number, "chat", bytes(101))
        s.core.send_data(number, "chat", bytes(100))
        s = Script()
        s.authenticate(limits={"max_frame_bytes": 50})
        number = s.open()
        with pytest.raises(MessageTooLarge):
            s.core.send_raw(number, "chat", bytes(43))
        s.core.send_raw(number, "chat", bytes(42))  # 4 + 4 + 42 = 50 bytes

    def test_unprepared_stream_is_dropped(self) -> None:
        s = Script()
        number = s.established()
        s.from_backend(number, "other", b"x")
        assert s.core.events_received() == [FrameDropped(number, "other", "stream not prepared")]
        assert s.core.session(number).dropped_frames == 1

    def test_frame_for_an_unknown_session(self) -> None:
        s = Script()
        s.authenticate()
        expect_violation(
            s, lambda: s.core.receive_binary(encode_data_frame(9, "chat", b"x")), Code.PROTOCOL_ERROR
        )

    def test_oversized_and_malformed_frames(self) -> None:
        s = Script(max_receive_bytes=100)
        s.authenticate()
        number = s.open()
        big = encode_data_frame(number, "chat", bytes(100))
        expect_violation(s, lambda: s.core.receive_binary(big), Code.MESSAGE_TOO_BIG)
        s = Script()
        s.authenticate()
        expect_violation(s, lambda: s.core.receive_binary(b"\x7f\x00\x01\x01a"), Code.PROTOCOL_ERROR)
        s = Script()
        s.authenticate()
        number = s.open()
        expect_violation(
            s, lambda: s.core.receive_binary(b"\x01\x00" + bytes([number, 2]) + b"a!"), Code.INVALID_STREAM
        )

    def test_frames_while_closing_are_counted_and_dropped(self) -> None:
        s = Script()
        number = s.established()
        s.core.close_session(number)
        s.from_backend(number, "chat", b"late")
        assert s.core.events_received() == [FrameDropped(number, "chat", "the session is closing")]
        assert s.core.session(number).received == 4  # PubKey, Hello, Complete, late


class TestBatches:
    """§5.6: batches from the gateway are taken frame by frame; ours go out only when ready says
    the gateway takes them."""

    def test_auth_says_we_take_batches(self) -> None:
        assert Script().challenge().batch is True

    def test_a_batch_is_received_frame_by_frame_in_order(self) -> None:
        s = Script()
        number = s.established()
        assert s.backend.cipher is not None
        cipher = s.backend.cipher
        before = s.core.session(number).received
        frames = [encode_data_frame(number, "chat", cipher.encrypt(w)) for w in (b"one", b"two", b"three")]
        s.core.receive_binary(encode_batch(frames))
        assert s.core.events_received() == [
            MessageReceived(number, "chat", b"one"),
            MessageReceived(number, "chat", b"two"),
            MessageReceived(number, "chat", b"three"),
        ]
        assert s.core.session(number).received == before + 3  # each frame counts for resume

    @pytest.mark.parametrize(
        "batch", [b"\x02", b"\x02\x00", b"\x02\x00\x09\x01", b"\x02\x00\x00", b"\x02\x00\x03\x02\x00\x00"]
    )
    def test_malformed_batches(self, batch: bytes) -> None:
        s = Script()
        s.authenticate()
        expect_violation(s, lambda: s.core.receive_binary(batch), Code.PROTOCOL_ERROR)

    def test_a_batch_over_max_receive_bytes(self) -> None:
        s = Script(max_receive_bytes=100)
        s.authenticate()
        number = s.open()
        batch = encode_batch([encode_data_frame(number, "chat", bytes(40))] * 3)  # each fits, not all
        expect_violation(s, lambda: s.core.receive_binary(batch), Code.MESSAGE_TOO_BIG)

    def sent(self, s: Script, number: int) -> list[str | bytes]:
        s.core.send_data(number, "chat", b"1")
        s.core.send_data(number, "chat", b"2")
        s.core.ping()
        s.core.send_data(number, "chat", b"3")
        items = s.core.data_to_send()
        assert all(isinstance(item, str | bytes) for item in items)
        return items  # type: ignore[return-value]

    def test_frames_go_one_by_one_when_ready_does_not_offer_batches(self) -> None:
        s = Script()
        number = s.established()
        items = self.sent(s, number)
        assert [type(i) for i in items] == [bytes, bytes, str, bytes]
        assert all(isinstance(i, str) or i[0] == 0x01 for i in items)

    def test_frames_sent_together_go_as_one_batch_when_ready_offers_them(self) -> None:
        s = Script()
        s.challenge()
        s.core.receive_text(msg("ready", **s.ready_fields(batch=True)))
        number = s.open()
        s.core.start_handshake(number, streams=["chat"], name="alice")
        s.relay(number)
        assert s.backend.cipher is not None
        first, ping, last = self.sent(s, number)
        assert isinstance(first, bytes)
        assert first[0] == 0x02
        assert [
            s.backend.cipher.decrypt(decode_data_frame(f, max_bytes=1000).payload)
            for f in decode_batch(first, max_bytes=1000)
        ] == [b"1", b"2"]
        assert isinstance(ping, str)
        assert decode_client_message(ping) == Ping(ping_id(ping))
        assert isinstance(last, bytes)
        assert last[0] == 0x01  # alone: a plain data frame


def ping_id(text: str) -> int:
    message = decode_client_message(text)
    assert isinstance(message, Ping)
    return message.id


class TestHandshake:
    """PROTOCOL.md §10 over the gateway: Hello/PubKey/Complete as initiator, key checked against
    the peer ID in ``opened``."""

    def test_end_to_end(self) -> None:
        s = Script()
        s.authenticate()
        number = s.open()
        s.core.start_handshake(number, streams=["chat"], name="alice")
        s.relay(number)
        events = s.core.events_received()
        assert PeerHelloReceived(number, "backend") in events
        assert events[-1] == HandshakeCompleted(number, public_key_bytes(s.backend.key))
        assert s.backend.finalized
        assert s.backend.handshake.peer_name == "alice"
        s.core.send_data(number, "chat", b"ping")
        s.relay(number)
        assert s.backend.received == [("chat", b"ping")]
        assert s.core.events_received() == [MessageReceived(number, "chat", b"echo:ping")]

    def test_key_of_another_peer_fails_and_closes(self) -> None:
        s = Script()
        s.authenticate()
        number = s.open()
        impostor = FakeBackend(s.core.peer_id)  # answers with a key that is not the opened peer's
        s.core.start_handshake(number)
        control = s.relay(number, impostor)
        events = s.core.events_received()
        failed = [e for e in events if isinstance(e, HandshakeFailed)]
        assert len(failed) == 1
        assert isinstance(failed[0].error, KeyMismatch)
        assert isinstance(events[-1], SessionEnded)
        assert [decode_client_message(str(c)) for c in control] == [Close(2, number)]
        assert number not in s.core.sessions

    def test_frames_before_start_are_held(self) -> None:
        s = Script()
        s.authenticate()
        number = s.open()
        s.core.receive_binary(encode_data_frame(number, "handshake", b"\x01early"))
        assert s.core.events_received() == []
        s.core.start_handshake(number)
        assert s.core.events_received() == [PeerHelloReceived(number, "early")]

    def test_encrypted_frames_before_the_key_are_kept_in_order(self) -> None:
        s = Script()
        s.authenticate()
        number = s.open()
        s.core.start_handshake(number)
        hello, pubkey = (decode_data_frame(f, max_bytes=1000) for f in s.core.data_to_send())  # type: ignore[arg-type]
        answers = s.backend.on_frame("handshake", bytes(hello.payload))
        answers += s.backend.on_frame("handshake", bytes(pubkey.payload))
        assert s.backend.cipher is not None
        # The backend prepared and sends data before its handshake messages are relayed.
        s.from_backend(number, "chat", b"first")
        s.from_backend(number, "chat", b"second")
        assert s.core.events_received() == []
        for stream, payload in answers:
            s.core.receive_binary(encode_data_frame(number, stream, payload))
        messages = [e for e in s.core.events_received() if isinstance(e, MessageReceived)]
        assert messages == [
            MessageReceived(number, "chat", b"first"),
            MessageReceived(number, "chat", b"second"),
        ]

    def test_established_by_traffic_without_complete(self) -> None:
        s = Script()
        s.authenticate()
        number = s.open()
        s.backend.send_complete = False
        s.core.start_handshake(number)
        s.relay(number)
        assert not any(isinstance(e, HandshakeCompleted) for e in s.core.events_received())
        s.from_backend(number, "chat", b"hi")
        assert s.core.events_received() == [
            HandshakeCompleted(number, public_key_bytes(s.backend.key)),
            MessageReceived(number, "chat", b"hi"),
        ]

    def test_pending_frames_are_bounded(self) -> None:
        s = Script(pending_frames=2)
        s.authenticate()
        number = s.open()
        for _ in range(3):
            s.core.receive_binary(encode_data_frame(number, "chat", bytes(40)))
        assert s.core.events_received() == [
            FrameDropped(number, "chat", "too many frames held before the stream key")
        ]

    def test_start_twice(self) -> None:
        s = Script()
        number = s.established()
        with pytest.raises(InvalidState):
            s.core.start_handshake(number)


class TestControl:
    """§4, §5.3–§5.5, §8: ping, refresh, notices, close, drain, errors."""

    def test_ping_pong(self) -> None:
        s = Script()
        s.authenticate()
        request_id = s.core.ping()
        assert decode_client_message(str(s.core.data_to_send()[0])) == Ping(request_id)
        s.core.receive_text(msg("pong", id=request_id))
        assert s.core.events_received() == [Pong(request_id)]

    def test_refresh(self) -> None:
        s = Script(token="old")
        s.authenticate()
        request_id = s.core.refresh_token("new")
        assert decode_client_message(str(s.core.data_to_send()[0])) == Refresh(request_id, "new")
        assert s.core.token == "old"  # adopted only once refreshed
        s.core.receive_text(msg("refreshed", id=request_id, expires_at=1795612800))
        assert s.core.events_received() == [TokenRefreshed(request_id, 1795612800.0)]
        assert s.core.token == "new"

    def test_refresh_refused(self) -> None:
        s = Script(token="old")
        s.authenticate()
        request_id = s.core.refresh_token("forged")
        s.core.receive_text(msg("error", id=request_id, code=4005, message="bad token"))
        (event,) = s.core.events_received()
        assert isinstance(event, RequestFailed)
        assert event.error.code is Code.TOKEN_INVALID
        assert s.core.token == "old"

    def test_notices(self) -> None:
        s = Script()
        number = s.established()
        s.core.receive_text(msg("token_expiring", expires_at=100))
        s.core.receive_text(msg("stream_closed", session=number, stream="handshake"))
        s.core.receive_text(msg("error", session=number, code=4105, message="too many streams"))
        events = s.core.events_received()
        assert events[:2] == [TokenExpiring(100.0), StreamEnded(number, "handshake")]
        assert isinstance(events[2], SessionErrorReceived)
        assert events[2].error.code is Code.TOO_MANY_STREAMS
        assert s.core.session(number).phase is SessionPhase.OPEN

    def test_closed_notice(self) -> None:
        s = Script()
        number = s.established()
        cipher = s.core.session(number).cipher
        s.core.receive_text(msg("closed", session=number, code=4109, message="backend closed the connection"))
        assert s.core.events_received() == [SessionEnded(number, 4109, "backend closed the connection")]
        assert cipher is not None
        assert cipher.closed
        s.core.receive_text(msg("closed", session=number, code=4109))  # late duplicates are harmless
        assert s.core.events_received() == []

    def test_close_session(self) -> None:
        s = Script()
        number = s.established()
        request_id = s.core.close_session(number)
        assert decode_client_message(str(s.core.data_to_send()[0])) == Close(request_id, number)
        s.core.receive_text(msg("closed", id=request_id, session=number, code=1000))
        assert s.core.events_received() == [SessionEnded(number, 1000, "")]
        with pytest.raises(InvalidState):
            s.core.send_data(number, "chat", b"x")

    def test_drain_makes_the_close_final(self) -> None:
        s = Script()
        s.established()
        s.core.receive_text(msg("drain", reconnect_after_ms=1834))
        assert s.core.events_received() == [DrainRequested(1834)]
        s.core.connection_closed(1006)  # even a drop: the gateway is closing the sessions
        assert not s.core.resumable

    def test_local_close(self) -> None:
        s = Script()
        number = s.established()
        s.core.close(1000, "bye")
        assert s.core.data_to_send() == [CloseSocket(1000, "bye")]
        with pytest.raises(InvalidState):
            s.core.send_data(number, "chat", b"x")
        s.core.connection_closed(1006)  # even a drop after our close is final
        assert not s.core.resumable
        events = s.core.events_received()
        assert isinstance(events[0], SessionEnded)
        assert events[-1] == ConnectionEnded(CloseInfo(1006, "", False))


class TestResume:
    """§6: counts, the outbox, auth with resume, resumed, re-sending and replay."""

    def sent_frames(self, s: Script, number: int, count: int) -> list[bytes]:
        frames = []
        for i in range(count):
            s.core.send_data(number, "chat", b"m%d" % i)
            (frame,) = s.core.data_to_send()
            assert isinstance(frame, bytes)
            frames.append(frame)
        return frames

    def drop_and_resume(self, s: Script, code: int = 1006) -> tuple[ClientProtocol, Auth]:
        s.core.connection_closed(code)
        events = s.core.events_received()
        assert events[-1] == ConnectionEnded(CloseInfo(code, "", True))
        core = ClientProtocol(s.identity, ORIGIN, resume=s.core.resume_state())
        core.receive_text(msg("challenge", version=1, nonce=s.nonce, gateway=str(s.gateway)))
        (text,) = core.data_to_send()
        auth = decode_client_message(str(text))
        assert isinstance(auth, Auth)
        return core, auth

    def resumed_ready(self, s: Script, core: ClientProtocol, resumed: dict[str, Any]) -> list[ClientEvent]:
        fields = s.ready_fields(resumed=resumed, resume_token=os.urandom(24))
        core.receive_text(msg("ready", **fields))
        return core.events_received()

    def test_counts(self) -> None:
        s = Script()
        number = s.established()
        record = s.core.session(number)
        assert (record.received, record.sent) == (3, 3)  # Hello, PubKey, Complete each way
        s.from_backend(number, "chat", b"x")
        s.core.receive_binary(encode_data_frame(number, "chat", b"garbage-that-does-not-decrypt!!"))
        self.sent_frames(s, number, 2)
        assert (record.received, record.sent, len(record.outbox)) == (5, 5, 5)

    def test_auth_carries_the_token_and_counts(self) -> None:
        s = Script(token="jwt")
        number = s.established()
        s.from_backend(number, "chat", b"x")
        core, auth = self.drop_and_resume(s)
        assert auth.resume_token == s.resume_token
        assert auth.resume_sessions == {number: 4}
        assert auth.token is None  # the token is given per core; the driver passes the latest
        assert core.state is ClientState.AWAIT_READY

    def test_recovered_resends_what_the_gateway_missed(self) -> None:
        s = Script()
        number = s.established()
        frames = self.sent_frames(s, number, 5)  # frames 3..7 (0..2 were the handshake)
        core, _ = self.drop_and_resume(s)
        events = self.resumed_ready(s, core, {str(number): {"recovered": True, "received": 6}})
        assert events[1:] == [SessionResumed(number, 2)]
        assert core.data_to_send() == frames[3:]
        record = core.session(number)
        assert record.outbox_base == 6
        assert list(record.outbox) == frames[3:]
        # Frames the gateway kept arrive next, in order, and the count continues.
        for text in (b"r1", b"r2"):
            assert s.backend.cipher is not None
            core.receive_binary(encode_data_frame(number, "chat", s.backend.cipher.encrypt(text)))
        assert core.events_received() == [
            MessageReceived(number, "chat", b"r1"),
            MessageReceived(number, "chat", b"r2"),
        ]
        assert record.received == 5
        core.send_data(number, "chat", b"new")  # the stream key survived
        assert record.sent == 9

    def test_not_recovered(self) -> None:
        s = Script()
        number = s.established()
        core, _ = self.drop_and_resume(s)
        events = self.resumed_ready(s, core, {str(number): {"recovered": False}})
        assert events[1:] == [
            SessionEnded(number, Code.SESSION_EXPIRED, "the gateway did not recover this session")
        ]
        assert core.sessions == {}

    def test_missing_entry_is_not_recovered(self) -> None:
        s = Script()
        number = s.established()
        core, _ = self.drop_and_resume(s)
        events = self.resumed_ready(s, core, {})
        assert isinstance(events[1], SessionEnded)
        assert events[1].session == number

    def test_outbox_bound_by_frames(self) -> None:
        s = Script(outbox_frames=4)
        number = s.established()
        frames = self.sent_frames(s, number, 10)  # frames 3..12; the outbox keeps 9..12
        record = s.core.session(number)
        assert list(record.outbox) == frames[-4:]
        assert record.outbox_base == 9
        core, _ = self.drop_and_resume(s)
        events = self.resumed_ready(s, core, {str(number): {"recovered": True, "received": 10}})
        assert events[1:] == [SessionResumed(number, 3)]
        assert core.data_to_send() == frames[-3:]

    def test_outbox_gap_ends_the_session(self) -> None:
        s = Script(outbox_frames=4)
        number = s.established()
        self.sent_frames(s, number, 10)
        core, _ = self.drop_and_resume(s)
        events = self.resumed_ready(s, core, {str(number): {"recovered": True, "received": 8}})
        assert isinstance(events[1], SessionEnded)
        assert events[1].code == Code.RESUME_FAILED
        (close,) = core.data_to_send()
        assert decode_client_message(str(close)) == Close(1, number)
        core.receive_text(msg("closed", id=1, session=number, code=1000))  # confirmation is quiet
        assert core.events_received() == []

    def test_outbox_bound_by_bytes(self) -> None:
        s = Script(outbox_bytes=200)
        number = s.established()
        frames = self.sent_frames(s, number, 10)  # 4 + 4 + 30 bytes each
        record = s.core.session(number)
        assert record.outbox_bytes <= 200
        assert list(record.outbox) == frames[-(200 // len(frames[0])) :]

    def test_gateway_claims_more_than_sent(self) -> None:
        s = Script()
        number = s.established()
        core, _ = self.drop_and_resume(s)
        events = self.resumed_ready(s, core, {str(number): {"recovered": True, "received": 99}})
        assert isinstance(events[1], SessionEnded)

    def test_what_does_not_survive_a_drop(self) -> None:
        s = Script()
        kept = s.established()
        closing = s.open()
        s.core.close_session(closing)
        opening = s.core.open("chat")
        ping = s.core.ping()
        s.core.data_to_send()
        s.core.connection_closed(1006)
        events = s.core.events_received()
        assert SessionEnded(closing, 1006, "socket closed") in events
        failed = [e for e in events if isinstance(e, SessionOpenFailed)]
        assert [f.session for f in failed] == [opening]
        assert isinstance(failed[0].error, GatewayClosed)
        failed_requests = [e for e in events if isinstance(e, RequestFailed)]
        assert [r.request_id for r in failed_requests] == [ping]
        assert list(s.core.resume_state().sessions) == [kept]

    @pytest.mark.parametrize("code", [1000, 1001, 4000, 4002, 4008, 4010, 4011, 4013, 4014])
    def test_not_resumable_closes(self, code: int) -> None:
        s = Script()
        number = s.established()
        s.core.connection_closed(code)
        events = s.core.events_received()
        assert SessionEnded(number, code, "socket closed") in events
        with pytest.raises(InvalidState):
            s.core.resume_state()

    @pytest.mark.parametrize("code", [1005, 1006, 1011, 1012])
    def test_resumable_closes(self, code: int) -> None:
        s = Script()
        s.established()
        s.core.connection_closed(code)
        assert s.core.resumable

    def test_failed_attempt_keeps_the_sessions(self) -> None:
        s = Script()
        number = s.established()
        core, _ = self.drop_and_resume(s)
        core.connection_closed(1006)  # the attempt dropped before ready
        again = ClientProtocol(s.identity, ORIGIN, resume=core.resume_state())
        again.receive_text(msg("challenge", version=1, nonce=s.nonce, gateway=str(s.gateway)))
        auth = decode_client_message(str(again.data_to_send()[0]))
        assert isinstance(auth, Auth)
        assert auth.resume_token == s.resume_token
        assert auth.resume_sessions == {number: 3}

    @pytest.mark.parametrize(("code", "retry"), [(1006, True), (4008, True), (4004, True), (1000, False)])
    def test_attempt_closed_before_ready(self, code: int, retry: bool) -> None:
        s = Script()
        s.established()
        core, _ = self.drop_and_resume(s)
        core.connection_closed(code)
        assert core.resumable is retry

    def test_attempt_given_up_by_us_can_be_retried(self) -> None:
        s = Script()
        s.established()
        core, _ = self.drop_and_resume(s)
        core.close(1000, "timed out")
        core.connection_closed(1000)
        assert core.resumable

    def test_refused_attempt_ends_the_sessions(self) -> None:
        s = Script()
        number = s.established()
        core, _ = self.drop_and_resume(s)
        core.receive_text(msg("error", code=4014, message="resume token used"))
        core.connection_closed(4014)
        events = core.events_received()
        assert SessionEnded(number, 4014, "resume token used") in events
        assert not core.resumable

    def test_session_numbers_are_not_reused(self) -> None:
        s = Script()
        number = s.established()
        core, _ = self.drop_and_resume(s)
        self.resumed_ready(s, core, {str(number): {"recovered": True, "received": 3}})
        assert core.open("chat") != number


# ----------------------------------------------------------------------------------------------
# The asyncio driver against a scripted gateway on a real WebSocket.


class FakeGateway:
    """Just enough of a gateway: challenge/auth/ready, open/sign/opened, relay to FakeBackends,
    ping, close, resume with replay. ``drop()`` cuts the socket without a close frame."""

    def __init__(self) -> None:
        self.key = key()
        self.peer_id = peer(self.key)
        self.backends: dict[int, FakeBackend] = {}
        self.backend_key = key()
        self.got: dict[int, int] = {}  # data frames received from the browser per session
        self.log: dict[int, list[bytes]] = {}  # frames sent to the browser per session
        self.token = os.urandom(24)
        self.auths: list[Auth] = []
        self.frames_in: list[list[bytes]] = []  # data frames from the browser, per socket
        self.hold = False  # log frames for the browser without sending them (to replay)
        self.forget_last = 0  # on resume, claim this many fewer frames than received
        self.refuse: Code | None = None
        self.connections: list[ServerConnection] = []
        self.client_peer: PeerID | None = None
        self.refreshed: list[str] = []

    async def handler(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        nonce = os.urandom(32)
        await ws.send(msg("challenge", version=1, nonce=nonce, gateway=str(self.peer_id), expires_in=10))
        auth = decode_client_message(await ws.recv())
        assert isinstance(auth, Auth)
        self.auths.append(auth)
        origin = ws.request.headers["Origin"] if ws.request else ""
        self.client_peer = verify_auth(
            public_key=auth.public_key,
            signature=auth.signature,
            gateway_peer_id=str(self.peer_id),
            origin=origin,
            nonce=nonce,
        )
        if self.refuse is not None:
            await ws.send(msg("error", code=int(self.refuse), message="refused"))
            await ws.close(int(self.refuse), "refused")
            return
        resumed: dict[str, Any] | None = None
        replay: list[tuple[int, bytes]] = []
        if auth.resume_token is not None:
            if auth.resume_token != self.token:
                await ws.close(Code.RESUME_FAILED, "bad resume token")
                return
            resumed = {}
            for number, count in auth.resume_sessions.items():
                self.got[number] -= self.forget_last
                resumed[str(number)] = {"recovered": True, "received": self.got[number]}
                replay += [(number, f) for f in self.log[number][count:]]
        self.token = os.urandom(24)
        backends = [{"name": "chat", "peer_id": str(peer(self.backend_key))}]
        await ws.send(
            msg(
                "ready",
                peer_id=str(self.client_peer),
                resume_token=self.token,
                resume_grace=5,
                backends=backends,
                limits={"max_frame_bytes": 1 << 20},
                resumed=resumed,
            )
        )
        self.hold = False
        for _, frame in replay:
            await ws.send(frame)
        frames_in: list[bytes] = []
        self.frames_in.append(frames_in)
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                if isinstance(message, bytes):
                    frames_in.append(message)
                    await self.on_frame(ws, message)
                else:
                    await self.on_control(ws, orjson.loads(message))

    async def on_control(self, ws: ServerConnection, obj: dict[str, Any]) -> None:
        if obj["type"] == "open":
            if obj["backend"] != "chat":
                await ws.send(
                    msg("error", id=obj["id"], session=obj["session"], code=4100, message="unknown")
                )
                return
            payload = NOISE_PREFIX + os.urandom(32)
            await ws.send(msg("sign", id=900000 + obj["id"], session=obj["session"], payload=payload))
            answer = decode_client_message(await ws.recv())
            assert isinstance(answer, Signature)
            assert self.client_peer is not None
            assert verify_signature(self.client_peer.public_key() or b"", answer.signature, payload)
            number = obj["session"]
            backend = FakeBackend(self.client_peer)
            backend.key = self.backend_key
            backend.peer_id = peer(self.backend_key)
            backend.handshake = HelloHandshake(
                local_public_key=public_key_bytes(self.backend_key),
                remote_peer_id=self.client_peer,
                name="backend",
                initiator=False,
            )
            self.backends[number] = backend
            self.got[number] = 0
            self.log[number] = []
            opened = msg("opened", id=obj["id"], session=number, backend="chat", peer_id=str(backend.peer_id))
            await ws.send(opened)
        elif obj["type"] == "ping":
            await ws.send(msg("pong", id=obj["id"]))
        elif obj["type"] == "close":
            await ws.send(msg("closed", id=obj["id"], session=obj["session"], code=1000))
        elif obj["type"] == "refresh":
            self.refreshed.append(obj["token"])
            await ws.send(msg("refreshed", id=obj["id"], expires_at=1795612800))

    async def on_frame(self, ws: ServerConnection, data: bytes) -> None:
        frame = decode_data_frame(data, max_bytes=1 << 21)
        self.got[frame.session] += 1
        backend = self.backends[frame.session]
        for stream, payload in backend.on_frame(frame.stream, bytes(frame.payload)):
            await self.send(ws, frame.session, stream, payload)

    async def send(self, ws: ServerConnection, number: int, stream: str, payload: bytes) -> None:
        frame = encode_data_frame(number, stream, payload)
        self.log[number].append(frame)
        if not self.hold:
            await ws.send(frame)

    async def push(self, number: int, plaintexts: list[bytes]) -> None:
        backend = self.backends[number]
        assert backend.cipher is not None
        for text in plaintexts:
            await self.send(self.connections[-1], number, "chat", backend.cipher.encrypt(text))

    def drop(self) -> None:
        transport = self.connections[-1].transport
        transport.abort()


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[FakeGateway, str]]:
    fake = FakeGateway()
    async with serve(fake.handler, "127.0.0.1", 0, subprotocols=[SUBPROTOCOL], compression=None) as server:  # type: ignore[list-item]
        port = next(iter(server.sockets)).getsockname()[1]
        yield fake, f"ws://127.0.0.1:{port}/ws"


async def connect(url: str, **options: Any) -> GatewayClient:
    return await GatewayClient.connect(url, identity=key(), origin=ORIGIN, open_timeout=5, **options)


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - polls state owned by other code
            await asyncio.sleep(0.01)


class TestDriver:
    """The asyncio client over a real WebSocket."""

    async def test_session_round_trip(self, gateway: tuple[FakeGateway, str]) -> None:
        fake, url = gateway
        async with await connect(url) as client:
            assert client.state is ConnectionState.CONNECTED
            assert client.peer_id == fake.client_peer
            assert client.gateway_peer_id == fake.peer_id
            assert client.backends == (BackendInfo("chat", peer(fake.backend_key)),)
            assert len(client.resume_token) == 24
            assert await client.ping() >= 0
            session = await client.open("chat")
            assert session.backend_peer_id == peer(fake.backend_key)
            await session.handshake(streams=["chat"], name="alice", timeout=5)
            assert session.handshake_complete
            assert session.cipher is not None
            assert session.peer_name == "backend"
            await session.send("chat", b"hello")
            assert await session.receive(timeout=5) == Message("chat", b"echo:hello")
            await session.send_raw("chat", b"x" * 40)  # a tampered frame: the backend drops it
            await session.send("chat", b"after")
            assert await session.receive(timeout=5) == Message("chat", b"echo:after")
            assert fake.backends[session.number].decryption_errors == 1
            await session.close()
            assert session.closed
            with pytest.raises(SessionClosed):
                await session.receive(timeout=1)
        info = await client.closed
        assert info == CloseInfo(1000, "", False)
        assert client.state is ConnectionState.CLOSED

    async def test_open_refused(self, gateway: tuple[FakeGateway, str]) -> None:
        _, url = gateway
        async with await connect(url) as client:
            with pytest.raises(GatewayError) as info:
                await client.open("nope")
            assert info.value.code is Code.BACKEND_UNKNOWN

    async def test_auth_refused(self, gateway: tuple[FakeGateway, str]) -> None:
        fake, url = gateway
        fake.refuse = Code.ORIGIN_NOT_ALLOWED
        with pytest.raises(GatewayClosed) as info:
            await connect(url)
        assert info.value.code is Code.ORIGIN_NOT_ALLOWED
        assert not info.value.resumable

    async def test_no_gateway(self) -> None:
        with pytest.raises(GatewayClosed) as info:
            await connect("ws://127.0.0.1:9/ws")
        assert info.value.code == 1006

    async def test_back_pressure(self, gateway: tuple[FakeGateway, str]) -> None:
        fake, url = gateway
        async with await connect(url, inbox_size=4) as client:
            session = await client.open("chat")
            await session.handshake(timeout=5)
            await fake.push(session.number, [b"%d" % i for i in range(40)])
            await asyncio.sleep(0.2)
            assert len(session._inbox) == 4  # the client stopped reading
            got = [(await session.receive(timeout=5)).data for _ in range(40)]
            assert got == [b"%d" % i for i in range(40)]

    async def test_decryption_errors_are_counted(self, gateway: tuple[FakeGateway, str]) -> None:
        fake, url = gateway
        async with await connect(url) as client:
            session = await client.open("chat")
            await session.handshake(timeout=5)
            await fake.send(fake.connections[-1], session.number, "chat", os.urandom(40))
            await fake.push(session.number, [b"after"])
            assert await session.receive(timeout=5) == Message("chat", b"after")
            assert session.decryption_errors == 1

    async def test_handshake_timeout(self, gateway: tuple[FakeGateway, str]) -> None:
        fake, url = gateway
        async with await connect(url) as client:
            session = await client.open("chat")
            fake.hold = True  # the backend's answers never reach us
            with pytest.raises(HandshakeTimeout):
                await session.handshake(timeout=0.3)

    async def test_handshake_key_mismatch(self, gateway: tuple[FakeGateway, str]) -> None:
        fake, url = gateway
        async with await connect(url) as client:
            session = await client.open("chat")
            impostor = key()
            assert fake.client_peer is not None
            fake.backends[session.number].handshake = HelloHandshake(
                local_public_key=public_key_bytes(impostor), remote_peer_id=fake.client_peer, initiator=False
            )
            with pytest.raises(KeyMismatch):
                await session.handshake(timeout=5)
            await until(lambda: session.closed)

    async def test_manual_resume(self, gateway: tuple[FakeGateway, str]) -> None:
        fake, url = gateway
        client = await connect(url)
        try:
            session = await client.open("chat")
            await session.handshake(streams=["chat"], timeout=5)
            await session.send("chat", b"a")
            assert (await session.receive(timeout=5)).data == b"echo:a"
            fake.hold = True  # the backend's next frames are kept at the gateway
            await session.send("chat", b"b")
            await until(lambda: len(fake.log[session.number]) == 5)
            fake.forget_last = 1  # and the gateway claims it missed our last frame
            fake.drop()
            info = await client.closed
            assert info.resumable
            assert info.code == 1006
            assert client.state is ConnectionState.DISCONNECTED
            with pytest.raises(GatewayClosed) as closed:
                await session.receive(timeout=1)
            assert closed.value.resumable
            await client.resume()
            assert client.state is ConnectionState.CONNECTED
            auth = fake.auths[-1]
            assert auth.resume_sessions == {session.number: 4}  # 3 handshake + 1 echo
            assert (await session.receive(timeout=5)).data == b"echo:b"  # replayed
            assert (await session.receive(timeout=5)).data == b"echo:b"  # the re-sent frame's echo
            assert fake.frames_in[-1] == [fake.frames_in[-2][-1]]  # re-sent byte for byte
            await session.send("chat", b"c")
            assert (await session.receive(timeout=5)).data == b"echo:c"
            assert not client.closed.done()
        finally:
            await client.close()

    async def test_auto_resume(self, gateway: tuple[FakeGateway, str]) -> None:
        fake, url = gateway
        closes: list[CloseInfo] = []
        client = await connect(url, auto_resume=True, resume_delay=0.05)
        client.on_close = closes.append
        try:
            session = await client.open("chat")
            await session.handshake(timeout=5)
            fake.hold = True
            await fake.push(session.number, [b"kept"])
            fake.drop()
            assert (await session.receive(timeout=5)).data == b"kept"
            assert client.state is ConnectionState.CONNECTED
            assert closes == [CloseInfo(1006, "", True)]
            await session.send("chat", b"again")
            assert (await session.receive(timeout=5)).data == b"echo:again"
        finally:
            await client.close()

    async def test_resume_refused(self, gateway: tuple[FakeGateway, str]) -> None:
        fake, url = gateway
        client = await connect(url)
        session = await client.open("chat")
        fake.drop()
        await client.closed
        fake.token = os.urandom(24)  # the gateway no longer knows our token
        with pytest.raises(GatewayClosed) as info:
            await client.resume()
        assert info.value.code is Code.RESUME_FAILED
        assert client.state is ConnectionState.CLOSED
        assert session.closed
        with pytest.raises(InvalidState):
            await client.resume()
        await client.close()

    async def test_token_refresh_is_used_to_resume(self, gateway: tuple[FakeGateway, str]) -> None:
        fake, url = gateway
        client = await connect(url, token="t1")
        try:
            assert fake.auths[-1].token == "t1"
            client.on_token_expiring = lambda expires_at: client.refresh_token("t2")
            await fake.connections[-1].send(msg("token_expiring", expires_at=1795612800))
            await until(lambda: fake.refreshed == ["t2"])
            await asyncio.sleep(0.05)
            fake.drop()
            await client.closed
            await client.resume()
            assert fake.auths[-1].token == "t2"
        finally:
            await client.close()

    async def test_session_closed_by_the_gateway_ends_iteration(
        self, gateway: tuple[FakeGateway, str]
    ) -> None:
        fake, url = gateway
        async with await connect(url) as client:
            session = await client.open("chat")
            await session.handshake(timeout=5)
            await fake.push(session.number, [b"1", b"2"])
            await fake.connections[-1].send(msg("closed", session=session.number, code=4109, message="gone"))
            got = [m.data async for m in session]
            assert got == [b"1", b"2"]
            assert session.close_error is not None
            assert session.close_error.code is Code.BACKEND_CLOSED
            assert client.sessions == {}

    async def test_auto_resume_refused(self, gateway: tuple[FakeGateway, str]) -> None:
        fake, url = gateway
        client = await connect(url, auto_resume=True, resume_delay=0.05)
        session = await client.open("chat")
        fake.token = os.urandom(24)
        fake.drop()
        info = await asyncio.wait_for(client.closed, 5)
        assert info.code == Code.RESUME_FAILED
        assert not info.resumable
        assert client.state is ConnectionState.CLOSED
        assert session.closed
        await client.close()

    async def test_drain_is_final(self, gateway: tuple[FakeGateway, str]) -> None:
        fake, url = gateway
        delays: list[float] = []
        client = await connect(url, auto_resume=True)
        client.on_drain = delays.append
        ws = fake.connections[-1]
        await ws.send(msg("drain", reconnect_after_ms=1834))
        await ws.close(1001, "draining")
        info = await asyncio.wait_for(client.closed, 5)
        assert info == CloseInfo(1001, "draining", False)
        assert delays == [1.834]
        await client.close()
