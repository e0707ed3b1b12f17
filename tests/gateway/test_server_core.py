"""The gateway's socket core (glueberry_gateway.server.core), sans I/O, against the real client core
in memory (tests.gateway.core_pair): each rule of docs/gateway-protocol.md that the server side
enforces, without a socket. The same rules over real sockets are in test_gateway_bad_input.py."""

from __future__ import annotations

import os
import time

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from glueberry.p2p.keys import PeerID, generate_private_key
from glueberry.p2p.signer import NOISE_SIGNATURE_PREFIX
from glueberry_gateway.client.events import (
    Authenticated,
    DrainRequested,
    GatewayErrorReceived,
    Pong,
    SessionEnded,
    SessionErrorReceived,
    SessionOpened,
    SessionOpenFailed,
    SessionResumed,
    StreamEnded,
    TokenExpiring,
    TokenRefreshed,
)
from glueberry_gateway.protocol import control
from glueberry_gateway.protocol.codes import CloseSocket, Code
from glueberry_gateway.protocol.control import ResumeOutcome
from glueberry_gateway.protocol.errors import BackendUnavailable, SignTimeout, TooManyStreams
from glueberry_gateway.protocol.frames import encode_batch, encode_data_frame
from glueberry_gateway.server.core import ServerState
from glueberry_gateway.server.events import (
    AuthAccepted,
    AuthRefused,
    CloseRequested,
    DataReceived,
    OpenRequested,
    TokenChanged,
)
from glueberry_gateway.server.settings import Settings, TokenSettings
from tests.gateway.core_pair import ORIGIN, CorePair, FakeSession, backend


def make_pair(**options: object) -> CorePair:
    settings = Settings(allowed_origins=(ORIGIN,), backends=(backend("chat"), backend("other")))
    for key, value in options.pop("limits", {}).items():  # type: ignore[attr-defined]
        setattr(settings.limits, key, value)
    if "tokens" in options:
        settings.tokens = options.pop("tokens")  # type: ignore[assignment]
    return CorePair(settings, **options)  # type: ignore[arg-type]


def error_of(text: str) -> dict[str, object]:
    message = orjson.loads(text)
    assert message["type"] == "error", message
    return message  # type: ignore[no-any-return]


class TestAuthentication:
    """§3: challenge, auth, ready; what ends the socket before it is ready."""

    def test_challenge_auth_ready(self) -> None:
        pair = make_pair()
        (challenge,) = pair.to_client()
        assert orjson.loads(challenge)["gateway"] == str(pair.gateway_peer_id)
        pair.to_server()
        events = pair.take_server_events()
        assert events == [AuthAccepted(pair.client.peer_id, None)]
        assert pair.server.state is ServerState.AUTHENTICATED
        assert pair.server.data_to_send() == []  # nothing before the driver decided the resume
        pair.server.accept({}, None)
        pair.to_client()
        assert pair.server.state is ServerState.READY
        (ready,) = [e for e in pair.take_client_events() if isinstance(e, Authenticated)]
        assert {b.name for b in ready.backends} == {"chat", "other"}
        assert ready.resume_token == pair.server.resume_token

    def test_a_disallowed_origin_is_refused(self) -> None:
        pair = make_pair(client_options={"upgrade_origin": "https://evil.test"})
        pair.to_client()
        pair.to_server()
        assert pair.take_server_events() == [AuthRefused(Code.ORIGIN_NOT_ALLOWED)]
        texts = pair.to_client()
        assert error_of(texts[0])["code"] == Code.ORIGIN_NOT_ALLOWED
        assert pair.server_closed == CloseSocket(Code.ORIGIN_NOT_ALLOWED, "this page's origin is not allowed")

    def test_an_expired_challenge(self) -> None:
        pair = make_pair(limits={"challenge_ttl": 5.0})
        pair.to_client()
        pair.now += 6.0
        pair.to_server()
        assert pair.take_server_events() == [AuthRefused(Code.CHALLENGE_EXPIRED)]

    def test_a_signature_for_another_challenge(self) -> None:
        pair = make_pair()
        pair.to_client()
        auth = pair.client.data_to_send()[0]
        assert isinstance(auth, str)
        fields = orjson.loads(auth)
        fields["signature"] = control.b64e(pair.identity.sign(b"something else"))
        pair.server.receive_text(orjson.dumps(fields).decode(), pair.now)
        assert pair.server.events_received() == [AuthRefused(Code.AUTH_FAILED)]
        assert pair.server.close_code is not None
        assert pair.server.close_code[0] is Code.AUTH_FAILED

    def test_binary_before_auth_is_a_protocol_error_not_an_auth_failure(self) -> None:
        pair = make_pair()
        pair.to_client()
        pair.server.receive_binary(encode_data_frame(1, "chat", b"x"), pair.now)
        assert pair.server.events_received() == []  # not counted as a failed authentication
        assert pair.server.close_code == (Code.PROTOCOL_ERROR, "binary frame before auth")

    def test_another_message_first(self) -> None:
        pair = make_pair()
        pair.server.receive_text(control.encode(control.Ping(1)), pair.now)
        assert pair.server.events_received() == [AuthRefused(Code.PROTOCOL_ERROR)]

    def test_a_token_is_required(self) -> None:
        pair = make_pair(tokens=TokenSettings(required=True, algorithms=("HS256",), key="s" * 32))
        pair.to_client()
        pair.to_server()
        assert pair.take_server_events() == [AuthRefused(Code.TOKEN_INVALID)]

    def test_nothing_is_read_after_the_close(self) -> None:
        pair = make_pair()
        pair.server.fail(Code.IDLE_TIMEOUT, "idle")
        pair.server.receive_text(control.encode(control.Ping(1)), pair.now)
        assert pair.server.events_received() == []
        out = pair.server.data_to_send()
        assert out[-1] == CloseSocket(Code.IDLE_TIMEOUT, "idle")
        assert not any(isinstance(item, str) and "pong" in item for item in out)


class TestTokens:
    """§4: claims, refresh, the expiry notice and the expiry."""

    issuer = Ed25519PrivateKey.generate()
    identity = generate_private_key()

    def pair(self, token: str) -> CorePair:
        pem = self.issuer.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        tokens = TokenSettings(required=True, algorithms=("EdDSA",), key=pem)
        return make_pair(tokens=tokens, identity=self.identity, client_options={"token": token})

    def mint(self, expires_at: float, **claims: object) -> str:
        key = self.issuer.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        sub = str(PeerID.from_private_key(self.identity))
        return jwt.encode({"sub": sub, "exp": expires_at, **claims}, key, "EdDSA")

    def test_claims_limit_the_backends_and_time_the_token(self) -> None:
        expires_at = int(time.time()) + 600
        pair = self.pair(self.mint(expires_at, backends=["chat"]))
        pair.to_client()
        pair.to_server()
        assert pair.take_server_events() == [
            TokenChanged(expires_at),
            AuthAccepted(pair.client.peer_id, None),
        ]
        pair.server.accept({}, None)
        pair.to_client()
        (ready,) = [e for e in pair.take_client_events() if isinstance(e, Authenticated)]
        assert [b.name for b in ready.backends] == ["chat"]
        pair.client.open("other")
        pair.to_server()
        pair.to_client()
        (failed,) = [e for e in pair.take_client_events() if isinstance(e, SessionOpenFailed)]
        assert failed.error.code == Code.BACKEND_NOT_ALLOWED

    def test_refresh_notice_and_expiry(self) -> None:
        first = int(time.time()) + 600
        pair = self.pair(self.mint(first))
        pair.authenticate()
        pair.client.refresh_token(self.mint(first + 60))
        pair.to_server()
        assert pair.take_server_events() == [TokenChanged(first + 60)]
        pair.to_client()
        assert [type(e) for e in pair.take_client_events()] == [TokenRefreshed]
        pair.server.token_notice(first)  # the old token's timers: nothing
        pair.server.token_expired(first)
        assert pair.server.data_to_send() == []
        pair.server.token_notice(first + 60)
        pair.to_client()
        assert pair.take_client_events() == [TokenExpiring(first + 60)]
        pair.server.token_expired(first + 60)
        pair.to_client()
        assert pair.server_closed is not None
        assert pair.server_closed.code == Code.TOKEN_EXPIRED

    def test_a_refresh_for_another_browser_ends_the_socket(self) -> None:
        pair = self.pair(self.mint(int(time.time()) + 600))
        pair.authenticate()
        other = jwt.decode(self.mint(int(time.time()) + 600), options={"verify_signature": False})
        other["sub"] = str(PeerID.from_private_key(generate_private_key()))
        key = self.issuer.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        pair.client.refresh_token(jwt.encode(other, key, "EdDSA"))
        pair.to_server()
        assert pair.server.close_code is not None
        assert pair.server.close_code[0] is Code.TOKEN_INVALID


class TestSessions:
    """§5.1, §5.4: open (with the browser's signature), refusals, close, the gateway's end."""

    def test_open_sign_opened(self) -> None:
        pair = make_pair()
        pair.authenticate()
        number, session = pair.open()
        assert pair.server.sessions == {number: session}
        opened = [e for e in pair.take_client_events() if isinstance(e, SessionOpened)]
        assert [e.session for e in opened] == [number]

    def test_the_browser_refuses_to_sign_anything_else(self) -> None:
        pair = make_pair()
        pair.authenticate()
        number = pair.client.open("chat")
        pair.to_server()
        assert pair.sign(number, b"not a noise payload") is None

    @pytest.mark.parametrize(
        ("name", "number", "code"),
        [("nowhere", 2, Code.BACKEND_UNKNOWN), ("chat", 1, Code.SESSION_EXISTS)],
    )
    def test_refusals_answer_the_request_and_keep_the_socket(
        self, name: str, number: int, code: Code
    ) -> None:
        pair = make_pair()
        pair.authenticate()
        pair.open()
        pair.server.receive_text(control.encode(control.Open(9, number, name)), pair.now)
        (text,) = pair.server.data_to_send()
        assert isinstance(text, str)
        assert error_of(text) == {
            "type": "error",
            "code": code,
            "message": error_of(text)["message"],
            "id": 9,
            "session": number,
        }
        assert not pair.server.closing

    def test_max_sessions_counts_those_being_opened(self) -> None:
        pair = make_pair(limits={"max_sessions": 2})
        pair.authenticate()
        for number in (1, 2):
            pair.server.receive_text(control.encode(control.Open(number, number, "chat")), pair.now)
        assert [type(e) for e in pair.server.events_received()] == [OpenRequested, OpenRequested]
        pair.server.receive_text(control.encode(control.Open(3, 3, "chat")), pair.now)
        assert error_of(str(pair.server.data_to_send()[0]))["code"] == Code.TOO_MANY_SESSIONS
        assert pair.server.opening == {1, 2}

    def test_an_address_instead_of_a_backend(self) -> None:
        pair = make_pair()
        pair.authenticate()
        text = control.encode_json("open", id=4, session=2, backend="chat", addrs=["/ip4/10.0.0.1/tcp/1"])
        pair.server.receive_text(text, pair.now)
        assert error_of(str(pair.server.data_to_send()[0]))["code"] == Code.BACKEND_UNKNOWN

    @pytest.mark.parametrize(
        ("failure", "code"),
        [
            (BackendUnavailable("cannot reach chat"), Code.BACKEND_UNAVAILABLE),
            (SignTimeout("no signature in time"), Code.SIGN_TIMEOUT),  # named by the one table
        ],
    )
    def test_a_failed_dial_answers_the_open(self, failure: Exception, code: Code) -> None:
        pair = make_pair()
        pair.authenticate()
        number = pair.client.open("chat")
        pair.to_server()
        (request,) = pair.take_server_events()
        assert isinstance(request, OpenRequested)
        pair.server.open_failed(request.id, number, failure)
        pair.to_client()
        (failed,) = pair.take_client_events()
        assert isinstance(failed, SessionOpenFailed)
        assert failed.error.code == code
        assert pair.server.opening == set()

    def test_sign_answers(self) -> None:
        pair = make_pair()
        pair.authenticate()
        number = pair.client.open("chat")
        pair.to_server()
        pair.take_server_events()
        pair.sign(number, NOISE_SIGNATURE_PREFIX + os.urandom(32))
        late = control.encode(control.Signature(1, os.urandom(64)))  # a request that timed out
        pair.server.receive_text(late, pair.now)
        assert not pair.server.closing
        unknown = control.encode(control.Signature(7, os.urandom(64)))  # never asked
        pair.server.receive_text(unknown, pair.now)
        assert pair.server.close_code is not None
        assert pair.server.close_code[0] is Code.PROTOCOL_ERROR

    def test_close_by_the_browser(self) -> None:
        pair = make_pair()
        pair.authenticate()
        number, session = pair.open()
        pair.take_client_events()
        pair.client.close_session(number)
        pair.to_server()
        assert pair.take_server_events() == [CloseRequested(session)]
        pair.to_client()
        assert [type(e) for e in pair.take_client_events()] == [SessionEnded]
        assert pair.server.sessions == {}

    def test_the_gateway_ends_a_session_and_a_stream(self) -> None:
        pair = make_pair()
        pair.authenticate()
        number, session = pair.open()
        pair.take_client_events()
        pair.server.stream_closed(number, "chat")
        assert pair.server.session_ended(number, Code.BACKEND_CLOSED, "gone") is session
        assert pair.server.session_ended(number, Code.BACKEND_CLOSED, "gone") is None
        pair.to_client()
        events = pair.take_client_events()
        assert events[0] == StreamEnded(number, "chat")
        assert events[1] == SessionEnded(number, Code.BACKEND_CLOSED, "gone")


class TestData:
    """§5.2, §5.6, §7: frames for the backends, batches, rates."""

    def established(self, **options: object) -> tuple[CorePair, int, FakeSession]:
        pair = make_pair(**options)
        pair.authenticate()
        number, session = pair.open()
        pair.take_client_events()
        return pair, number, session

    def test_a_frame_for_the_backend(self) -> None:
        pair, number, session = self.established()
        pair.client.send_raw(number, "chat", b"ciphertext")
        pair.to_server()
        (event,) = pair.take_server_events()
        assert isinstance(event, DataReceived)
        assert (event.session, event.number, event.stream, bytes(event.payload)) == (
            session,
            number,
            "chat",
            b"ciphertext",
        )

    def test_an_error_about_one_frame_of_a_batch_does_not_stop_the_others(self) -> None:
        pair, number, _ = self.established()
        frames = [
            encode_data_frame(number, "chat", b"first"),
            encode_data_frame(9, "chat", b"to nowhere"),
            encode_data_frame(number, "bad name!", b"x"),
            encode_data_frame(number, "chat", b"last"),
        ]
        pair.server.receive_binary(encode_batch(frames), pair.now)
        events = pair.server.events_received()
        assert [bytes(e.payload) for e in events if isinstance(e, DataReceived)] == [b"first", b"last"]
        errors = [error_of(str(t)) for t in pair.server.data_to_send()]
        assert [(e["code"], e["session"]) for e in errors] == [
            (Code.SESSION_NOT_FOUND, 9),
            (Code.INVALID_STREAM, number),
        ]
        assert pair.metrics.drops.labels("unknown_session")._value.get() == 1

    def test_each_frame_of_a_batch_counts_against_the_rate(self) -> None:
        pair, number, _ = self.established(limits={"messages_per_second": 10})
        frame = encode_data_frame(number, "chat", b"x")
        pair.server.receive_binary(encode_batch([frame] * 11), pair.now)
        assert pair.server.events_received() == []
        assert pair.server.close_code is not None
        assert pair.server.close_code[0] is Code.RATE_LIMITED

    def test_a_failed_relay_is_answered_for_its_session(self) -> None:
        pair, number, _ = self.established()
        pair.server.data_failed(number, TooManyStreams("session 1 has 16 streams"))
        pair.to_client()
        (event,) = pair.take_client_events()
        assert isinstance(event, SessionErrorReceived)
        assert event.error.code == Code.TOO_MANY_STREAMS

    def test_an_unexpected_error_is_a_gateway_bug(self) -> None:
        pair, number, _ = self.established()
        pair.server.data_failed(number, RuntimeError("oops"))
        assert pair.server.close_code == (Code.INTERNAL_ERROR, "internal error")

    def test_a_frame_too_big(self) -> None:
        pair, number, _ = self.established(limits={"max_frame_bytes": 64})
        pair.server.receive_binary(encode_data_frame(number, "chat", bytes(100)), pair.now)
        assert pair.server.close_code is not None
        assert pair.server.close_code[0] is Code.MESSAGE_TOO_BIG


class TestRequestsAndEnding:
    """§5.5 ping; §6 resume; §7–§8 how a socket ends."""

    def test_ping(self) -> None:
        pair = make_pair()
        pair.authenticate()
        request_id = pair.client.ping()
        pair.to_server()
        pair.to_client()
        assert pair.take_client_events() == [Pong(request_id)]

    def test_drain(self) -> None:
        pair = make_pair()
        pair.authenticate()
        pair.server.drain(1500)
        pair.server.drain(99)  # once
        pair.to_client()
        assert pair.server_closed == CloseSocket(Code.GOING_AWAY, "the gateway is restarting")
        assert DrainRequested(1500) in pair.take_client_events()

    @pytest.mark.parametrize(
        ("code", "lost", "ends_with"),
        [(1006, True, Code.NORMAL), (1001, False, Code.NORMAL), (1009, False, Code.MESSAGE_TOO_BIG)],
    )
    def test_the_socket_lost(self, code: int, lost: bool, ends_with: Code) -> None:
        pair = make_pair()
        pair.authenticate()
        pair.server.connection_lost(code)
        assert pair.server.lost is lost
        assert pair.server.finish()[0] is ends_with

    def test_a_slow_consumer_is_not_told(self) -> None:
        pair = make_pair()
        pair.authenticate()
        pair.client.ping()
        pair.to_server()
        pair.server.abort(Code.SLOW_CONSUMER, "does not read")
        assert pair.server.data_to_send() == []
        assert pair.server.finish() == (Code.SLOW_CONSUMER, "does not read")

    def test_resume_answers_each_session(self) -> None:
        first = make_pair()
        first.authenticate()
        number, session = first.open()
        first.client.send_raw(number, "chat", b"a")
        first.to_server()
        first.client.connection_closed(1006)
        state = first.client.resume_state()
        second = make_pair(identity=first.identity, client_options={"resume": state})
        second.settings.backends = first.settings.backends
        second.to_client()
        second.to_server()
        (accepted,) = second.take_server_events()
        assert isinstance(accepted, AuthAccepted)
        assert accepted.resume is not None
        assert accepted.resume.sessions == {number: 0}
        second.server.accept({number: session}, {number: ResumeOutcome(True, 0)})
        second.to_client()
        assert SessionResumed(number, 1) in second.take_client_events()
        assert second.server.sessions == {number: session}
        resent = second.to_server()  # the frame the gateway said it did not get
        assert resent == [encode_data_frame(number, "chat", b"a")]


def test_socket_level_errors_are_sent_before_the_close() -> None:
    """§8: an ``error`` message names the code, then the close with it."""
    pair = make_pair()
    pair.authenticate()
    pair.server.receive_text("not json", pair.now)
    out = pair.server.data_to_send()
    assert error_of(str(out[0]))["code"] == Code.PROTOCOL_ERROR
    assert out[1] == CloseSocket(Code.PROTOCOL_ERROR, "control message is not JSON")
    pair.to_client()
    assert [type(e) for e in pair.take_client_events()] == []  # the error came with the core's own close


def test_gateway_errors_reach_a_client() -> None:
    pair = make_pair()
    pair.authenticate()
    pair.server.fail(Code.IDLE_TIMEOUT, "idle for too long")
    pair.to_client()
    events = pair.take_client_events()
    assert isinstance(events[0], GatewayErrorReceived)
    assert events[0].error.code == Code.IDLE_TIMEOUT
    assert pair.server_closed == CloseSocket(Code.IDLE_TIMEOUT, "idle for too long")


def test_a_new_identity_each_pair() -> None:
    assert make_pair().client.peer_id != make_pair(identity=generate_private_key()).client.peer_id
