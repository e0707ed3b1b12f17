"""multistream-select 1.0 (libp2p connections spec, PROTOCOL.md §4.5)."""

from __future__ import annotations

from typing import Any

import pytest

from glueberry.exceptions import (
    ConnectionClosed,
    FrameTooLarge,
    InvalidState,
    LocalProtocolError,
    NegotiationFailed,
    RemoteProtocolError,
)
from glueberry.p2p.multistream import (
    MultistreamClient,
    MultistreamServer,
    ProtocolAgreed,
    encode_message,
)
from tests.helpers import pump, splits

HANDSHAKE = "/glueberry/stream/handshake/1.0.0"


class TestMessageEncoding:
    def test_vectors(self, vectors: dict[str, Any]) -> None:
        ms = vectors["multistream_select"]
        assert encode_message("/multistream/1.0.0").hex() == ms["multistream_header"]
        assert encode_message(HANDSHAKE).hex() == ms["handshake_protocol"]
        assert encode_message("/glueberry/stream/messages/1.0.0").hex() == ms["messages_stream_protocol"]
        assert encode_message("na").hex() == ms["na"]

    def test_too_long(self) -> None:
        with pytest.raises(LocalProtocolError):
            encode_message("/" + "x" * 1024)


class TestNegotiation:
    def test_first_proposal_accepted(self) -> None:
        client = MultistreamClient(["/noise"])
        server = MultistreamServer({"/noise"})
        pump(client, server)
        assert server.events_received() == [ProtocolAgreed("/noise", b"")]
        assert client.events_received() == [ProtocolAgreed("/noise", b"")]
        assert client.done
        assert server.done

    def test_falls_back_after_na(self) -> None:
        """A go-libp2p dialler proposes /tls/1.0.0 first; we answer na and it falls back to /noise."""
        client = MultistreamClient(["/tls/1.0.0", "/noise"])
        server = MultistreamServer({"/noise"})
        pump(client, server)
        assert client.events_received() == [ProtocolAgreed("/noise", b"")]
        assert server.events_received() == [ProtocolAgreed("/noise", b"")]

    def test_predicate(self) -> None:
        server = MultistreamServer(lambda p: p.startswith("/glueberry/"))
        client = MultistreamClient(["/other", HANDSHAKE])
        pump(client, server)
        assert server.events_received() == [ProtocolAgreed(HANDSHAKE, b"")]

    def test_nothing_in_common(self) -> None:
        client = MultistreamClient(["/a", "/b"])
        server = MultistreamServer({"/c"})
        with pytest.raises(NegotiationFailed):
            pump(client, server)
        with pytest.raises(InvalidState):
            client.receive_data(b"x")


class TestLazyNegotiation:
    """go-libp2p writes header, protocol and the first frame together (PROTOCOL.md §4.5)."""

    def test_pipelined_data_is_the_remainder(self, vectors: dict[str, Any]) -> None:
        ms = vectors["multistream_select"]
        payload = bytes.fromhex(vectors["handshake_message"]["wire"])
        wire = bytes.fromhex(ms["multistream_header"] + ms["handshake_protocol"]) + payload
        for chunks in splits(wire):
            server = MultistreamServer({HANDSHAKE})
            events: list[ProtocolAgreed] = []
            for i, chunk in enumerate(chunks):
                if server.done:
                    # the driver hands later bytes to the next layer
                    rest = b"".join(chunks[i:])
                    assert events[0].remainder + rest == payload
                    break
                server.receive_data(chunk)
                events += server.events_received()
            else:
                assert events == [ProtocolAgreed(HANDSHAKE, payload)]
            assert len(events) == 1
            assert b"".join(server.data_to_send()) == bytes.fromhex(
                ms["multistream_header"] + ms["handshake_protocol"]
            )

    def test_client_sees_data_after_the_answer(self, vectors: dict[str, Any]) -> None:
        ms = vectors["multistream_select"]
        client = MultistreamClient([HANDSHAKE])
        assert b"".join(client.data_to_send()) == bytes.fromhex(
            ms["multistream_header"] + ms["handshake_protocol"]
        )
        client.receive_data(bytes.fromhex(ms["multistream_header"] + ms["handshake_protocol"]) + b"\x01\x00")
        assert client.events_received() == [ProtocolAgreed(HANDSHAKE, b"\x01\x00")]


class TestBadInput:
    def _server(self) -> MultistreamServer:
        server = MultistreamServer({"/noise"})
        server.data_to_send()
        return server

    def test_wrong_header(self) -> None:
        with pytest.raises(NegotiationFailed):
            self._server().receive_data(encode_message("/multistream/2.0.0"))

    def test_missing_newline(self) -> None:
        with pytest.raises(RemoteProtocolError):
            self._server().receive_data(b"\x13/multistream/1.0.0X")

    def test_over_long_line(self) -> None:
        with pytest.raises(FrameTooLarge):
            self._server().receive_data(b"\x81\x08" + b"a" * 10)

    def test_non_minimal_length(self) -> None:
        with pytest.raises(RemoteProtocolError):
            self._server().receive_data(b"\x93\x00/multistream/1.0.0\n")

    def test_not_utf8(self) -> None:
        with pytest.raises(RemoteProtocolError):
            self._server().receive_data(b"\x03\xff\xfe\n")

    def test_two_lines_in_one_message(self) -> None:
        server = self._server()
        server.receive_data(encode_message("/multistream/1.0.0"))
        with pytest.raises(RemoteProtocolError):
            server.receive_data(b"\x04a\nb\n")

    def test_unknown_protocol_gets_na_then_gives_up(self) -> None:
        server = self._server()
        server.receive_data(encode_message("/multistream/1.0.0"))
        for _ in range(31):
            server.receive_data(encode_message("/unknown"))
        assert b"".join(server.data_to_send()) == encode_message("na") * 31
        with pytest.raises(NegotiationFailed):
            server.receive_data(encode_message("/unknown"))

    def test_eof_mid_negotiation(self) -> None:
        server = self._server()
        server.receive_data(encode_message("/multistream/1.0.0")[:5])
        with pytest.raises(ConnectionClosed):
            server.receive_eof()

    def test_client_rejects_a_strange_answer(self) -> None:
        client = MultistreamClient(["/noise"])
        with pytest.raises(RemoteProtocolError):
            client.receive_data(encode_message("/multistream/1.0.0") + encode_message("/tls/1.0.0"))

    def test_client_needs_a_proposal(self) -> None:
        with pytest.raises(LocalProtocolError):
            MultistreamClient([])
