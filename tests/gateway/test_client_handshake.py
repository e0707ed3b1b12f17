"""The Python client's pluggable handshake (glueberry_gateway.client.handshake), sans I/O: a
session of the client core runs the example "proof" handshake (examples/proof_handshake.py)
against the same class as the backend's responder, and every error path — a malformed message,
a key that is not the backend's, completion before prepare, an application's exception, a
factory that fails — ends the session with a typed error and closes it at the gateway."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from examples.proof_handshake import ProofHandshake, proof_handshake
from glueberry.exceptions import HandshakeError, InvalidArgument, KeyMismatch
from glueberry.handshake import (
    FinalizeRequested,
    HandshakeMachine,
    HandshakeStep,
    PrepareRequested,
    encode_hello,
    encode_pubkey,
)
from glueberry.p2p.keys import PeerID, public_key_bytes
from glueberry_gateway.client.events import (
    HandshakeCompleted,
    HandshakeFailed,
    MessageReceived,
    PeerInfoReceived,
    SessionEnded,
)
from glueberry_gateway.client.handshake import HandshakeContext, hello_handshake
from glueberry_gateway.protocol.control import Close, decode_client_message
from glueberry_gateway.protocol.frames import decode_data_frame, encode_data_frame
from tests.gateway.client_script import FakeBackend, Script

STREAMS = ("alpha", "beta", "gamma")


def proof_responder(name: str = "svc") -> object:
    def make(key: Ed25519PrivateKey, client: PeerID) -> HandshakeMachine:
        return ProofHandshake(key, client, initiator=False, streams=STREAMS, name=name)

    return make


def with_backend(script: Script, **options: object) -> Script:
    script.backend = FakeBackend(script.core.peer_id, **options)  # type: ignore[arg-type]
    return script


def closed_at_gateway(script: Script, number: int) -> bool:
    return any(
        isinstance(item, str) and isinstance(m := decode_client_message(item), Close) and m.session == number
        for item in script.core.data_to_send()
    )


class TestProofHandshake:
    def test_runs_with_app_data_and_the_streams_it_prepared(self) -> None:
        script = with_backend(Script(), responder=proof_responder("svc"))
        script.authenticate()
        number = script.open()
        script.core.start_handshake(number, handshake=proof_handshake(streams=STREAMS, name="py"))
        script.relay(number)
        events = script.core.events_received()
        assert PeerInfoReceived(number, {"name": "svc", "version": 2}) in events
        assert HandshakeCompleted(number, public_key_bytes(script.backend.key)) in events
        record = script.core.session(number)
        assert record.streams == frozenset(STREAMS)
        assert record.info == {"name": "svc", "version": 2}
        for stream in STREAMS:
            script.core.send_data(number, stream, stream.encode())
        script.relay(number)
        assert script.backend.received == [(s, s.encode()) for s in STREAMS]
        echoes = [e for e in script.core.events_received() if isinstance(e, MessageReceived)]
        assert [(e.stream, e.data) for e in echoes] == [(s, b"echo:" + s.encode()) for s in STREAMS]

    def test_the_context_a_factory_gets(self) -> None:
        seen: list[HandshakeContext] = []

        def make(context: HandshakeContext) -> HandshakeMachine:
            seen.append(context)
            return hello_handshake("x")(context)

        script = Script()
        script.authenticate()
        number = script.open()
        script.core.start_handshake(number, streams=["chat"], handshake=make)
        (context,) = seen
        assert context.remote_peer_id == script.backend.peer_id
        assert context.public_key == public_key_bytes(script.identity)
        assert context.backend == "chat"
        assert context.streams == ("chat",)

    def test_hello_stays_the_default_byte_for_byte(self) -> None:
        script = Script()
        script.authenticate()
        number = script.open()
        script.core.start_handshake(number, name="alice")
        frames = [
            decode_data_frame(x, max_bytes=1 << 20)
            for x in script.core.data_to_send()
            if isinstance(x, bytes)
        ]
        assert [(f.stream, bytes(f.payload)) for f in frames] == [
            ("handshake", encode_hello("alice")),
            ("handshake", encode_pubkey(public_key_bytes(script.identity))),
        ]
        with pytest.raises(InvalidArgument):
            hello_handshake("x" * 65)


class Scripted:
    """A handshake that answers each received message with the given steps, in order."""

    def __init__(self, steps: Sequence[HandshakeStep | Exception], first: list[bytes] | None = None) -> None:
        self.steps = list(steps)
        self.first = first or [b"\x10"]

    def start(self) -> list[bytes]:
        return self.first

    def receive(self, message: bytes) -> HandshakeStep:
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def failed(script: Script, number: int, make: object) -> BaseException:
    script.core.start_handshake(number, handshake=make)  # type: ignore[arg-type]
    script.core.data_to_send()
    script.core.receive_binary(_handshake_frame(number, b"\x11"))
    events = script.core.events_received()
    (failure,) = [e for e in events if isinstance(e, HandshakeFailed)]
    assert any(isinstance(e, SessionEnded) and e.session == number for e in events)
    return failure.error


def _handshake_frame(number: int, payload: bytes) -> bytes:
    return encode_data_frame(number, "handshake", payload)


class TestErrors:
    def opened(self) -> tuple[Script, int]:
        script = Script()
        script.authenticate()
        return script, script.open()

    def test_a_malformed_message(self) -> None:
        script, number = self.opened()
        error = failed(script, number, lambda c: Scripted([HandshakeError("bad message")]))
        assert isinstance(error, HandshakeError)
        assert closed_at_gateway(script, number)

    def test_a_key_that_is_not_the_backends(self) -> None:
        script, number = self.opened()
        other = public_key_bytes(Ed25519PrivateKey.generate())
        error = failed(script, number, lambda c: Scripted([HandshakeStep((PrepareRequested(other),))]))
        assert isinstance(error, KeyMismatch)

    def test_completion_before_prepare(self) -> None:
        script, number = self.opened()
        error = failed(script, number, lambda c: Scripted([HandshakeStep((FinalizeRequested(),))]))
        assert isinstance(error, HandshakeError)
        assert "before it prepared" in str(error)

    def test_an_exception_of_the_applications_is_wrapped(self) -> None:
        script, number = self.opened()
        error = failed(script, number, lambda c: Scripted([ZeroDivisionError("oops")]))
        assert type(error) is HandshakeError
        assert "ZeroDivisionError" in str(error)

    def test_bad_stream_names_to_prepare(self) -> None:
        script, number = self.opened()
        key = public_key_bytes(script.backend.key)
        error = failed(
            script, number, lambda c: Scripted([HandshakeStep((PrepareRequested(key, ("handshake",)),))])
        )
        assert isinstance(error, InvalidArgument)

    def test_a_factory_that_fails(self) -> None:
        script, number = self.opened()

        def broken(context: HandshakeContext) -> HandshakeMachine:
            raise RuntimeError("no handshake today")

        script.core.start_handshake(number, handshake=broken)
        events = script.core.events_received()
        (failure,) = [e for e in events if isinstance(e, HandshakeFailed)]
        assert isinstance(failure.error, HandshakeError)
        assert closed_at_gateway(script, number)

    def test_the_backend_refuses(self) -> None:
        script = with_backend(Script(), responder=proof_responder())
        script.authenticate()
        number = script.open()
        script.core.start_handshake(number, handshake=proof_handshake(streams=STREAMS))
        script.core.data_to_send()
        script.core.receive_binary(_handshake_frame(number, b"\x2fversion 3 is not spoken here"))
        (failure,) = [e for e in script.core.events_received() if isinstance(e, HandshakeFailed)]
        assert "refused: version 3" in str(failure.error)

    def test_an_impostor_is_refused_at_its_intro(self) -> None:
        script = with_backend(Script(), responder=proof_responder())
        impostor = Ed25519PrivateKey.generate()  # signs as itself: its key is not the backend's ID
        script.authenticate()
        number = script.open()
        script.core.start_handshake(number, handshake=proof_handshake(streams=STREAMS))
        script.backend.handshake = ProofHandshake(
            impostor, script.core.peer_id, initiator=False, streams=STREAMS
        )
        script.relay(number)
        (failure,) = [e for e in script.core.events_received() if isinstance(e, HandshakeFailed)]
        assert isinstance(failure.error, KeyMismatch)
