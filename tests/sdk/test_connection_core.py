"""The connection upgrade pipeline, in memory (multistream -> Noise -> [multistream] -> yamux)."""

from __future__ import annotations

import functools

import pytest

from glueberry.exceptions import (
    InvalidState,
    LocalProtocolError,
    MuxerProtocolError,
    NegotiationFailed,
    PeerIDMismatch,
)
from glueberry.p2p import yamux
from glueberry.p2p.connection import ConnectionCore, SecurityEstablished, Stage, UpgradeCompleted
from glueberry.p2p.keys import PeerID, generate_private_key, public_key_bytes
from glueberry.p2p.multistream import MultistreamClient, encode_message
from glueberry.p2p.noise import generate_static_key, noise_signature_payload
from tests.helpers import pump
from tests.sdk.cores import side


def pair(*, inline_client: bool = True, inline_server: bool = True) -> tuple[ConnectionCore, ConnectionCore]:
    server, server_id = side(False, inline=inline_server)
    client, client_id = side(True, expected=server_id, inline=inline_client)
    pump(client, server)
    c_events, s_events = client.events_received(), server.events_received()
    assert c_events[0] == SecurityEstablished(server_id, server_id.public_key() or b"")
    assert s_events[0] == SecurityEstablished(client_id, client_id.public_key() or b"")
    assert UpgradeCompleted() in c_events
    assert UpgradeCompleted() in s_events
    return client, server


class TestUpgrade:
    @pytest.mark.parametrize(
        ("inline_client", "inline_server"), [(True, True), (True, False), (False, True), (False, False)]
    )
    def test_completes_with_and_without_inlined_muxer(self, inline_client: bool, inline_server: bool) -> None:
        client, server = pair(inline_client=inline_client, inline_server=inline_server)
        assert client.stage is Stage.MUXED
        assert server.stage is Stage.MUXED
        sid = client.open_stream(None)  # a plain yamux stream
        client.send_data(sid, b"hello")
        pump(client, server)
        events = server.events_received()
        assert yamux.StreamOpened(sid) in events
        assert yamux.DataReceived(sid, b"hello") in events

    def test_the_whole_transcript_split_at_every_byte(self) -> None:
        """Feed the server the client's bytes one at a time: same outcome."""
        server, server_id = side(False)
        client, _ = side(True, expected=server_id)
        for _ in range(10):
            out = b"".join(client.data_to_send())
            for i in range(len(out)):
                server.receive_data(out[i : i + 1])
            back = b"".join(server.data_to_send())
            if back:
                client.receive_data(back)
            if client.stage is Stage.MUXED and server.stage is Stage.MUXED:
                break
        assert client.upgraded
        assert server.upgraded

    def test_early_stream_data_rides_with_the_last_handshake_message(self) -> None:
        server, server_id = side(False)
        client, _ = side(True, expected=server_id)
        server.receive_data(b"".join(client.data_to_send()))  # header + /noise
        client.receive_data(b"".join(server.data_to_send()))  # answer + nothing yet
        server.receive_data(b"".join(client.data_to_send()))  # msg1
        client.receive_data(b"".join(server.data_to_send()))  # msg2 -> client muxed
        assert client.upgraded
        sid = client.open_stream(None)  # a plain yamux stream
        client.send_data(sid, b"early")
        server.receive_data(b"".join(client.data_to_send()))  # msg3 + yamux frames together
        events = server.events_received()
        assert yamux.DataReceived(sid, b"early") in events


class TestFailures:
    def test_a_bad_identity_signature_is_refused_before_anything_is_sent(self) -> None:
        identity, static = generate_private_key(), generate_static_key()
        other = generate_static_key()  # signed: a static key that is not the one used
        signature = identity.sign(noise_signature_payload(other.public_key().public_bytes_raw()))
        core = functools.partial(
            ConnectionCore,
            initiator=True,
            static_key=static,
            identity_key=public_key_bytes(identity),
            identity_signature=signature,
        )
        with pytest.raises(LocalProtocolError):
            core()
        core(signature_checked=True)  # a caller that checked it (the host, once): taken as it is

    def test_wrong_peer(self) -> None:
        server, _ = side(False)
        client, _ = side(True, expected=PeerID.from_private_key(generate_private_key()))
        with pytest.raises(PeerIDMismatch):
            pump(client, server)
        with pytest.raises(InvalidState):
            client.receive_data(b"x")

    def test_no_common_security_protocol(self) -> None:
        server, _ = side(False)
        fake = MultistreamClient(["/tls/1.0.0"])
        server.receive_data(b"".join(fake.data_to_send()))
        with pytest.raises(NegotiationFailed):
            fake.receive_data(b"".join(server.data_to_send()))

    def test_yamux_error_sends_goaway_through_noise(self) -> None:
        client, server = pair()
        # a Data frame with a bad version, encrypted by the client's Noise session
        client._noise.send_data(b"\x07" + b"\x00" * 11)  # type: ignore[union-attr]
        with pytest.raises(MuxerProtocolError):
            server.receive_data(b"".join(client.data_to_send()))
        goodbye = b"".join(server.data_to_send())
        assert goodbye  # the GoAway, encrypted
        client.receive_data(goodbye)
        assert yamux.GoAwayReceived(yamux.GO_AWAY_PROTOCOL_ERROR) in client.events_received()
        assert server.stage is Stage.CLOSED

    def test_eof_ends_every_layer(self) -> None:
        _client, server = pair()
        server.receive_eof()
        assert yamux.ConnectionEnded() in server.events_received()
        assert server.stage is Stage.CLOSED


def test_multistream_header_first() -> None:
    client, _ = side(True)
    assert b"".join(client.data_to_send()) == encode_message("/multistream/1.0.0") + encode_message("/noise")
