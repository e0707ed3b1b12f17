"""Bad input at a real gateway (docs/gateway-protocol.md §2–§8): each misbehaviour gets its close or
error code, the gateway stays up, and every other socket is unaffected.

Every test runs a real gateway (uvicorn) in front of a real python-sdk echo backend, connects a
well-behaved *bystander* (the Python client, with a session whose handshake completed) BEFORE the
attack, then misbehaves with a raw WebSocket client (:mod:`tests.gateway.raw_client`). After the
attack the bystander still gets its echo, ``/healthz`` answers and a new client can connect and
open a session (:meth:`Arena.assert_unharmed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.exceptions import ConnectionClosed, InvalidStatus

from glueberry.exceptions import GlueberryError
from glueberry.p2p.keys import PeerID, generate_private_key
from glueberry_gateway.client import GatewayClient, Session
from glueberry_gateway.protocol import control
from glueberry_gateway.protocol import frames as wire
from glueberry_gateway.protocol.auth import auth_message
from glueberry_gateway.protocol.codes import Code
from glueberry_gateway.server.settings import Limits, Settings, TokenSettings
from glueberry_gateway.server.socket import BrowserSocket
from tests.gateway.conftest import (
    ORIGIN,
    STREAMS,
    EchoBackend,
    MakeClient,
    MakeGateway,
    RunningGateway,
    start_gateway,
)
from tests.gateway.raw_client import Closed, RawClient, RawSession, http_get
from tests.helpers import wait_for

BACKEND = "py"
OTHER_IP = "127.0.0.2"  # the misbehaving side, where per-IP limits must not touch the bystander
SHORT = 0.3  # seconds: the timeouts the tests wait out


# ---- tokens (§4) -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Issuer:
    """An application's token issuer: an EdDSA key pair; the gateway gets the PEM public key."""

    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @property
    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def private_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def mint(self, sub: PeerID | str, *, expires_in: float = 600.0, **claims: Any) -> str:
        payload = {"sub": str(sub), "exp": time.time() + expires_in, **claims}
        return jwt.encode(payload, self.private_pem, algorithm="EdDSA")


# ---- the bystander and the survival checks --------------------------------------------------------


async def assert_bystander_ok(session: Session) -> None:
    """The bystander's session still relays both ways: a fresh message comes back echoed."""
    payload = os.urandom(12).hex().encode()
    await session.send("chat", payload)
    reply = await session.receive(timeout=5)
    assert (reply.stream, reply.data) == ("chat", b"echo:" + payload)
    assert not session.closed


def assert_socket_error(closed: Closed, code: Code) -> None:
    """A socket-level error: an ``error`` message with the code, then the close with it (§8)."""
    assert closed.code == code, closed
    assert closed.errors, f"no error message before the close: {closed}"
    assert closed.errors[-1]["code"] == code, closed


def assert_session_error(
    message: dict[str, Any], code: Code, *, session: int, request_id: int | None
) -> None:
    """A session-level error (§8): the code, the session, and the request's id when it had one."""
    assert message["type"] == "error", message
    assert message["code"] == code, message
    assert message.get("session") == session, message
    assert message.get("id") == request_id, message


@dataclass
class Arena:
    """A gateway with a backend and a bystander, and the raw clients of one test."""

    gw: RunningGateway
    backend: EchoBackend
    bystander: Session
    bystander_client: GatewayClient
    make_client: MakeClient
    issuer: Issuer | None = None  # set when the gateway checks tokens
    raws: list[RawClient] = field(default_factory=list)

    def metric(self, name: str, **labels: str) -> float:
        """A sample of the gateway's ``glueberry_gateway_<name>`` metric (0 if never set)."""
        value = self.gw.gateway.metrics.registry.get_sample_value(f"glueberry_gateway_{name}", labels)
        return value or 0.0

    def token_for(self, peer_id: PeerID) -> str | None:
        return self.issuer.mint(peer_id) if self.issuer is not None else None

    async def raw(self, **options: Any) -> RawClient:
        """A raw client, not authenticated; ``options`` as for :meth:`RawClient.connect`."""
        options.setdefault("origin", ORIGIN)
        client = await RawClient.connect(self.gw.url, **options)
        self.raws.append(client)
        return client

    async def authed(self, **options: Any) -> RawClient:
        client = await self.raw(**options)
        await client.authenticate(token=self.token_for(client.peer_id))
        return client

    async def assert_unharmed(self) -> None:
        """The bystander still gets its echo; /healthz answers; a new browser can connect, open a
        session and ping."""
        await assert_bystander_ok(self.bystander)
        status, body = await http_get("127.0.0.1", self.gw.port, "/healthz")
        assert (status, body) == (200, b'{"status":"ok"}')
        identity = generate_private_key()
        token = self.token_for(PeerID.from_private_key(identity))
        fresh = await self.make_client(self.gw.url, identity=identity, token=token)
        await fresh.open(BACKEND, timeout=5)
        await fresh.ping(timeout=5)
        await fresh.close()
        await assert_bystander_ok(self.bystander)

    async def assert_closed_alone(self, raw: RawClient, code: Code) -> None:
        """``raw`` gets the socket error ``code`` and is closed with it (§8); nothing else is
        harmed (:meth:`assert_unharmed`)."""
        assert_socket_error(await raw.until_closed(), code)
        await self.assert_unharmed()

    async def close(self) -> None:
        for raw in self.raws:
            await raw.close()
        await self.bystander_client.close()


async def _arena(
    gw: RunningGateway, backend: EchoBackend, make_client: MakeClient, issuer: Issuer | None = None
) -> Arena:
    identity = generate_private_key()
    token = issuer.mint(PeerID.from_private_key(identity)) if issuer is not None else None
    client = await make_client(gw.url, identity=identity, token=token)
    session = await client.open(BACKEND, timeout=5)
    await session.handshake(STREAMS, name="bystander", timeout=5)
    await assert_bystander_ok(session)
    return Arena(gw, backend, session, client, make_client, issuer)


MakeArena = Callable[..., Awaitable[Arena]]


@pytest.fixture
async def arena(
    echo_backend: EchoBackend, make_gateway: MakeGateway, make_client: MakeClient
) -> AsyncIterator[MakeArena]:
    """``await arena(**limits)``: a gateway with these limits, the echo backend, a bystander."""
    arenas: list[Arena] = []

    async def make(**limits: Any) -> Arena:
        gw = await make_gateway(echo_backend.backend(BACKEND), **limits)
        made = await _arena(gw, echo_backend, make_client)
        arenas.append(made)
        return made

    yield make
    for made in arenas:
        await made.close()


@pytest.fixture
async def token_arena(echo_backend: EchoBackend, make_client: MakeClient) -> AsyncIterator[MakeArena]:
    """``await token_arena(required=True, **limits)``: as :func:`arena`, with a gateway that
    checks EdDSA tokens of ``arena.issuer``."""
    arenas: list[Arena] = []
    running: list[RunningGateway] = []

    async def make(*, required: bool = True, **limits: Any) -> Arena:
        issuer = Issuer()
        settings = Settings(
            allowed_origins=(ORIGIN,),
            backends=(echo_backend.backend(BACKEND),),
            tokens=TokenSettings(required=required, algorithms=("EdDSA",), key=issuer.public_pem),
        )
        for key, value in limits.items():
            setattr(settings.limits, key, value)
        gw = await start_gateway(settings)
        running.append(gw)
        made = await _arena(gw, echo_backend, make_client, issuer)
        arenas.append(made)
        return made

    yield make
    for made in arenas:
        await made.close()
    for gw in running:
        await gw.stop()


# ---- §2, §8: malformed input -> 4000 -----------------------------------------------------------------


class TestProtocolErrors:
    """§2: unknown types and malformed frames or JSON are a protocol error: error + close 4000."""

    @pytest.mark.parametrize(
        "text",
        ['{"type": "ping", "id": 1', "not json at all", "[1, 2, 3]", '{"type": 7}', '{"id": 1}', '"ping"'],
        ids=["truncated", "not-json", "array", "type-not-string", "no-type", "string"],
    )
    async def test_malformed_json_after_auth(self, arena: MakeArena, text: str) -> None:
        a = await arena()
        raw = await a.authed()
        await raw.send_text(text)
        await a.assert_closed_alone(raw, Code.PROTOCOL_ERROR)

    async def test_truncated_binary_frame(self, arena: MakeArena) -> None:
        a = await arena()
        raw = await a.authed()
        await raw.open(BACKEND)
        await raw.send_binary(bytes([wire.DATA_KIND, 0]))  # 2 bytes: not even the 4-byte header
        await a.assert_closed_alone(raw, Code.PROTOCOL_ERROR)

    async def test_binary_frame_truncated_inside_the_stream_name(self, arena: MakeArena) -> None:
        a = await arena()
        raw = await a.authed()
        await raw.open(BACKEND)
        await raw.send_binary(bytes([wire.DATA_KIND, 0, 1, 10]) + b"cha")  # says 10 name bytes, has 3
        await a.assert_closed_alone(raw, Code.PROTOCOL_ERROR)

    async def test_unknown_binary_kind(self, arena: MakeArena) -> None:
        a = await arena()
        raw = await a.authed()
        await raw.open(BACKEND)
        frame = bytearray(wire.encode_data_frame(1, "chat", b"payload"))
        frame[0] = 0x7F
        await raw.send_binary(bytes(frame))
        await a.assert_closed_alone(raw, Code.PROTOCOL_ERROR)

    async def test_unknown_message_type(self, arena: MakeArena) -> None:
        a = await arena()
        raw = await a.authed()
        await raw.send_json("subscribe", id=1, topic="everything")
        await a.assert_closed_alone(raw, Code.PROTOCOL_ERROR)

    async def test_binary_frame_before_auth(self, arena: MakeArena) -> None:
        a = await arena()
        raw = await a.raw()
        await raw.read_challenge()
        await raw.send_data(1, "chat", b"too early")
        await a.assert_closed_alone(raw, Code.PROTOCOL_ERROR)

    async def test_other_message_before_auth(self, arena: MakeArena) -> None:
        a = await arena()
        raw = await a.raw()
        await raw.read_challenge()
        await raw.send_json("open", id=1, session=1, backend=BACKEND)
        await a.assert_closed_alone(raw, Code.PROTOCOL_ERROR)

    async def test_second_auth_after_ready(self, arena: MakeArena) -> None:
        a = await arena()
        raw = await a.authed()
        await raw.send_auth()  # a valid auth again (the first challenge, signed again)
        await a.assert_closed_alone(raw, Code.PROTOCOL_ERROR)


# ---- §2, §3, §9: versions -> 4001 --------------------------------------------------------------------


class TestVersion:
    """§9: the ``version`` in auth must be 1; §2: the ``glueberry.v1`` subprotocol is required."""

    @pytest.mark.parametrize("version", [2, 0, "1", None], ids=["2", "0", "string", "missing"])
    async def test_wrong_version_in_auth(self, arena: MakeArena, version: object) -> None:
        a = await arena()
        raw = await a.raw()
        challenge = await raw.read_challenge()
        assert challenge["version"] == control.PROTOCOL_VERSION
        await raw.send_json(
            "auth",
            version=version,
            public_key=raw.public_key,
            signature=raw.sign_challenge(challenge),
        )
        await a.assert_closed_alone(raw, Code.UNSUPPORTED_VERSION)

    @pytest.mark.parametrize(
        "offered", [[], ["glueberry.v2"], ["chat", "glueberry.v2"]], ids=["none", "v2", "others"]
    )
    async def test_without_the_glueberry_v1_subprotocol(self, arena: MakeArena, offered: list[str]) -> None:
        """HTTP 400 before the upgrade, or (when the framework cannot refuse early, as here) the
        upgrade without a subprotocol and close 4001 before any challenge."""
        a = await arena()
        status, closed = await upgrade_outcome(a.raw(subprotocols=offered))
        if status is not None:
            assert status == 400
        else:
            assert closed is not None
            assert closed.code == Code.UNSUPPORTED_VERSION, closed
            assert not any(m["type"] == "challenge" for m in closed.messages)
        await a.assert_unharmed()


async def upgrade_outcome(connecting: Awaitable[RawClient]) -> tuple[int | None, Closed | None]:
    """(HTTP status, None) if the upgrade was refused, else (None, how the socket then ended)."""
    try:
        raw = await connecting
    except InvalidStatus as exc:
        return exc.response.status_code, None
    assert raw.ws.subprotocol is None
    return None, await raw.until_closed()


# ---- §2, §7: sizes -> 4009 ----------------------------------------------------------------------------


class TestSizeLimits:
    """§2, §7: a binary frame over ``max_frame_bytes`` or a text frame over ``max_control_bytes``
    closes with 4009."""

    async def test_data_frame_over_max_frame_bytes(self, arena: MakeArena) -> None:
        a = await arena(max_frame_bytes=4096)
        raw = await a.authed()
        assert raw.ready is not None
        assert raw.ready["limits"]["max_frame_bytes"] == 4096
        await raw.open(BACKEND)
        header = wire.data_header(1, "chat")
        await raw.send_binary(header + bytes(4096 - len(header) + 1))
        await a.assert_closed_alone(raw, Code.MESSAGE_TOO_BIG)

    async def test_data_frame_far_over_max_frame_bytes_is_refused(self, arena: MakeArena) -> None:
        """Far over the limit the server's WebSocket layer (uvicorn ``ws_max_size``) refuses the
        frame before the gateway sees it; the socket still ends and nothing else is touched."""
        a = await arena(max_frame_bytes=4096)
        raw = await a.authed()
        await raw.open(BACKEND)
        await raw.send_data(1, "chat", bytes(64 * 1024))
        closed = await raw.until_closed()
        assert closed.code in (1009, Code.MESSAGE_TOO_BIG), closed
        await a.assert_unharmed()

    async def test_data_frame_far_over_max_frame_bytes_ends_the_sessions(self, arena: MakeArena) -> None:
        """§7: a frame over the limit ends the socket for good (4009; 1009 where the server's
        WebSocket layer refused it first), not as a lost connection whose sessions wait for a resume."""
        a = await arena(max_frame_bytes=4096)
        raw = await a.authed()
        await raw.open(BACKEND)
        await raw.send_data(1, "chat", bytes(64 * 1024))
        closed = await raw.until_closed()
        assert closed.code in (1009, Code.MESSAGE_TOO_BIG), closed
        assert await wait_for(lambda: a.metric("sockets") == 1, 5)  # the bystander's only
        assert a.metric("detached_sessions") == 0
        assert a.metric("sessions") == 1
        assert a.metric("socket_closes_total", reason="MESSAGE_TOO_BIG") == 1

    async def test_control_message_over_max_control_bytes(self, arena: MakeArena) -> None:
        a = await arena(max_control_bytes=1024)
        raw = await a.authed()
        await raw.send_json("ping", id=1, padding="x" * 1024)  # unknown fields are ignored, not sizes
        await a.assert_closed_alone(raw, Code.MESSAGE_TOO_BIG)

    async def test_control_message_over_max_control_bytes_before_auth(self, arena: MakeArena) -> None:
        a = await arena(max_control_bytes=1024)
        raw = await a.raw()
        await raw.send_auth(padding="x" * 1024)
        await a.assert_closed_alone(raw, Code.MESSAGE_TOO_BIG)

    async def test_control_message_at_max_control_bytes_is_served(self, arena: MakeArena) -> None:
        a = await arena(max_control_bytes=1024)
        raw = await a.authed()
        message = control.encode_json("ping", id=5, padding="")
        await raw.send_text(control.encode_json("ping", id=5, padding="x" * (1024 - len(message))))
        assert (await raw.next_control("pong"))["id"] == 5

    async def test_control_message_limit_counts_bytes_not_characters(self, arena: MakeArena) -> None:
        a = await arena(max_control_bytes=1024)
        raw = await a.authed()
        text = control.encode_json("ping", id=1, padding="€" * 600)  # ~630 characters, ~1830 bytes
        assert len(text) < 1024 < len(text.encode())
        await raw.send_text(text)
        answer = await raw.next_control(timeout=2)
        assert answer == {"type": "error", "code": Code.MESSAGE_TOO_BIG, "message": answer.get("message")}
        closed = await raw.until_closed()
        assert closed.code == Code.MESSAGE_TOO_BIG, closed
        await a.assert_unharmed()


# ---- §3: authentication -> 4002, 4003, 4004, 4007 ---------------------------------------------------


class TestAuthentication:
    """§3: the auth signature over (gateway, origin, nonce) must verify, over this socket's
    unexpired challenge, within ``auth_timeout``, from an allowed origin."""

    async def test_bad_signature(self, arena: MakeArena) -> None:
        a = await arena()
        raw = await a.raw()
        await raw.send_auth(signature=os.urandom(64))
        assert_socket_error(await raw.until_closed(), Code.AUTH_FAILED)
        assert a.metric("auth_failures_total", reason="AUTH_FAILED") == 1
        await a.assert_unharmed()

    async def test_signature_by_another_key(self, arena: MakeArena) -> None:
        a = await arena()
        raw = await a.raw()
        challenge = await raw.read_challenge()
        nonce = control.b64d(challenge["nonce"], "nonce", size=32)
        impostor = generate_private_key()  # signs the right message, but the key sent is raw's
        await raw.send_auth(signature=impostor.sign(auth_message(challenge["gateway"], ORIGIN, nonce)))
        await a.assert_closed_alone(raw, Code.AUTH_FAILED)

    async def test_signature_over_another_sockets_challenge(self, arena: MakeArena) -> None:
        """A signature made for socket A's nonce does not authenticate socket B; A is untouched."""
        a = await arena()
        first, second = await a.raw(), await a.raw()
        first_challenge = await first.read_challenge()
        second_challenge = await second.read_challenge()
        assert first_challenge["nonce"] != second_challenge["nonce"]
        await second.send_auth(signature=second.sign_challenge(first_challenge))
        assert_socket_error(await second.until_closed(), Code.AUTH_FAILED)
        ready = await first.authenticate()  # the victim's challenge is still good for the victim
        assert ready["peer_id"] == str(first.peer_id)
        await a.assert_unharmed()

    async def test_reused_challenge_after_success(self, arena: MakeArena) -> None:
        """Replaying a successful auth (same key, same nonce) on a new socket fails: the new
        socket has its own nonce."""
        a = await arena()
        victim = await a.raw()
        challenge = await victim.read_challenge()
        await victim.authenticate()
        replay = await a.raw(identity=victim.identity)  # even with the key, the old nonce is useless
        await replay.send_auth(signature=replay.sign_challenge(challenge))
        assert_socket_error(await replay.until_closed(), Code.AUTH_FAILED)
        assert await victim.is_open()
        await a.assert_unharmed()

    async def test_expired_challenge(self, arena: MakeArena) -> None:
        a = await arena(challenge_ttl=0.2)
        raw = await a.raw()
        challenge = await raw.read_challenge()
        assert challenge["expires_in"] == 0.2
        await asyncio.sleep(0.35)
        await raw.send_auth()  # correctly signed, too late
        await a.assert_closed_alone(raw, Code.CHALLENGE_EXPIRED)

    async def test_no_auth_in_time(self, arena: MakeArena) -> None:
        a = await arena(auth_timeout=SHORT)
        raw = await a.raw()
        start = time.monotonic()
        closed = await raw.until_closed(timeout=5)
        assert_socket_error(closed, Code.AUTH_TIMEOUT)
        assert SHORT * 0.9 <= time.monotonic() - start < 3
        assert [m["type"] for m in closed.messages] == ["challenge", "error"]
        await a.assert_unharmed()

    async def test_origin_not_allowed(self, arena: MakeArena) -> None:
        a = await arena()
        raw = await a.raw(origin="http://evil.test")  # signed with that origin: honest but not allowed
        await raw.send_auth()
        await a.assert_closed_alone(raw, Code.ORIGIN_NOT_ALLOWED)

    async def test_no_origin(self, arena: MakeArena) -> None:
        a = await arena()
        raw = await a.raw(origin="")
        await raw.send_auth()
        closed = await raw.until_closed()
        assert_socket_error(closed, Code.ORIGIN_NOT_ALLOWED)
        await a.assert_unharmed()


# ---- §4: tokens -> 4005, 4006, 4101 ------------------------------------------------------------------


class TestTokens:
    """§4: an EdDSA JWT whose ``sub`` is the browser's peer ID, checked at auth and on refresh."""

    async def test_expired_token(self, token_arena: MakeArena) -> None:
        a = await token_arena()
        assert a.issuer is not None
        raw = await a.raw()
        await raw.send_auth(token=a.issuer.mint(raw.peer_id, expires_in=-60))  # beyond any leeway
        await a.assert_closed_alone(raw, Code.TOKEN_EXPIRED)

    async def test_forged_token(self, token_arena: MakeArena) -> None:
        a = await token_arena()
        raw = await a.raw()
        await raw.send_auth(token=Issuer().mint(raw.peer_id))  # well formed, another issuer's key
        await a.assert_closed_alone(raw, Code.TOKEN_INVALID)

    async def test_token_for_another_peer(self, token_arena: MakeArena) -> None:
        a = await token_arena()
        assert a.issuer is not None
        raw = await a.raw()
        other = PeerID.from_private_key(generate_private_key())
        await raw.send_auth(token=a.issuer.mint(other))
        await a.assert_closed_alone(raw, Code.TOKEN_INVALID)

    async def test_stolen_token_of_the_bystander(self, token_arena: MakeArena) -> None:
        """A token is bound to its ``sub``: another key cannot use the bystander's."""
        a = await token_arena()
        assert a.issuer is not None
        raw = await a.raw()
        await raw.send_auth(token=a.issuer.mint(a.bystander_client.peer_id))
        await a.assert_closed_alone(raw, Code.TOKEN_INVALID)

    async def test_missing_token_when_required(self, token_arena: MakeArena) -> None:
        a = await token_arena(required=True)
        raw = await a.raw()
        await raw.send_auth()
        await a.assert_closed_alone(raw, Code.TOKEN_INVALID)

    @pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", ""], ids=["garbage", "three-parts", "empty"])
    async def test_malformed_token(self, token_arena: MakeArena, token: str) -> None:
        a = await token_arena(required=False)
        raw = await a.raw()
        await raw.send_auth(token=token)
        await a.assert_closed_alone(raw, Code.TOKEN_INVALID)

    async def test_backend_not_in_the_backends_claim(self, token_arena: MakeArena) -> None:
        a = await token_arena()
        assert a.issuer is not None
        raw = await a.raw()
        await raw.send_auth(token=a.issuer.mint(raw.peer_id, backends=["somewhere-else"]))
        ready = await raw.next_control("ready")
        assert ready["backends"] == []  # ready lists only what the token allows
        await raw.send_json("open", id=3, session=1, backend=BACKEND)
        assert_session_error(
            await raw.next_control("error"), Code.BACKEND_NOT_ALLOWED, session=1, request_id=3
        )
        peer_id = str(a.backend.node.peer_id)  # nor by its peer ID
        await raw.send_json("open", id=4, session=1, backend=peer_id)
        assert_session_error(
            await raw.next_control("error"), Code.BACKEND_NOT_ALLOWED, session=1, request_id=4
        )
        assert await raw.is_open()
        await a.assert_unharmed()

    async def test_refresh_then_expiry_without_refresh(self, token_arena: MakeArena) -> None:
        """A refreshed token keeps the socket past the first token's expiry; a token that is not
        refreshed ends the socket with 4006, after a ``token_expiring`` notice."""
        a = await token_arena(token_refresh_notice=0.4)
        assert a.issuer is not None
        raw = await a.raw()
        first = a.issuer.mint(raw.peer_id, expires_in=0.8)
        await raw.send_auth(token=first)
        await raw.next_control("ready")
        first_exp = jwt.decode(first, options={"verify_signature": False})["exp"]
        notice = await raw.next_control(timeout=2)
        assert notice == {"type": "token_expiring", "expires_at": int(first_exp)}
        second = a.issuer.mint(raw.peer_id, expires_in=1.6)
        await raw.send_json("refresh", id=9, token=second)
        second_exp = jwt.decode(second, options={"verify_signature": False})["exp"]
        assert await raw.next_control(timeout=2) == {
            "type": "refreshed",
            "id": 9,
            "expires_at": int(second_exp),
        }
        await asyncio.sleep(max(0.0, first_exp - time.time()) + 0.2)  # past the first expiry
        assert await raw.is_open()
        closed = await raw.until_closed(timeout=3)  # the second one is not refreshed
        assert time.time() >= second_exp - 0.05
        assert [m["type"] for m in closed.messages] == ["token_expiring", "error"]
        assert closed.messages[0]["expires_at"] == int(second_exp)
        assert_socket_error(closed, Code.TOKEN_EXPIRED)
        await a.assert_unharmed()

    async def test_refresh_with_a_token_for_another_peer(self, token_arena: MakeArena) -> None:
        a = await token_arena()
        assert a.issuer is not None
        raw = await a.authed()
        other = PeerID.from_private_key(generate_private_key())
        await raw.send_json("refresh", id=2, token=a.issuer.mint(other))
        await a.assert_closed_alone(raw, Code.TOKEN_INVALID)


# ---- §5.1: backends -> 4100 --------------------------------------------------------------------------


class ConnectionRecorder:
    """A TCP listener that only counts who connects: where a browser would like the gateway to dial."""

    def __init__(self) -> None:
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ConnectionRecorder:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def multiaddr(self) -> str:
        assert self._server is not None
        return f"/ip4/127.0.0.1/tcp/{self._server.sockets[0].getsockname()[1]}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()


class TestBackends:
    """§5.1: the gateway dials configured backends only, by name or peer ID, never an address."""

    @pytest.mark.parametrize("kind", ["name", "peer-id", "multiaddr"])
    async def test_unknown_backend(self, arena: MakeArena, kind: str) -> None:
        a = await arena()
        raw = await a.authed()
        async with ConnectionRecorder() as recorder:
            backend = {
                "name": "nonexistent",
                "peer-id": str(PeerID.from_private_key(generate_private_key())),
                "multiaddr": recorder.multiaddr,
            }[kind]
            await raw.send_json("open", id=7, session=3, backend=backend)
            error = await raw.next_control("error")
            assert_session_error(error, Code.BACKEND_UNKNOWN, session=3, request_id=7)
            assert await raw.is_open()  # the socket stays
            session = await raw.open(BACKEND, session=3, request_id=8)  # and the number is free again
            assert session.number == 3
            assert recorder.connections == 0
        await a.assert_unharmed()

    async def test_open_with_addrs_is_refused_without_dialling(self, arena: MakeArena) -> None:
        a = await arena()
        raw = await a.authed()
        async with ConnectionRecorder() as recorder:
            for field_name in ("addrs", "addr", "multiaddrs"):
                await raw.send_json(
                    "open", id=1, session=1, backend=BACKEND, **{field_name: [recorder.multiaddr]}
                )
                error = await raw.next_control("error")
                assert error["code"] == Code.BACKEND_UNKNOWN, error
                if not await raw.is_open():  # see the next test
                    raw = await a.authed()
            await asyncio.sleep(SHORT)  # a dial, if any, would have been made by now
            assert recorder.connections == 0
        await a.assert_unharmed()

    async def test_open_with_addrs_leaves_the_socket_open(self, arena: MakeArena) -> None:
        """§5.1: refused with 4100 like any unknown backend; §8: 4100 concerns one request, so
        the socket and its other sessions stay."""
        a = await arena()
        raw = await a.authed()
        await raw.open(BACKEND, session=1, request_id=1)
        await raw.send_json("open", id=2, session=2, backend=BACKEND, addrs=["/ip4/127.0.0.1/tcp/1"])
        assert_session_error(await raw.next_control("error"), Code.BACKEND_UNKNOWN, session=2, request_id=2)
        assert await raw.is_open()
        await a.assert_unharmed()


# ---- §7: rate limits and slow consumers -> 4008, 4010 ----------------------------------------------


class TestRateLimits:
    """§7: ``messages_per_second`` and ``bytes_per_second`` per socket (token bucket, burst 1 s)."""

    async def test_message_flood(self, arena: MakeArena) -> None:
        a = await arena(messages_per_second=20)
        raw = await a.authed()
        for i in range(1, 61):
            with contextlib.suppress(ConnectionClosed):
                await raw.send_json("ping", id=i)
        closed = await raw.until_closed()
        assert_socket_error(closed, Code.RATE_LIMITED)
        pongs = [m for m in closed.messages if m["type"] == "pong"]
        assert 15 <= len(pongs) < 60  # the burst was served, the flood was not
        await a.assert_unharmed()

    async def test_byte_flood(self, arena: MakeArena) -> None:
        a = await arena(bytes_per_second=8192)
        raw = await a.authed()
        await raw.open(BACKEND)
        for _ in range(40):
            with contextlib.suppress(ConnectionClosed):
                await raw.send_data(1, "chat", bytes(1000))
        await a.assert_closed_alone(raw, Code.RATE_LIMITED)


class Flood:
    """The backend sends 16 KiB messages to one browser as fast as the gateway lets it."""

    def __init__(self, backend: EchoBackend, peer_id: PeerID) -> None:
        self.sent = 0
        self._backend = backend
        self._peer_id = peer_id
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        chunk = os.urandom(16 * 1024)
        with contextlib.suppress(GlueberryError):  # the gateway ends the backend connection
            while True:
                await self._backend.node.send(self._peer_id, "chat", chunk)
                self.sent += len(chunk)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def settles(value: Callable[[], int], *, quiet: float, timeout: float) -> bool:
    """Whether ``value()`` stops changing for ``quiet`` seconds within ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = value()
    while loop.time() < deadline:
        await asyncio.sleep(quiet)
        if value() == last:
            return True
        last = value()
    return False


class TestSlowConsumer:
    """§7: the only queue is the per-socket outbound queue (``outbound_queue_bytes``); a browser
    that does not read is closed with 4010, and meanwhile its backend is stalled, not buffered."""

    async def never_reading_client(self, a: Arena) -> tuple[RawClient, BrowserSocket]:
        """An authenticated raw client with an established session that then stops reading:
        websockets buffers one frame (``max_queue=1``) and the socket's receive buffer is tiny."""
        raw = await a.authed(max_queue=1, receive_buffer=4096)
        session = await raw.open(BACKEND)
        await raw.handshake(session)
        sock = next(s for s in a.gw.gateway.sockets if s.peer_id == raw.peer_id)
        return raw, sock

    def attacker_released(self, a: Arena, sock: BrowserSocket) -> bool:
        """The socket is gone and its session (backend connection) ended: only the bystander's is left."""
        return sock not in a.gw.gateway.sockets and a.metric("sessions") == 1

    async def test_a_client_that_never_reads(self, arena: MakeArena) -> None:
        limit = 64 * 1024
        window = Limits().backend_window
        # the queue overflows (over twice the limit) at once: no need to wait for the timeout
        a = await arena(slow_consumer_timeout=2.0, outbound_queue_bytes=limit)
        raw, sock = await self.never_reading_client(a)
        flood = Flood(a.backend, raw.peer_id)
        peak = 0

        def sample() -> bool:
            nonlocal peak
            peak = max(peak, sock.outbound.queued_bytes)
            return a.metric("drops_total", reason="slow_consumer") > 0

        assert await wait_for(sample, 5), f"no 4010 decision; backend sent {flood.sent} bytes"
        # memory: the queue is bounded by the limit (twice it, then dropped) plus what the backend's
        # yamux window still lets through; the backend is stalled, not buffered without end
        for _ in range(30):
            sample()
            await asyncio.sleep(0.01)
        assert peak <= 2 * limit + window, peak
        assert await settles(lambda: flood.sent, quiet=0.2, timeout=3), "the backend is not stalled"
        assert flood.sent < 16 << 20, flood.sent  # the window, the queue and the kernel's buffers
        await assert_bystander_ok(a.bystander)  # while the attacker still reads nothing
        closed = await raw.until_closed(timeout=5)  # once it reads: the frames in flight, then 4010
        assert closed.code == Code.SLOW_CONSUMER, closed
        assert await wait_for(lambda: self.attacker_released(a, sock), 5)
        assert a.metric("socket_closes_total", reason="SLOW_CONSUMER") == 1
        await flood.stop()
        await a.assert_unharmed()

    async def test_a_client_that_never_reads_is_let_go(self, arena: MakeArena) -> None:
        """The write to the browser blocks (the queue limit is above the backend's window, so only
        ``slow_consumer_timeout`` catches it); a few seconds later the gateway must have ended the
        socket and its session without the browser's help. A browser that reads so late may find
        the connection dropped without the close frame."""
        a = await arena(slow_consumer_timeout=1.0, outbound_queue_bytes=1 << 20)
        raw, sock = await self.never_reading_client(a)
        flood = Flood(a.backend, raw.peer_id)
        released = await wait_for(lambda: self.attacker_released(a, sock), 1.0 + 2.5)
        await flood.stop()
        closed = await raw.until_closed(timeout=5)
        assert closed.code in (Code.SLOW_CONSUMER, None), closed
        await a.assert_unharmed()
        assert released, "the slow consumer's socket and session are still there"
        assert a.metric("socket_closes_total", reason="SLOW_CONSUMER") == 1


# ---- §5, §8: session-level errors -> 4103 … 4111, the socket stays --------------------------------


class TestSessionErrors:
    """§8: codes 4100–4199 refuse or end one session or request; the socket and its other
    sessions go on (checked with an echo through an established session on the same socket)."""

    async def established(self, a: Arena, **options: Any) -> tuple[RawClient, RawSession]:
        raw = await a.authed(**options)
        session = await raw.open(BACKEND, session=1, request_id=1)
        await raw.handshake(session)
        assert await raw.roundtrip(session, b"before") == b"echo:before"
        return raw, session

    async def test_open_with_a_session_number_in_use(self, arena: MakeArena) -> None:
        a = await arena()
        raw, session = await self.established(a)
        await raw.send_json("open", id=2, session=1, backend=BACKEND)
        assert_session_error(await raw.next_control("error"), Code.SESSION_EXISTS, session=1, request_id=2)
        assert await raw.roundtrip(session, b"after") == b"echo:after"
        await a.assert_unharmed()

    async def test_open_with_a_session_number_being_opened(self, arena: MakeArena) -> None:
        a = await arena()
        raw = await a.authed()
        await raw.send_json("open", id=1, session=5, backend=BACKEND)
        sign = await raw.next_control("sign")  # the first open waits for its signature
        await raw.send_json("open", id=2, session=5, backend=BACKEND)
        assert_session_error(await raw.next_control("error"), Code.SESSION_EXISTS, session=5, request_id=2)
        await raw.send_json(
            "signature", id=sign["id"], signature=raw.identity.sign(control.b64d(sign["payload"], "p"))
        )
        opened = await raw.next_control("opened")
        assert (opened["id"], opened["session"]) == (1, 5)
        await a.assert_unharmed()

    async def test_more_sessions_than_max_sessions(self, arena: MakeArena) -> None:
        a = await arena(max_sessions=1)
        raw, session = await self.established(a)
        await raw.send_json("open", id=2, session=2, backend=BACKEND)
        assert_session_error(await raw.next_control("error"), Code.TOO_MANY_SESSIONS, session=2, request_id=2)
        assert await raw.roundtrip(session, b"after") == b"echo:after"
        await a.assert_unharmed()

    async def test_data_frame_for_a_session_that_does_not_exist(self, arena: MakeArena) -> None:
        a = await arena()
        raw, session = await self.established(a)
        await raw.send_data(9, "chat", b"to nowhere")
        assert_session_error(
            await raw.next_control("error"), Code.SESSION_NOT_FOUND, session=9, request_id=None
        )
        await raw.send_json("close", id=4, session=9)
        assert_session_error(await raw.next_control("error"), Code.SESSION_NOT_FOUND, session=9, request_id=4)
        assert await raw.roundtrip(session, b"after") == b"echo:after"
        await a.assert_unharmed()

    async def test_more_streams_than_max_streams(self, arena: MakeArena) -> None:
        a = await arena(max_streams=2)  # the handshake stream is closed once done: chat + files
        raw, session = await self.established(a)  # uses "chat"
        assert session.cipher is not None
        await raw.send_data(1, "files", session.cipher.encrypt(b"second stream"))
        assert session.cipher.decrypt(bytes((await raw.next_frame()).payload)) == b"echo:second stream"
        await raw.send_data(1, "extra", session.cipher.encrypt(b"third stream"))  # refused, dropped
        assert_session_error(
            await raw.next_control("error"), Code.TOO_MANY_STREAMS, session=1, request_id=None
        )
        assert await raw.roundtrip(session, b"after") == b"echo:after"
        assert b"third stream" not in [data for _, data in a.backend.received]
        await a.assert_unharmed()

    async def test_sign_refused(self, arena: MakeArena) -> None:
        a = await arena()
        raw, session = await self.established(a)
        await raw.send_json("open", id=2, session=2, backend=BACKEND)
        await raw.answer_sign(refuse=True)
        assert_session_error(await raw.next_control("error"), Code.SIGNATURE_INVALID, session=2, request_id=2)
        assert await raw.roundtrip(session, b"after") == b"echo:after"
        assert (await raw.open(BACKEND, session=2, request_id=3)).number == 2  # a new try works
        await a.assert_unharmed()

    async def test_bad_noise_signature(self, arena: MakeArena) -> None:
        a = await arena()
        raw, session = await self.established(a)
        await raw.send_json("open", id=2, session=2, backend=BACKEND)
        sign = await raw.next_control("sign")
        await raw.send_json("signature", id=sign["id"], signature=os.urandom(64))
        assert_session_error(await raw.next_control("error"), Code.SIGNATURE_INVALID, session=2, request_id=2)
        assert await raw.roundtrip(session, b"after") == b"echo:after"
        await a.assert_unharmed()

    async def test_no_answer_to_sign(self, arena: MakeArena) -> None:
        a = await arena(sign_timeout=SHORT)
        raw, session = await self.established(a)
        start = time.monotonic()
        await raw.send_json("open", id=2, session=2, backend=BACKEND)
        await raw.next_control("sign")  # and no answer
        assert_session_error(await raw.next_control("error"), Code.SIGN_TIMEOUT, session=2, request_id=2)
        assert SHORT * 0.9 <= time.monotonic() - start < 3
        assert await raw.roundtrip(session, b"after") == b"echo:after"
        await a.assert_unharmed()

    async def test_late_answer_to_sign(self, arena: MakeArena) -> None:
        """§5.1: a failed open leaves the socket and its other sessions untouched, also when the
        browser's answer comes just too late."""
        a = await arena(sign_timeout=SHORT)
        raw, session = await self.established(a)
        await raw.send_json("open", id=2, session=2, backend=BACKEND)
        sign = await raw.next_control("sign")
        assert_session_error(await raw.next_control("error"), Code.SIGN_TIMEOUT, session=2, request_id=2)
        payload = control.b64d(sign["payload"], "payload")
        await raw.send_json("signature", id=sign["id"], signature=raw.identity.sign(payload))
        assert await raw.roundtrip(session, b"after", timeout=2) == b"echo:after"
        await a.assert_unharmed()

    async def test_invalid_stream_name_in_a_data_frame(self, arena: MakeArena) -> None:
        a = await arena()
        raw, _ = await self.established(a)
        header = bytes([wire.DATA_KIND, 0, 1, 9]) + b"bad name!"
        await raw.send_binary(header + b"payload")
        error = await raw.next_control("error")
        assert error["code"] == Code.INVALID_STREAM, error
        await a.assert_unharmed()

    async def test_invalid_stream_name_leaves_the_socket_open(self, arena: MakeArena) -> None:
        a = await arena()
        raw, session = await self.established(a)
        await raw.send_binary(bytes([wire.DATA_KIND, 0, 1, 9]) + b"bad name!" + b"payload")
        assert_session_error(await raw.next_control("error"), Code.INVALID_STREAM, session=1, request_id=None)
        assert await raw.roundtrip(session, b"after", timeout=2) == b"echo:after"
        await a.assert_unharmed()


# ---- §7: socket limits -> 4012, 4008 -----------------------------------------------------------------


class TestSocketLimits:
    """§7: ``max_sockets``, ``max_sockets_per_ip``, ``connection_rate_per_ip`` (per minute). The
    attacker connects from 127.0.0.2, the bystander and the new client from 127.0.0.1."""

    async def test_too_many_sockets_from_one_address(self, arena: MakeArena) -> None:
        a = await arena(max_sockets_per_ip=2)
        first = await a.authed(source_ip=OTHER_IP)
        await a.authed(source_ip=OTHER_IP)
        third = await a.raw(source_ip=OTHER_IP)
        closed = await third.until_closed()
        assert_socket_error(closed, Code.TOO_MANY_CONNECTIONS)
        assert not any(m["type"] == "challenge" for m in closed.messages)
        assert await first.is_open()
        await first.close()  # a place is free again
        assert await wait_for(lambda: a.metric("sockets") == 2, 5)
        await a.authed(source_ip=OTHER_IP)
        await a.assert_unharmed()  # 127.0.0.1 has the bystander and the new client: two

    async def test_connection_rate_from_one_address(self, arena: MakeArena) -> None:
        a = await arena(connection_rate_per_ip=3)
        for _ in range(3):
            raw = await a.authed(source_ip=OTHER_IP)
            await raw.close()
        fourth = await a.raw(source_ip=OTHER_IP)
        closed = await fourth.until_closed()
        assert_socket_error(closed, Code.RATE_LIMITED)
        await a.assert_unharmed()  # 127.0.0.1: the bystander, the new client

    async def test_too_many_sockets_in_all(self, arena: MakeArena) -> None:
        a = await arena(max_sockets=2)
        second = await a.authed(source_ip=OTHER_IP)
        third = await a.raw(source_ip="127.0.0.3")
        assert_socket_error(await third.until_closed(), Code.TOO_MANY_CONNECTIONS)
        await second.close()
        assert await wait_for(lambda: a.metric("sockets") == 1, 5)
        await a.assert_unharmed()


# ---- §5.6: batches -------------------------------------------------------------------------------


def _entry(frame: bytes) -> bytes:
    return len(frame).to_bytes(2, "big") + frame


class TestBatches:
    """§5.6: a batch means what its frames mean one by one; a malformed batch closes with 4000,
    one over ``max_frame_bytes`` with 4009."""

    async def established(self, a: Arena, **auth: Any) -> tuple[RawClient, RawSession]:
        raw = await a.raw()
        await raw.authenticate(**auth)
        session = await raw.open(BACKEND, session=1, request_id=1)
        await raw.handshake(session)
        return raw, session

    async def echoes(self, raw: RawClient, session: RawSession, n: int) -> list[bytes]:
        assert session.cipher is not None
        return [session.cipher.decrypt(bytes((await raw.next_frame()).payload)) for _ in range(n)]

    async def test_ready_says_batches_are_welcome(self, arena: MakeArena) -> None:
        a = await arena()
        raw = await a.authed()
        assert raw.ready is not None
        assert raw.ready["batch"] is True

    async def test_a_batch_is_relayed_frame_by_frame_in_order(self, arena: MakeArena) -> None:
        a = await arena()
        raw, session = await self.established(a)  # did not ask for batches: gets single frames
        assert session.cipher is not None
        words = [f"m{i}".encode() for i in range(12)]
        batch = wire.encode_batch(
            [wire.encode_data_frame(1, "chat", session.cipher.encrypt(w)) for w in words]
        )
        before = raw.binary_messages
        await raw.send_binary(batch)
        assert await self.echoes(raw, session, 12) == [b"echo:" + w for w in words]
        assert raw.binary_messages - before == 12  # one message per frame for this browser
        assert [data for _, data in a.backend.received][-12:] == words
        await a.assert_unharmed()

    async def test_the_gateway_batches_for_a_browser_that_asked(self, arena: MakeArena) -> None:
        a = await arena()
        raw, session = await self.established(a, batch=True)
        assert session.cipher is not None
        cipher = session.cipher
        sent = got = 0
        received: list[bytes] = []
        before = raw.binary_messages
        for burst in range(5):  # the backend's echoes of one burst share a write, mostly
            words = [f"b{burst}-{i}".encode() for i in range(16)]
            await raw.send_binary(
                wire.encode_batch([wire.encode_data_frame(1, "chat", cipher.encrypt(w)) for w in words])
            )
            sent += 16
            received += await self.echoes(raw, session, 16)
            got = raw.binary_messages - before
        assert received == [b"echo:" + f"b{b}-{i}".encode() for b in range(5) for i in range(16)]
        assert got < sent  # some echoes came several to a message
        await a.assert_unharmed()

    async def test_an_error_about_one_frame_does_not_stop_the_others(self, arena: MakeArena) -> None:
        a = await arena()
        raw, session = await self.established(a)
        assert session.cipher is not None
        frames = [
            wire.encode_data_frame(1, "chat", session.cipher.encrypt(b"first")),
            wire.encode_data_frame(9, "chat", b"to nowhere"),  # 4103, this frame only
            wire.encode_data_frame(1, "chat", session.cipher.encrypt(b"last")),
        ]
        await raw.send_binary(wire.encode_batch(frames))
        assert_session_error(
            await raw.next_control("error"), Code.SESSION_NOT_FOUND, session=9, request_id=None
        )
        assert await self.echoes(raw, session, 2) == [b"echo:first", b"echo:last"]
        await a.assert_unharmed()

    async def test_each_frame_of_a_batch_counts_against_the_message_rate(self, arena: MakeArena) -> None:
        a = await arena(messages_per_second=20)
        raw, session = await self.established(a)
        assert session.cipher is not None
        frame = wire.encode_data_frame(1, "chat", session.cipher.encrypt(b"x"))
        await raw.send_binary(wire.encode_batch([frame] * 30))  # one message, 30 frames
        await a.assert_closed_alone(raw, Code.RATE_LIMITED)

    @pytest.mark.parametrize(
        "batch",
        [
            bytes([wire.BATCH_KIND]),
            bytes([wire.BATCH_KIND, 0]),
            bytes([wire.BATCH_KIND]) + (100).to_bytes(2, "big") + wire.encode_data_frame(1, "chat", b"x"),
            bytes([wire.BATCH_KIND]) + _entry(b""),
            bytes([wire.BATCH_KIND]) + _entry(wire.encode_batch([wire.encode_data_frame(1, "chat", b"x")])),
            bytes([wire.BATCH_KIND]) + _entry(wire.encode_data_frame(1, "chat", b"ok")) + b"\x00",
            bytes([wire.BATCH_KIND]) + _entry(wire.encode_data_frame(1, "chat", b"")) * 1025,
        ],
        ids=[
            "empty",
            "length-cut-short",
            "entry-past-the-end",
            "empty-entry",
            "nested",
            "trailing-byte",
            "over-1024-frames",
        ],
    )
    async def test_malformed_batch(self, arena: MakeArena, batch: bytes) -> None:
        a = await arena()
        raw, _ = await self.established(a)
        await raw.send_binary(batch)
        await a.assert_closed_alone(raw, Code.PROTOCOL_ERROR)

    async def test_batch_over_max_frame_bytes(self, arena: MakeArena) -> None:
        a = await arena(max_frame_bytes=4096)
        raw, _ = await self.established(a)
        frame = wire.encode_data_frame(1, "chat", bytes(1500))
        await raw.send_binary(wire.encode_batch([frame] * 3))  # each frame fits, the batch does not
        await a.assert_closed_alone(raw, Code.MESSAGE_TOO_BIG)

    async def test_batch_flag_must_be_a_boolean(self, arena: MakeArena) -> None:
        a = await arena()
        raw = await a.raw()
        await raw.send_auth(batch="yes")
        await a.assert_closed_alone(raw, Code.PROTOCOL_ERROR)
