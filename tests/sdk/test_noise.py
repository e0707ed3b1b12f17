"""libp2p Noise (libp2p/specs noise/README.md r4; Noise Protocol Framework rev 34, pattern XX)."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from noise.connection import Keypair, NoiseConnection  # type: ignore[import-untyped]

from glueberry.exceptions import (
    ConnectionClosed,
    HandshakeError,
    InvalidArgument,
    InvalidKey,
    InvalidSignature,
    InvalidState,
    LocalProtocolError,
    NoiseDecryptError,
    PeerIDMismatch,
    RemoteProtocolError,
)
from glueberry.p2p.keys import PeerID, generate_private_key, public_key_bytes
from glueberry.p2p.noise import (
    MAX_MESSAGE_SIZE,
    MAX_PLAINTEXT_SIZE,
    PROTOCOL_NAME,
    DataReceived,
    EOFReceived,
    HandshakeCompleted,
    NoiseEvent,
    NoiseProtocol,
    generate_static_key,
    noise_signature_payload,
)
from tests.helpers import pump

YAMUX = "/yamux/1.0.0"


# --- helpers -------------------------------------------------------------------------------------


def x25519_public(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def new_side(
    initiator: bool,
    identity: Ed25519PrivateKey | None = None,
    *,
    expected_peer: PeerID | None = None,
    stream_muxers: tuple[str, ...] = (),
) -> NoiseProtocol:
    identity = identity or generate_private_key()
    static = generate_static_key()
    return NoiseProtocol(
        initiator=initiator,
        static_key=static,
        identity_key=public_key_bytes(identity),
        identity_signature=identity.sign(noise_signature_payload(x25519_public(static))),
        expected_peer=expected_peer,
        stream_muxers=stream_muxers,
    )


def one(out: list[bytes]) -> bytes:
    assert len(out) == 1
    return out[0]


def data_of(events: list[NoiseEvent]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, DataReceived))


def connected_pair() -> tuple[NoiseProtocol, NoiseProtocol]:
    a, b = new_side(True), new_side(False)
    pump(a, b)
    assert a.handshake_complete
    assert b.handshake_complete
    a.events_received()
    b.events_received()
    return a, b


def transfer(src: NoiseProtocol, dst: NoiseProtocol) -> bytes:
    for record in src.data_to_send():
        dst.receive_data(record)
    return data_of(dst.events_received())


def frame(message: bytes) -> bytes:
    return struct.pack(">H", len(message)) + message


def unframe(data: bytes) -> bytes:
    (length,) = struct.unpack(">H", data[:2])
    assert len(data) == 2 + length
    return data[2:]


def pb_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def pb_field(number: int, value: bytes) -> bytes:
    return pb_varint(number << 3 | 2) + pb_varint(len(value)) + value


def libp2p_ed25519_key(public: bytes) -> bytes:
    return b"\x08\x01" + pb_field(2, public)  # PublicKey{Type: Ed25519, Data}


class RefPeer:
    """The other side played by the independent ``noiseprotocol`` package; payloads built by hand."""

    def __init__(self, *, initiator: bool, identity: Ed25519PrivateKey | None = None) -> None:
        self.identity = identity or generate_private_key()
        self.static = X25519PrivateKey.generate()
        self.conn: Any = NoiseConnection.from_name(PROTOCOL_NAME)
        if initiator:
            self.conn.set_as_initiator()
        else:
            self.conn.set_as_responder()
        self.conn.set_keypair_from_private_bytes(Keypair.STATIC, self.static.private_bytes_raw())
        self.conn.start_handshake()
        self.handshake_state: Any = self.conn.noise_protocol.handshake_state

    @property
    def peer_id(self) -> PeerID:
        return PeerID.from_private_key(self.identity)

    def signature(self) -> bytes:
        return self.identity.sign(b"noise-libp2p-static-key:" + x25519_public(self.static))

    def payload(
        self, *, key: bytes | None = None, signature: bytes | None = None, extra: bytes = b""
    ) -> bytes:
        key = libp2p_ed25519_key(public_key_bytes(self.identity)) if key is None else key
        signature = self.signature() if signature is None else signature
        return pb_field(1, key) + pb_field(2, signature) + extra

    def write(self, payload: bytes = b"") -> bytes:
        return frame(bytes(self.conn.write_message(payload)))

    def read(self, framed: bytes) -> bytes:
        return bytes(self.conn.read_message(unframe(framed)))

    def remote_static(self) -> bytes:
        return bytes(self.handshake_state.rs.public_bytes)

    def encrypt(self, data: bytes) -> bytes:
        return frame(self.conn.encrypt(data))

    def decrypt(self, framed: bytes) -> bytes:
        return bytes(self.conn.decrypt(unframe(framed)))


def check_identity(payload: bytes, identity_key: bytes, static_key: bytes) -> None:
    """Decode our payload by hand: identity_key = 1, identity_sig = 2, nothing else by default."""
    key_proto = libp2p_ed25519_key(identity_key)
    assert payload[: 2 + len(key_proto)] == b"\x0a" + bytes([len(key_proto)]) + key_proto
    rest = payload[2 + len(key_proto) :]
    assert rest[:2] == b"\x12\x40"
    assert len(rest) == 66
    Ed25519PublicKey.from_public_bytes(identity_key).verify(rest[2:], noise_signature_payload(static_key))


def at_message(which: int) -> tuple[NoiseProtocol, NoiseProtocol, NoiseProtocol, bytes]:
    """A fresh pair with handshake message ``which`` written but not delivered: (a, b, receiver, msg)."""
    a, b = new_side(True), new_side(False)
    msg = one(a.data_to_send())
    if which >= 2:
        b.receive_data(msg)
        msg = one(b.data_to_send())
    if which == 3:
        a.receive_data(msg)
        msg = one(a.data_to_send())
    return a, b, (a if which == 2 else b), msg


def initiator_reads_msg2(ref: RefPeer, payload: bytes) -> NoiseProtocol:
    """Our initiator against a hand-driven responder that sends ``payload`` in msg2."""
    ours = new_side(True)
    ref.read(one(ours.data_to_send()))
    ours.receive_data(ref.write(payload))
    return ours


# --- tests ---------------------------------------------------------------------------------------


class TestSignaturePayload:
    """noise/README.md "The libp2p Handshake Payload": what the identity key signs."""

    def test_prefix_and_key(self) -> None:
        key = bytes(range(32))
        assert noise_signature_payload(key) == b"noise-libp2p-static-key:" + key

    def test_rejects_wrong_key_size(self) -> None:
        with pytest.raises(InvalidKey):
            noise_signature_payload(b"\x00" * 31)

    def test_static_keys_are_fresh(self) -> None:
        assert x25519_public(generate_static_key()) != x25519_public(generate_static_key())


class TestHandshake:
    """noise/README.md "XX": -> e; <- e, ee, s, es; -> s, se."""

    def test_pair_completes_and_authenticates_both_peers(self) -> None:
        ida, idb = generate_private_key(), generate_private_key()
        a = new_side(True, ida, expected_peer=PeerID.from_private_key(idb))
        b = new_side(False, idb)
        before = (a.handshake_complete, a.remote_peer_id, b.handshake_complete, b.remote_peer_id)
        assert before == (False, None, False, None)
        pump(a, b)
        (ea,) = a.events_received()
        (eb,) = b.events_received()
        assert isinstance(ea, HandshakeCompleted)
        assert isinstance(eb, HandshakeCompleted)
        assert ea.remote_peer_id == a.remote_peer_id == PeerID.from_private_key(idb)
        assert eb.remote_peer_id == b.remote_peer_id == PeerID.from_private_key(ida)
        assert ea.remote_identity_key == public_key_bytes(idb)
        assert eb.remote_identity_key == public_key_bytes(ida)
        assert ea.remote_stream_muxers == eb.remote_stream_muxers == ()
        assert a.handshake_complete
        assert b.handshake_complete

    def test_message_sizes(self) -> None:
        a, b = new_side(True), new_side(False)
        msg1 = one(a.data_to_send())
        assert msg1[:2] == b"\x00\x20"  # just e: the first payload is empty
        assert len(msg1) == 34
        b.receive_data(msg1)
        msg2 = one(b.data_to_send())
        payload_len = 38 + 66  # identity_key field, identity_sig field
        assert len(msg2) == 2 + 32 + 48 + payload_len + 16
        a.receive_data(msg2)
        msg3 = one(a.data_to_send())
        assert len(msg3) == 2 + 48 + payload_len + 16
        assert b.data_to_send() == []

    def test_initiator_output_waits_for_msg2(self) -> None:
        a = new_side(True)
        a.data_to_send()
        assert a.data_to_send() == []
        assert a.events_received() == []

    def test_remote_static_key_is_reported(self) -> None:
        ours = new_side(False)
        ref = RefPeer(initiator=True)
        ours.receive_data(ref.write())
        ref.read(one(ours.data_to_send()))
        ours.receive_data(ref.write(ref.payload()))
        (event,) = ours.events_received()
        assert isinstance(event, HandshakeCompleted)
        assert event.remote_static_key == x25519_public(ref.static)
        assert event.remote_peer_id == ref.peer_id

    def test_stream_muxers_are_advertised_and_reported(self) -> None:
        a = new_side(True, stream_muxers=(YAMUX, "/mplex/6.7.0"))
        b = new_side(False, stream_muxers=(YAMUX,))
        pump(a, b)
        (ea,) = a.events_received()
        (eb,) = b.events_received()
        assert isinstance(ea, HandshakeCompleted)
        assert isinstance(eb, HandshakeCompleted)
        assert ea.remote_stream_muxers == (YAMUX,)
        assert eb.remote_stream_muxers == (YAMUX, "/mplex/6.7.0")

    def test_responder_may_also_check_expected_peer(self) -> None:
        ida = generate_private_key()
        a = new_side(True, ida)
        b = new_side(False, expected_peer=PeerID.from_private_key(ida))
        pump(a, b)
        assert b.remote_peer_id == PeerID.from_private_key(ida)


class TestSplitInput:
    """Every handshake message fed split at every byte boundary (conventions: transcripts split)."""

    @pytest.mark.parametrize("which", [1, 2, 3])
    def test_every_two_way_split(self, which: int) -> None:
        size = len(at_message(which)[3])
        for cut in range(1, size):
            a, b, dst, msg = at_message(which)
            dst.receive_data(msg[:cut])
            assert dst.data_to_send() == []
            assert dst.events_received() == []
            dst.receive_data(msg[cut:])
            pump(a, b)
            assert a.handshake_complete
            assert b.handshake_complete

    def test_byte_by_byte(self) -> None:
        a, b = new_side(True), new_side(False)
        for _ in range(3):
            for src, dst in ((a, b), (b, a)):
                for record in src.data_to_send():
                    for i in range(len(record)):
                        dst.receive_data(record[i : i + 1])
        assert a.handshake_complete
        assert b.handshake_complete
        a.send_data(b"after byte-by-byte")
        assert transfer(a, b) == b"after byte-by-byte"

    def test_msg3_and_first_record_in_one_chunk(self) -> None:
        a, b = new_side(True), new_side(False)
        b.receive_data(one(a.data_to_send()))
        a.receive_data(one(b.data_to_send()))
        a.send_data(b"early")
        b.receive_data(b"".join(a.data_to_send()))
        events = b.events_received()
        assert isinstance(events[0], HandshakeCompleted)
        assert events[1:] == [DataReceived(b"early")]


class TestTransport:
    """noise/README.md "Encryption and I/O": after Split the initiator sends with c1, receives with c2."""

    def test_both_directions(self) -> None:
        a, b = connected_pair()
        a.send_data(b"ping")
        assert transfer(a, b) == b"ping"
        b.send_data(bytearray(b"pong"))
        assert transfer(b, a) == b"pong"
        a.send_data(memoryview(b"xxmemoryview")[2:])
        assert transfer(a, b) == b"memoryview"

    def test_one_mebibyte(self) -> None:
        a, b = connected_pair()
        data = bytes(i % 251 for i in range(1 << 20))
        a.send_data(data)
        records = a.data_to_send()
        assert len(records) == -(-len(data) // MAX_PLAINTEXT_SIZE)
        assert all(len(r) <= 2 + MAX_MESSAGE_SIZE for r in records)
        b.receive_data(b"".join(records))
        assert b.events_received() == [DataReceived(data)]  # coalesced into one event

    def test_empty_send_queues_nothing(self) -> None:
        a, b = connected_pair()
        a.send_data(b"")
        assert a.data_to_send() == []
        a.send_data(b"still in sync")
        assert transfer(a, b) == b"still in sync"

    def test_empty_record_is_received_silently(self) -> None:
        ours = new_side(False)
        ref = RefPeer(initiator=True)
        ours.receive_data(ref.write())
        ref.read(one(ours.data_to_send()))
        ours.receive_data(ref.write(ref.payload()) + ref.encrypt(b"") + ref.encrypt(b"x"))
        events = ours.events_received()
        assert events[1:] == [DataReceived(b"x")]

    def test_records_fed_byte_by_byte(self) -> None:
        a, b = connected_pair()
        a.send_data(b"abc")
        a.send_data(b"defg")
        wire = b"".join(a.data_to_send())
        got = b""
        for i in range(len(wire)):
            b.receive_data(wire[i : i + 1])
            got += data_of(b.events_received())
        assert got == b"abcdefg"

    def test_eof_after_handshake(self) -> None:
        a, b = connected_pair()
        a.send_data(b"last words")
        b.receive_data(b"".join(a.data_to_send()))
        b.receive_eof()
        assert b.events_received() == [DataReceived(b"last words"), EOFReceived()]
        b.receive_eof()  # idempotent
        assert b.events_received() == []
        b.send_data(b"half-closed: we can still send")
        assert transfer(b, a) == b"half-closed: we can still send"
        with pytest.raises(InvalidState):
            b.receive_data(b"\x00")

    @settings(deadline=None, max_examples=40)
    @given(
        writes=st.lists(st.integers(0, 150_000), min_size=1, max_size=5),
        cuts=st.lists(st.integers(1, 80_000), max_size=10),
    )
    def test_round_trip_any_writes_any_cuts(self, writes: list[int], cuts: list[int]) -> None:
        a, b = connected_pair()
        sent = b""
        for i, size in enumerate(writes):
            chunk = bytes([i % 256]) * size
            a.send_data(chunk)
            sent += chunk
        wire = b"".join(a.data_to_send())
        pos = 0
        for cut in cuts:
            b.receive_data(wire[pos : pos + cut])
            pos += cut
        b.receive_data(wire[pos:])
        assert data_of(b.events_received()) == sent


class TestWireFormat:
    """noise/README.md "Wire Format": u16 big-endian length ‖ Noise message of at most 65535 bytes."""

    def test_largest_record_is_65535_bytes(self) -> None:
        a, b = connected_pair()
        data = b"\xab" * MAX_PLAINTEXT_SIZE
        a.send_data(data)
        record = one(a.data_to_send())
        assert record[:2] == b"\xff\xff"
        assert len(record) == 2 + 65535
        b.receive_data(record)
        assert b.events_received() == [DataReceived(data)]

    def test_split_at_65519(self) -> None:
        a, b = connected_pair()
        data = bytes(range(256)) * 256 + b"tail"  # 65540 bytes
        a.send_data(data)
        first, second = a.data_to_send()
        assert len(first) == 2 + 65535
        assert len(second) == 2 + (len(data) - 65519) + 16
        assert second[:2] == struct.pack(">H", len(data) - 65519 + 16)
        b.receive_data(first)
        b.receive_data(second)
        assert data_of(b.events_received()) == data

    def test_exactly_two_full_records(self) -> None:
        a, b = connected_pair()
        a.send_data(bytes(2 * MAX_PLAINTEXT_SIZE))
        records = a.data_to_send()
        assert [len(r) for r in records] == [65537, 65537]
        for record in records:
            b.receive_data(record)
        assert data_of(b.events_received()) == bytes(2 * MAX_PLAINTEXT_SIZE)


class TestCrossCheck:
    """Against the independent ``noiseprotocol`` implementation, with libp2p payloads built by hand."""

    def test_our_initiator_their_responder(self) -> None:
        ref = RefPeer(initiator=False)
        identity = generate_private_key()
        ours = new_side(True, identity, expected_peer=ref.peer_id)
        assert ref.read(one(ours.data_to_send())) == b""
        ours.receive_data(ref.write(ref.payload()))
        (event,) = ours.events_received()
        assert event == HandshakeCompleted(
            ref.peer_id, public_key_bytes(ref.identity), x25519_public(ref.static), ()
        )
        payload = ref.read(one(ours.data_to_send()))
        assert ref.conn.handshake_finished
        check_identity(payload, public_key_bytes(identity), ref.remote_static())
        ours.send_data(b"from us")
        assert ref.decrypt(one(ours.data_to_send())) == b"from us"
        ours.receive_data(ref.encrypt(b"from them") + ref.encrypt(b" and more"))
        assert ours.events_received() == [DataReceived(b"from them and more")]

    def test_their_initiator_our_responder(self) -> None:
        ref = RefPeer(initiator=True)
        identity = generate_private_key()
        ours = new_side(False, identity)
        ours.receive_data(ref.write())
        payload = ref.read(one(ours.data_to_send()))
        check_identity(payload, public_key_bytes(identity), ref.remote_static())
        ours.receive_data(ref.write(ref.payload()))
        assert ref.conn.handshake_finished
        (event,) = ours.events_received()
        assert isinstance(event, HandshakeCompleted)
        assert event.remote_peer_id == ref.peer_id
        ours.send_data(b"from us")
        assert ref.decrypt(one(ours.data_to_send())) == b"from us"
        ours.receive_data(ref.encrypt(b"from them"))
        assert ours.events_received() == [DataReceived(b"from them")]

    def test_big_send_is_readable_record_by_record(self) -> None:
        ref = RefPeer(initiator=True)
        ours = new_side(False)
        ours.receive_data(ref.write())
        ref.read(one(ours.data_to_send()))
        ours.receive_data(ref.write(ref.payload()))
        data = bytes(i % 7 for i in range(200_000))
        ours.send_data(data)
        assert b"".join(ref.decrypt(r) for r in ours.data_to_send()) == data

    def test_unknown_fields_and_extensions_are_tolerated(self) -> None:
        ref = RefPeer(initiator=False)
        extensions = pb_field(1, b"certhash") + pb_field(2, YAMUX.encode()) + pb_field(99, b"future")
        extra = pb_field(3, b"legacy early data") + pb_field(4, extensions) + b"\x28\x07"  # varint field 5
        ours = new_side(True)
        ref.read(one(ours.data_to_send()))
        ours.receive_data(ref.write(ref.payload(extra=extra)))
        (event,) = ours.events_received()
        assert isinstance(event, HandshakeCompleted)
        assert event.remote_stream_muxers == (YAMUX,)

    def test_msg1_payload_is_ignored(self) -> None:
        """go-libp2p hashes and discards whatever the first message carries; so do we."""
        ref = RefPeer(initiator=True)
        ours = new_side(False)
        ours.receive_data(ref.write(b"unexpected"))
        ref.read(one(ours.data_to_send()))
        ours.receive_data(ref.write(ref.payload()))
        assert ours.handshake_complete

    def test_stream_muxers_on_the_wire(self) -> None:
        ref = RefPeer(initiator=False)
        ours = new_side(True, stream_muxers=(YAMUX,))
        ref.read(one(ours.data_to_send()))
        ours.receive_data(ref.write(ref.payload()))
        payload = ref.read(one(ours.data_to_send()))
        assert payload.endswith(pb_field(4, pb_field(2, YAMUX.encode())))


class TestAuthenticationFailures:
    """noise/README.md "Static Key Authentication": a bad proof terminates the connection."""

    def test_bad_signature(self) -> None:
        ref = RefPeer(initiator=False)
        bad = bytearray(ref.signature())
        bad[10] ^= 1
        with pytest.raises(InvalidSignature):
            initiator_reads_msg2(ref, ref.payload(signature=bytes(bad)))

    def test_signature_over_another_static_key(self) -> None:
        ref = RefPeer(initiator=False)
        other = ref.identity.sign(noise_signature_payload(x25519_public(generate_static_key())))
        with pytest.raises(InvalidSignature):
            initiator_reads_msg2(ref, ref.payload(signature=other))

    def test_signature_by_another_identity(self) -> None:
        ref = RefPeer(initiator=False)
        forged = generate_private_key().sign(noise_signature_payload(x25519_public(ref.static)))
        with pytest.raises(InvalidSignature):
            initiator_reads_msg2(ref, ref.payload(signature=forged))

    def test_missing_signature(self) -> None:
        ref = RefPeer(initiator=False)
        payload = pb_field(1, libp2p_ed25519_key(public_key_bytes(ref.identity)))
        with pytest.raises(InvalidSignature):
            initiator_reads_msg2(ref, payload)

    def test_valid_proof_from_an_unexpected_peer(self) -> None:
        dialled = PeerID.from_private_key(generate_private_key())
        a = new_side(True, expected_peer=dialled)
        b = new_side(False)
        b.receive_data(one(a.data_to_send()))
        with pytest.raises(PeerIDMismatch) as info:
            a.receive_data(one(b.data_to_send()))
        assert info.value.peer_id == str(dialled)
        assert a.data_to_send() == []  # msg3 is never sent to the wrong peer
        assert a.remote_peer_id is None

    def test_responder_sees_unexpected_initiator(self) -> None:
        a = new_side(True)
        b = new_side(False, expected_peer=PeerID.from_private_key(generate_private_key()))
        with pytest.raises(PeerIDMismatch):
            pump(a, b)

    @pytest.mark.parametrize(
        "key",
        [
            pytest.param(b"\x08\x02" + pb_field(2, b"\x02" + bytes(32)), id="secp256k1"),
            pytest.param(b"\x08\x00" + pb_field(2, bytes(270)), id="rsa"),
            pytest.param(b"\x08\x01" + pb_field(2, bytes(31)), id="short-ed25519"),
            pytest.param(b"\xff\xff\xff", id="garbage"),
            pytest.param(b"", id="empty"),
        ],
    )
    def test_unusable_identity_key(self, key: bytes) -> None:
        ref = RefPeer(initiator=False)
        with pytest.raises(HandshakeError):
            initiator_reads_msg2(ref, ref.payload(key=key))

    def test_missing_identity_key(self) -> None:
        ref = RefPeer(initiator=False)
        with pytest.raises(HandshakeError, match="no identity key"):
            initiator_reads_msg2(ref, pb_field(2, ref.signature()))

    def test_empty_payload_in_msg2(self) -> None:
        ref = RefPeer(initiator=False)
        with pytest.raises(HandshakeError, match="empty"):
            initiator_reads_msg2(ref, b"")

    @pytest.mark.parametrize(
        "payload",
        [
            pytest.param(b"\x0a\x50abc", id="field-past-end"),
            pytest.param(b"\x0b", id="bad-wire-type"),
            pytest.param(b"\x08\x01", id="key-as-varint"),
            pytest.param(b"\x22\x02\x10\x05", id="muxer-as-varint"),
        ],
    )
    def test_garbled_payload(self, payload: bytes) -> None:
        ref = RefPeer(initiator=False)
        with pytest.raises(HandshakeError, match="malformed"):
            initiator_reads_msg2(ref, payload)

    def test_bad_initiator_proof_seen_by_responder(self) -> None:
        ref = RefPeer(initiator=True)
        ours = new_side(False)
        ours.receive_data(ref.write())
        ref.read(one(ours.data_to_send()))
        forged = generate_private_key().sign(noise_signature_payload(x25519_public(ref.static)))
        with pytest.raises(InvalidSignature):
            ours.receive_data(ref.write(ref.payload(signature=forged)))

    def test_low_order_ephemeral_key(self) -> None:
        ours = new_side(False)
        with pytest.raises(HandshakeError):
            ours.receive_data(frame(bytes(32)))


class TestMessageFailures:
    """Noise §5: a message that does not authenticate is fatal; so is a truncated one."""

    @pytest.mark.parametrize("offset", [40, 100, -1])  # in encrypted s, in the payload, the tag
    def test_tampered_msg2(self, offset: int) -> None:
        a, b = new_side(True), new_side(False)
        b.receive_data(one(a.data_to_send()))
        msg2 = bytearray(one(b.data_to_send()))
        msg2[offset] ^= 0x40
        with pytest.raises(NoiseDecryptError):
            a.receive_data(msg2)

    @pytest.mark.parametrize("offset", [10, 60, -1])
    def test_tampered_msg3(self, offset: int) -> None:
        a, b = new_side(True), new_side(False)
        b.receive_data(one(a.data_to_send()))
        a.receive_data(one(b.data_to_send()))
        msg3 = bytearray(one(a.data_to_send()))
        msg3[offset] ^= 0x01
        with pytest.raises(NoiseDecryptError):
            b.receive_data(msg3)

    @pytest.mark.parametrize(("which", "size"), [(1, 31), (2, 95), (3, 63), (1, 0)])
    def test_message_too_short(self, which: int, size: int) -> None:
        a, b = new_side(True), new_side(False)
        if which == 1:
            dst = b
        elif which == 2:
            b.receive_data(one(a.data_to_send()))
            b.data_to_send()
            dst = a
        else:
            b.receive_data(one(a.data_to_send()))
            a.receive_data(one(b.data_to_send()))
            dst = b
        with pytest.raises(RemoteProtocolError):
            dst.receive_data(frame(bytes(size)))

    def test_truncated_handshake_message_then_eof(self) -> None:
        a, b = new_side(True), new_side(False)
        b.receive_data(one(a.data_to_send()))
        a.receive_data(one(b.data_to_send())[:-5])
        with pytest.raises(RemoteProtocolError):
            a.receive_eof()
        with pytest.raises(InvalidState):
            a.receive_data(b"\x00")

    def test_eof_between_handshake_messages(self) -> None:
        a = new_side(True)
        a.data_to_send()
        with pytest.raises(ConnectionClosed):
            a.receive_eof()
        with pytest.raises(InvalidState):
            a.receive_eof()

    def test_truncated_record_then_eof(self) -> None:
        a, b = connected_pair()
        a.send_data(b"complete")
        a.send_data(b"cut short")
        first, second = a.data_to_send()
        b.receive_data(first + second[:-1])
        assert b.events_received() == [DataReceived(b"complete")]
        with pytest.raises(RemoteProtocolError):
            b.receive_eof()

    @pytest.mark.parametrize("offset", [2, 10, -1])  # first byte, middle, tag
    def test_tampered_record(self, offset: int) -> None:
        a, b = connected_pair()
        a.send_data(b"0123456789abcdef")
        record = bytearray(one(a.data_to_send()))
        record[offset] ^= 0x01
        with pytest.raises(NoiseDecryptError):
            b.receive_data(bytes(record))

    def test_shortened_length_prefix(self) -> None:
        a, b = connected_pair()
        a.send_data(b"0123456789abcdef")
        record = bytearray(one(a.data_to_send()))
        record[1] -= 1
        with pytest.raises(NoiseDecryptError):
            b.receive_data(bytes(record))

    def test_lengthened_length_prefix(self) -> None:
        a, b = connected_pair()
        a.send_data(b"0123456789abcdef")
        record = bytearray(one(a.data_to_send()))
        record[0] ^= 0x01
        b.receive_data(bytes(record))
        assert b.events_received() == []  # waiting for 256 more bytes
        with pytest.raises(RemoteProtocolError):
            b.receive_eof()

    def test_tampered_record_split_across_calls(self) -> None:
        a, b = connected_pair()
        a.send_data(b"0123456789abcdef")
        record = bytearray(one(a.data_to_send()))
        record[-3] ^= 0x10
        b.receive_data(bytes(record[:9]))
        with pytest.raises(NoiseDecryptError):
            b.receive_data(bytes(record[9:]))

    def test_caller_buffer_is_released(self) -> None:
        """Records are decrypted in place; the caller may reuse its bytearray afterwards."""
        a, b = connected_pair()
        a.send_data(b"fine")
        a.send_data(b"tampered")
        buffer = bytearray(b"".join(a.data_to_send()))
        buffer[-1] ^= 1
        with pytest.raises(NoiseDecryptError) as info:
            b.receive_data(buffer)
        buffer.clear()  # raises BufferError while a view is alive, e.g. in the traceback's frames
        assert info.value.__traceback__ is not None
        assert b.events_received() == [DataReceived(b"fine")]

    def test_good_records_before_a_bad_one_are_delivered(self) -> None:
        a, b = connected_pair()
        a.send_data(b"good")
        a.send_data(b"evil")
        good, evil = a.data_to_send()
        with pytest.raises(NoiseDecryptError):
            b.receive_data(good + evil[:-1] + bytes([evil[-1] ^ 1]))
        assert b.events_received() == [DataReceived(b"good")]

    def test_replayed_record(self) -> None:
        a, b = connected_pair()
        a.send_data(b"once")
        record = one(a.data_to_send())
        b.receive_data(record)
        with pytest.raises(NoiseDecryptError):
            b.receive_data(record)

    def test_reordered_records(self) -> None:
        a, b = connected_pair()
        a.send_data(b"first")
        a.send_data(b"second")
        first, second = a.data_to_send()
        with pytest.raises(NoiseDecryptError):
            b.receive_data(second + first)

    def test_records_are_directional(self) -> None:
        a, _ = connected_pair()
        a.send_data(b"reflected")
        with pytest.raises(NoiseDecryptError):
            a.receive_data(one(a.data_to_send()))


class TestStateRules:
    """conventions.md: after a fatal error the core refuses further use with InvalidState."""

    def test_use_after_failure(self) -> None:
        _, b = connected_pair()
        with pytest.raises(NoiseDecryptError):
            b.receive_data(frame(bytes(20)))
        with pytest.raises(InvalidState):
            b.receive_data(b"")
        with pytest.raises(InvalidState):
            b.receive_eof()
        with pytest.raises(InvalidState):
            b.send_data(b"x")
        assert b.events_received() == []
        assert b.data_to_send() == []
        assert not b.handshake_complete

    def test_use_after_handshake_failure(self) -> None:
        a, b = new_side(True), new_side(False)
        b.receive_data(one(a.data_to_send()))
        msg2 = bytearray(one(b.data_to_send()))
        msg2[-1] ^= 1
        with pytest.raises(NoiseDecryptError):
            a.receive_data(msg2)
        with pytest.raises(InvalidState):
            a.receive_data(b"\x00")

    def test_send_before_handshake(self) -> None:
        a, b = new_side(True), new_side(False)
        with pytest.raises(InvalidState):
            a.send_data(b"too early")
        with pytest.raises(InvalidState):
            b.send_data(b"too early")
        pump(a, b)  # the misuse did not break the handshake
        assert a.handshake_complete
        assert b.handshake_complete

    def test_responder_cannot_send_before_msg3(self) -> None:
        a, b = new_side(True), new_side(False)
        b.receive_data(one(a.data_to_send()))
        assert not b.handshake_complete
        with pytest.raises(InvalidState):
            b.send_data(b"x")


class TestConstruction:
    """The local proof is checked before anything is sent."""

    def test_signature_by_another_key(self) -> None:
        identity, static = generate_private_key(), generate_static_key()
        signature = generate_private_key().sign(noise_signature_payload(x25519_public(static)))
        with pytest.raises(LocalProtocolError):
            NoiseProtocol(
                initiator=True,
                static_key=static,
                identity_key=public_key_bytes(identity),
                identity_signature=signature,
            )

    def test_signature_over_another_static_key(self) -> None:
        identity = generate_private_key()
        signature = identity.sign(noise_signature_payload(x25519_public(generate_static_key())))
        with pytest.raises(LocalProtocolError):
            NoiseProtocol(
                initiator=False,
                static_key=generate_static_key(),
                identity_key=public_key_bytes(identity),
                identity_signature=signature,
            )

    def test_identity_key_of_wrong_size(self) -> None:
        with pytest.raises(InvalidKey):
            NoiseProtocol(
                initiator=True,
                static_key=generate_static_key(),
                identity_key=bytes(33),
                identity_signature=bytes(64),
            )

    def test_payload_too_large(self) -> None:
        with pytest.raises(LocalProtocolError):
            new_side(False, stream_muxers=tuple(f"/muxer/{i:05}/" + "x" * 50 for i in range(1100)))

    def test_responder_queues_nothing_until_msg1(self) -> None:
        assert new_side(False).data_to_send() == []

    @pytest.mark.parametrize("muxers", [YAMUX, ("",), (b"/yamux/1.0.0",)])
    def test_bad_stream_muxers(self, muxers: Any) -> None:
        with pytest.raises(InvalidArgument):
            new_side(True, stream_muxers=muxers)


class TestNonceLimit:
    """Noise §5.1: nonce 2**64-1 is reserved; noise/README.md: terminate rather than reuse a nonce.

    White-box: the counters are set directly, 2**64 messages being out of reach of a test.
    """

    def test_last_nonce_then_exhausted(self) -> None:
        a, b = connected_pair()
        a._send_n = b._recv_n = 2**64 - 2
        a.send_data(b"last")
        assert transfer(a, b) == b"last"
        a.send_data(b"")  # sends nothing, so still allowed
        with pytest.raises(LocalProtocolError):
            a.send_data(b"one too many")
        with pytest.raises(InvalidState):
            a.send_data(b"x")

    def test_large_send_checks_every_record(self) -> None:
        a, _ = connected_pair()
        a._send_n = 2**64 - 2
        with pytest.raises(LocalProtocolError):
            a.send_data(bytes(MAX_PLAINTEXT_SIZE + 1))
        assert a.data_to_send() == []

    def test_receive_with_reserved_nonce(self) -> None:
        a, b = connected_pair()
        a.send_data(b"x")
        b._recv_n = 2**64 - 1
        with pytest.raises(RemoteProtocolError):
            b.receive_data(one(a.data_to_send()))
