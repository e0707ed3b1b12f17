"""The Hello / PubKey / Complete application handshake (PROTOCOL.md §10; js-client/src/handshake.ts).

Three layers of checks: the canonical transcripts of ``tests/vectors/hello_handshake.json`` (which
the TypeScript tests are to consume too), a one-to-one mirror of ``js-client/test/handshake.test.ts``
with the exact bytes, and properties (two machines under any delivery schedule, arbitrary input).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glueberry.exceptions import (
    ErrorCode,
    HandshakeError,
    InvalidArgument,
    InvalidKey,
    InvalidPeerID,
    InvalidState,
    KeyMismatch,
)
from glueberry.handshake import (
    MAX_NAME_BYTES,
    Complete,
    FinalizeRequested,
    HandshakeEvent,
    HandshakeState,
    HandshakeStep,
    Hello,
    HelloHandshake,
    PeerHello,
    PrepareRequested,
    PubKey,
    SendMessage,
    decode_handshake_message,
    encode_complete,
    encode_hello,
    encode_pubkey,
)
from glueberry.p2p.keys import PeerID, private_key_from_bytes, public_key_bytes
from glueberry.wire.cipher import StreamCipher, shared_key
from glueberry.wire.framing import Frame, FrameDecoder, encode_frame
from tests.helpers import splits

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "hello_handshake.json").read_text())
PEERS: dict[str, dict[str, Any]] = VECTORS["peers"]
S = HandshakeState

# ----------------------------------------------------------------------------------------------
# The peers and the exact messages of the TypeScript tests (seeds 01*32, 02*32, 03*32).

SEED_A, SEED_B, SEED_M = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
KEY_A, KEY_B, KEY_M = (public_key_bytes(private_key_from_bytes(s)) for s in (SEED_A, SEED_B, SEED_M))
ID_A, ID_B = PeerID.from_public_key(KEY_A), PeerID.from_public_key(KEY_B)

HELLO_EMPTY = bytes.fromhex("01")
HELLO_ALICE = bytes.fromhex("01616c696365")
HELLO_BOB = bytes.fromhex("01626f62")
HELLO_AGAIN = bytes.fromhex("01616761696e")
HELLO_A = bytes.fromhex("0161")
PUBKEY_A = bytes.fromhex("028a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c")
PUBKEY_B = bytes.fromhex("028139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394")
PUBKEY_M = b"\x02" + KEY_M
COMPLETE = bytes.fromhex("03")

ERRORS: dict[str, type[Exception]] = {
    "handshake": HandshakeError,
    "key_mismatch": KeyMismatch,
    "invalid_key": InvalidKey,
    "invalid_state": InvalidState,
}


def machine(local: bytes, remote: PeerID, *, initiator: bool, name: str = "") -> HelloHandshake:
    return HelloHandshake(local_public_key=local, remote_peer_id=remote, name=name, initiator=initiator)


def kinds(events: list[HandshakeEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


def as_json(events: list[HandshakeEvent]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for e in events:
        if isinstance(e, PeerHello):
            out.append({"type": "peer_hello", "name": e.name})
        elif isinstance(e, PrepareRequested):
            out.append({"type": "prepare", "public_key": e.public_key.hex()})
        else:
            out.append({"type": "finalize"})
    return out


def hexes(*messages: bytes) -> list[str]:
    return [m.hex() for m in messages]


def run(a: HelloHandshake, b: HelloHandshake) -> tuple[list[HandshakeEvent], list[HandshakeEvent], list[str]]:
    """Deliver messages between two machines until nobody has anything left to send (TS ``run``)."""
    events_a: list[HandshakeEvent] = []
    events_b: list[HandshakeEvent] = []
    wire: list[str] = []
    to_b, to_a = a.start(), b.start()
    while to_a or to_b:
        next_a: list[bytes] = []
        next_b: list[bytes] = []
        for m in to_b:
            wire.append("a>" + m[:1].hex())
            step = b.receive(m)
            next_a += step.send
            events_b += step.events
        for m in to_a:
            wire.append("b>" + m[:1].hex())
            step = a.receive(m)
            next_b += step.send
            events_a += step.events
        to_a, to_b = next_a, next_b
    return events_a, events_b, wire


# ----------------------------------------------------------------------------------------------


class TestVectorTranscripts:
    """tests/vectors/hello_handshake.json: every step's sends, events, state and error."""

    @pytest.mark.parametrize("transcript", VECTORS["transcripts"], ids=lambda t: t["name"])
    def test_transcript(self, transcript: dict[str, Any]) -> None:
        hs = machine(
            bytes.fromhex(PEERS[transcript["local"]]["ed25519_public_key"]),
            PeerID.from_string(PEERS[transcript["remote"]]["peer_id"]),
            initiator=transcript["initiator"],
            name=transcript["hello_name"],
        )
        for index, step in enumerate(transcript["steps"]):
            where = f"{transcript['name']} step {index}"
            send: list[bytes] = []
            events: list[HandshakeEvent] = []
            if "error" in step:
                with pytest.raises(ERRORS[step["error"]]) as info:
                    self._call(hs, step)
                if step["error"] == "handshake":  # HandshakeError itself, not a subclass
                    assert type(info.value) is HandshakeError, where
            else:
                send, events = self._call(hs, step)
                assert [m.hex() for m in send] == step["send"], where
                assert as_json(events) == step["events"], where
            assert hs.state.value == step["state"], where
        assert hs.peer_name == transcript["peer_name"]

    @staticmethod
    def _call(hs: HelloHandshake, step: dict[str, Any]) -> tuple[list[bytes], list[HandshakeEvent]]:
        if step["call"] == "start":
            return hs.start(), []
        if step["call"] == "receive":
            result = hs.receive(bytes.fromhex(step["message"]))
            return result.send, result.events
        assert step["call"] == "established_by_traffic"
        return [], hs.established_by_traffic()

    def test_peers_are_the_shared_vector_peers(self, vectors: dict[str, Any]) -> None:
        for name, seed in (("a", SEED_A), ("b", SEED_B), ("mallory", SEED_M)):
            peer = PEERS[name]
            assert peer["ed25519_seed"] == seed.hex()
            assert peer["ed25519_public_key"] == public_key_bytes(private_key_from_bytes(seed)).hex()
            assert peer["peer_id"] == str(PeerID.from_public_key(bytes.fromhex(peer["ed25519_public_key"])))
        assert PEERS["a"]["peer_id"] == vectors["peer_a"]["peer_id"] == str(ID_A)
        assert PEERS["b"]["peer_id"] == vectors["peer_b"]["peer_id"] == str(ID_B)

    def test_the_ts_sequences_are_all_there(self) -> None:
        """Each TypeScript test's received messages appear, byte for byte, in the vector file."""
        received = {
            t["name"]: [s["message"] for s in t["steps"] if s["call"] == "receive"]
            for t in VECTORS["transcripts"]
        }
        assert received["initiator"] == hexes(HELLO_BOB, PUBKEY_B, COMPLETE)
        assert received["responder"] == hexes(HELLO_ALICE, PUBKEY_A, COMPLETE)
        assert received["both_initiators"] == hexes(HELLO_EMPTY, PUBKEY_A, COMPLETE)
        assert received["complete_first_and_duplicates"] == hexes(
            HELLO_BOB, HELLO_AGAIN, COMPLETE, PUBKEY_B, PUBKEY_B, COMPLETE
        )
        assert received["pubkey_before_hello"] == hexes(PUBKEY_B)
        assert received["established_by_traffic"] == hexes(PUBKEY_B, COMPLETE)
        assert received["key_mismatch"] == hexes(HELLO_BOB, PUBKEY_M, PUBKEY_B)
        assert received["unknown_type"] == ["07", "01"]
        assert received["low_order_key"] == ["02" + "01" + "00" * 31]

    @pytest.mark.parametrize("case", VECTORS["hello_names"]["cases"], ids=lambda c: c["message"][:12])
    def test_hello_names(self, case: dict[str, str]) -> None:
        message = bytes.fromhex(case["message"])
        assert decode_handshake_message(message) == Hello(case["name"])
        hs = machine(KEY_A, ID_B, initiator=False)
        assert hs.receive(message).events == [PeerHello(case["name"])]
        assert hs.peer_name == case["name"]

    @pytest.mark.parametrize("case", VECTORS["malformed_messages"]["cases"], ids=lambda c: c["reason"])
    @pytest.mark.parametrize("initiator", [True, False])
    def test_malformed_messages(self, case: dict[str, str], initiator: bool) -> None:
        message = bytes.fromhex(case["message"])
        with pytest.raises(HandshakeError) as info:
            decode_handshake_message(message)
        assert type(info.value) is HandshakeError
        hs = machine(KEY_A, ID_B, initiator=initiator)
        hs.start()
        with pytest.raises(HandshakeError):
            hs.receive(message)
        assert hs.state is S.FAILED


class TestMessages:
    """handshake.test.ts 'handshake messages': Hello = 01 ‖ name, PubKey = 02 ‖ key, Complete = 03."""

    def test_encodes(self) -> None:
        assert encode_hello() == HELLO_EMPTY
        assert encode_hello("bob") == HELLO_BOB
        assert encode_pubkey(KEY_A) == PUBKEY_A
        assert encode_pubkey(KEY_B) == PUBKEY_B
        assert encode_complete() == COMPLETE
        assert encode_frame(encode_complete()).hex() == "020103"
        assert len(encode_hello("é" * 32)) == 1 + MAX_NAME_BYTES
        with pytest.raises(InvalidArgument):
            encode_hello("é" * 33)
        with pytest.raises(InvalidArgument):
            encode_pubkey(bytes(31))

    def test_decodes(self, vectors: dict[str, Any]) -> None:
        assert decode_handshake_message(HELLO_EMPTY) == Hello("")
        assert decode_handshake_message(encode_hello("🍓 berry")) == Hello("🍓 berry")
        assert decode_handshake_message(PUBKEY_B) == PubKey(KEY_B)
        assert decode_handshake_message(COMPLETE) == Complete()
        assert decode_handshake_message(bytes.fromhex("01ff41")) == Hello("\ufffdA")
        assert decode_handshake_message(b"\x01" + b"A" * 64) == Hello("A" * 64)
        # the handshake_message vector payload 01 02 03 reads as a Hello with the name "\x02\x03"
        payload = bytes.fromhex(vectors["handshake_message"]["payload"])
        assert decode_handshake_message(payload) == Hello("\x02\x03")

    @pytest.mark.parametrize(
        "message", ["", "00", "04", "ff", "01" + "41" * 65, "02" + "00" * 31, "02" + "00" * 33, "0300"]
    )
    def test_rejects_malformed_with_handshake_error(self, message: str) -> None:
        with pytest.raises(HandshakeError):
            decode_handshake_message(bytes.fromhex(message))

    def test_framed_transcript_split_at_every_byte(self) -> None:
        """§6/§7: the initiator's opening, framed, then unframed by the Go-compatible decoder."""
        wire = b"".join(encode_frame(m) for m in machine(KEY_A, ID_B, initiator=True).start())
        assert wire.hex() == "0201" + "01" + "2221" + PUBKEY_A.hex()
        for chunks in splits(wire):
            decoder = FrameDecoder(1000)
            payloads: list[bytes] = []
            for chunk in chunks:
                decoder.receive_data(chunk)
                payloads += [e.payload for e in decoder.events_received() if isinstance(e, Frame)]
            responder = machine(KEY_B, ID_A, initiator=False)
            steps = [responder.receive(p) for p in payloads]
            assert [s.send for s in steps] == [[HELLO_EMPTY, PUBKEY_B], [COMPLETE]]
            assert responder.state is S.PREPARED


class TestTsMirror:
    """handshake.test.ts 'HelloHandshake', one test for each, with the same bytes."""

    def test_runs_between_an_initiator_and_a_responder(self, vectors: dict[str, Any]) -> None:
        a = machine(KEY_A, ID_B, initiator=True, name="alice")
        b = machine(KEY_B, ID_A, initiator=False, name="bob")
        assert (a.state, b.state) == (S.STARTED, S.STARTED)
        events_a, events_b, wire = run(a, b)
        assert wire == ["a>01", "a>02", "b>01", "b>02", "b>03", "a>03"]
        assert events_a == [PeerHello("bob"), PrepareRequested(KEY_B), FinalizeRequested()]
        assert events_b == [PeerHello("alice"), PrepareRequested(KEY_A), FinalizeRequested()]
        assert (a.peer_name, b.peer_name) == ("bob", "alice")
        assert a.state is S.ESTABLISHED
        assert b.state is S.ESTABLISHED
        assert (a.peer_public_key, b.peer_public_key) == (KEY_B, KEY_A)
        # What the node does with PrepareRequested gives both sides the vectors' stream key.
        key_a = shared_key(SEED_A, KEY_B)
        assert key_a == shared_key(SEED_B, KEY_A) == bytes.fromhex(vectors["stream_key"]["key"])
        frame = vectors["encrypted_frame"]
        encrypted = StreamCipher(key_a).encrypt(b"hello glueberry", bytes.fromhex(frame["nonce"]))
        assert encrypted.hex() == frame["frame"]

    def test_works_through_framing_and_when_both_sides_start_as_initiators(self) -> None:
        a = machine(KEY_A, ID_B, initiator=True)
        b = machine(KEY_B, ID_A, initiator=True)
        decoder = FrameDecoder(1000)
        wire = b"".join(encode_frame(m) for m in a.start())
        decoder.receive_data(wire)
        from_a = [e.payload for e in decoder.events_received() if isinstance(e, Frame)]
        assert wire.hex() == "0201" + "01" + "2221" + PUBKEY_A.hex()
        to_a = b.start() + [m for payload in from_a for m in b.receive(payload).send]
        assert [m[:1].hex() for m in to_a] == ["01", "02", "03"]  # no second Hello/PubKey
        events_a: list[HandshakeEvent] = []
        for m in to_a:
            step = a.receive(m)
            for s in step.send:
                b.receive(s)
            events_a += step.events
        assert kinds(events_a) == ["PeerHello", "PrepareRequested", "FinalizeRequested"]
        assert b.state is S.ESTABLISHED

    def test_key_mismatch_and_failed_after(self) -> None:
        a = machine(KEY_A, ID_B, initiator=True)
        a.start()
        a.receive(HELLO_BOB)
        with pytest.raises(KeyMismatch) as info:
            a.receive(PUBKEY_M)
        assert a.state is S.FAILED
        assert a.peer_public_key is None
        with pytest.raises(InvalidState):
            a.receive(PUBKEY_B)
        with pytest.raises(InvalidState):
            a.start()
        assert isinstance(info.value, HandshakeError)
        assert info.value.code is ErrorCode.KEY_MISMATCH
        assert info.value.peer_id == str(ID_B)

    def test_complete_first_then_prepare_and_duplicates(self) -> None:
        a = machine(KEY_A, ID_B, initiator=False)
        assert a.start() == []
        hello = a.receive(HELLO_BOB)
        assert hello.send == [HELLO_EMPTY, PUBKEY_A]
        assert a.receive(HELLO_AGAIN) == HandshakeStep()
        assert a.receive(COMPLETE) == HandshakeStep()
        assert a.state is S.HELLO_SENT
        step = a.receive(PUBKEY_B)
        assert step.send == [COMPLETE]
        assert kinds(step.events) == ["PrepareRequested", "FinalizeRequested"]
        assert a.receive(PUBKEY_B) == HandshakeStep()
        assert a.receive(COMPLETE) == HandshakeStep()
        assert a.peer_name == "bob"

    def test_pubkey_only_peer_gets_hello_and_pubkey_before_complete(self) -> None:
        a = machine(KEY_A, ID_B, initiator=False, name="a")
        step = a.receive(PUBKEY_B)
        assert step.send == [HELLO_A, PUBKEY_A, COMPLETE]
        assert step.events == [PrepareRequested(KEY_B)]
        assert a.state is S.PREPARED
        assert a.peer_name is None

    def test_established_by_traffic_for_a_peer_that_never_sends_complete(self) -> None:
        a = machine(KEY_A, ID_B, initiator=True)
        a.start()
        with pytest.raises(InvalidState):
            a.established_by_traffic()
        assert (a.state, a.peer_public_key) == (S.HELLO_SENT, None)  # a local misuse, not a failure
        assert a.receive(PUBKEY_B).events == [PrepareRequested(KEY_B)]
        assert a.state.value == "prepared"
        assert a.established_by_traffic() == [FinalizeRequested()]
        assert a.established_by_traffic() == []
        assert a.receive(COMPLETE).events == []
        assert a.state is S.ESTABLISHED

    def test_fails_on_unknown_message_types(self) -> None:
        a = machine(KEY_A, ID_B, initiator=True)
        with pytest.raises(HandshakeError):
            a.receive(bytes.fromhex("07"))
        assert a.state is S.FAILED

    def test_refuses_a_low_order_key_matching_the_peer_id(self, vectors: dict[str, Any]) -> None:
        for case in vectors["rejected_remote_keys"]["cases"]:
            key = bytes.fromhex(case["ed25519_public_key"])
            if len(key) != 32:
                continue
            a = machine(KEY_A, PeerID.from_public_key(key), initiator=True)
            with pytest.raises(InvalidKey):
                a.receive(b"\x02" + key)
            assert a.state is S.FAILED
            assert a.peer_public_key is None

    def test_validates_its_options(self) -> None:
        with pytest.raises(InvalidPeerID):
            machine(
                KEY_A, PeerID.from_string("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"), initiator=True
            )
        with pytest.raises(InvalidArgument):
            machine(KEY_A, ID_B, initiator=True, name="x" * 65)


class TestOptions:
    """Constructor bounds beyond the TS tests."""

    def test_name_bound_is_in_utf8_bytes(self) -> None:
        assert machine(KEY_A, ID_B, initiator=True, name="é" * 32).start()[0] == b"\x01" + "é".encode() * 32
        with pytest.raises(InvalidArgument):
            machine(KEY_A, ID_B, initiator=True, name="é" * 32 + "x")

    def test_name_must_be_encodable(self) -> None:
        with pytest.raises(InvalidArgument):
            machine(KEY_A, ID_B, initiator=True, name="\ud800")

    @pytest.mark.parametrize("key", [b"", bytes(31), bytes(33)])
    def test_local_key_is_32_bytes(self, key: bytes) -> None:
        with pytest.raises(InvalidKey):
            machine(key, ID_B, initiator=True)

    def test_remote_must_be_a_canonical_ed25519_peer_id(self) -> None:
        reordered = bytes.fromhex("1220") + KEY_B + bytes.fromhex("0801")
        with pytest.raises(InvalidPeerID):
            machine(KEY_A, PeerID(bytes([0, len(reordered)]) + reordered), initiator=True)
        with pytest.raises(InvalidPeerID):
            machine(KEY_A, str(ID_B), initiator=True)  # type: ignore[arg-type]

    def test_exposes_its_configuration(self) -> None:
        hs = machine(KEY_A, ID_B, initiator=True, name="alice")
        assert (hs.name, hs.remote_peer_id, hs.initiator) == ("alice", ID_B, True)


class TestActionOrder:
    """Prepare before the messages that let the peer send encrypted data; finalize (which closes
    the handshake stream in Go and in our Node) only after the step's messages."""

    def test_prepare_comes_before_complete(self) -> None:
        a = machine(KEY_A, ID_B, initiator=True)
        a.start()
        assert a.receive(PUBKEY_B).actions == (PrepareRequested(KEY_B), SendMessage(COMPLETE))

    def test_prepare_comes_before_our_pubkey_too(self) -> None:
        a = machine(KEY_A, ID_B, initiator=False)
        assert a.receive(PUBKEY_B).actions == (
            PrepareRequested(KEY_B),
            SendMessage(HELLO_EMPTY),
            SendMessage(PUBKEY_A),
            SendMessage(COMPLETE),
        )

    def test_finalize_comes_after_complete(self) -> None:
        a = machine(KEY_A, ID_B, initiator=True)
        a.start()
        a.receive(COMPLETE)
        assert a.receive(PUBKEY_B).actions == (
            PrepareRequested(KEY_B),
            SendMessage(COMPLETE),
            FinalizeRequested(),
        )

    def test_hello_reply(self) -> None:
        b = machine(KEY_B, ID_A, initiator=False, name="bob")
        assert b.receive(HELLO_ALICE).actions == (
            PeerHello("alice"),
            SendMessage(HELLO_BOB),
            SendMessage(PUBKEY_B),
        )


class TestGoQuirks:
    """PROTOCOL.md §5/§10 and the Go examples (glueberry@v1.2.10/examples/cluster, rpc, file-transfer)."""

    def test_two_responders_never_start(self) -> None:
        """The dialler speaks first: if neither side is the initiator nothing happens (§5)."""
        a = machine(KEY_A, ID_B, initiator=False)
        b = machine(KEY_B, ID_A, initiator=False)
        assert run(a, b) == ([], [], [])
        assert a.state is S.STARTED

    def test_go_example_dialler_answering_our_hello_again(self) -> None:
        """The examples answer every Hello with Hello + PubKey: a second pair after our Complete."""
        a = machine(KEY_A, ID_B, initiator=False)
        assert a.receive(HELLO_EMPTY).send == [HELLO_EMPTY, PUBKEY_A]
        assert a.receive(PUBKEY_B).send == [COMPLETE]
        assert a.receive(HELLO_EMPTY) == HandshakeStep()
        assert a.receive(PUBKEY_B) == HandshakeStep()
        assert a.receive(COMPLETE).events == [FinalizeRequested()]
        # the example's dial loop and its message loop may both send one
        assert a.receive(COMPLETE) == HandshakeStep()
        assert a.state is S.ESTABLISHED

    def test_go_responder_whose_complete_never_comes(self) -> None:
        a = machine(KEY_A, ID_B, initiator=True)
        a.start()
        a.receive(HELLO_EMPTY)
        assert a.receive(PUBKEY_B).events == [PrepareRequested(KEY_B)]
        assert a.state.value == "prepared"
        assert a.established_by_traffic() == [FinalizeRequested()]


@st.composite
def schedules(draw: st.DrawFn) -> tuple[bool, bool, list[int], list[bool]]:
    initiators = draw(st.sampled_from([(True, False), (False, True), (True, True)]))
    order = draw(st.lists(st.integers(0, 1), min_size=0, max_size=40))
    duplicates = draw(st.lists(st.booleans(), min_size=0, max_size=40))
    return initiators[0], initiators[1], order, duplicates


class TestProperties:
    @settings(max_examples=300, deadline=None)
    @given(schedules())
    def test_any_delivery_schedule_ends_established(
        self, plan: tuple[bool, bool, list[int], list[bool]]
    ) -> None:
        """A slow side, either side first, re-sent messages (in order per direction): both finalize
        exactly once with the right keys and names, and no error."""
        init_a, init_b, order, duplicates = plan
        a = machine(KEY_A, ID_B, initiator=init_a, name="alice")
        b = machine(KEY_B, ID_A, initiator=init_b, name="bob")
        queues: list[list[bytes]] = [a.start(), b.start()]  # [to b, to a]
        targets = [b, a]
        events: list[list[HandshakeEvent]] = [[], []]  # [b's, a's]
        picks = iter(order)
        dups = iter(duplicates)
        while queues[0] or queues[1]:
            side = next(picks, 0)
            if not queues[side]:
                side = 1 - side
            message = queues[side][0]
            if not next(dups, False):
                queues[side].pop(0)
            step = targets[side].receive(message)
            queues[1 - side] += step.send
            events[side] += step.events
        for hs, evs, key, name in ((b, events[0], KEY_A, "alice"), (a, events[1], KEY_B, "bob")):
            assert hs.state is S.ESTABLISHED
            assert evs.count(FinalizeRequested()) == 1
            assert [e for e in evs if isinstance(e, PrepareRequested)] == [PrepareRequested(key)]
            assert evs.index(PrepareRequested(key)) < evs.index(FinalizeRequested())
            assert hs.peer_name == name

    @settings(max_examples=500, deadline=None)
    @given(st.lists(st.binary(max_size=70), max_size=6), st.booleans())
    def test_arbitrary_input_only_raises_handshake_or_key_errors(
        self, messages: list[bytes], initiator: bool
    ) -> None:
        hs = machine(KEY_A, ID_B, initiator=initiator)
        hs.start()
        for message in messages:
            try:
                step = hs.receive(message)
            except (HandshakeError, InvalidKey):
                assert hs.state is S.FAILED
                return
            assert all(len(m) <= 1 + MAX_NAME_BYTES for m in step.send)
            assert hs.state is not S.FAILED

    @given(st.text(max_size=80))
    def test_names_round_trip_or_are_refused(self, name: str) -> None:
        try:
            raw = name.encode()
        except UnicodeEncodeError:
            raw = b"\x00" * 100  # lone surrogates: refused below like an over-long name
        if len(raw) > MAX_NAME_BYTES:
            with pytest.raises(InvalidArgument):
                encode_hello(name)
            return
        assert decode_handshake_message(encode_hello(name)) == Hello(name)
