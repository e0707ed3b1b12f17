"""Who may come in and how fast (glueberry_gateway.server.admission, docs/gateway-protocol.md §7):
the socket limits of the in-memory admission (other admissions answer the same two calls) and the
per-socket message and byte rates."""

from __future__ import annotations

from glueberry_gateway.protocol.codes import Code
from glueberry_gateway.server.admission import LocalAdmission, Refusal, SocketRates
from glueberry_gateway.server.settings import Limits


class TestLocalAdmission:
    async def test_sockets_per_ip_and_in_all(self) -> None:
        admission = LocalAdmission(Limits(max_sockets=3, max_sockets_per_ip=2))
        assert await admission.admit("10.0.0.1") is None
        assert await admission.admit("10.0.0.1") is None
        assert await admission.admit("10.0.0.1") == Refusal(
            Code.TOO_MANY_CONNECTIONS, "too many sockets from your address"
        )
        assert await admission.admit("10.0.0.2") is None
        assert await admission.admit("10.0.0.3") == Refusal(Code.TOO_MANY_CONNECTIONS, "the gateway is full")
        assert admission.sockets == 3
        await admission.release("10.0.0.1")
        assert await admission.admit("10.0.0.3") is None  # room again
        assert admission.sockets == 3

    async def test_a_refusal_counts_nothing(self) -> None:
        admission = LocalAdmission(Limits(max_sockets=1))
        assert await admission.admit("10.0.0.1") is None
        assert await admission.admit("10.0.0.2") is not None
        await admission.release("10.0.0.1")
        assert admission.sockets == 0
        assert await admission.admit("10.0.0.2") is None

    async def test_new_sockets_per_ip_per_minute(self) -> None:
        admission = LocalAdmission(Limits(connection_rate_per_ip=3))
        for _ in range(3):
            assert await admission.admit("10.0.0.1") is None
            await admission.release("10.0.0.1")
        assert await admission.admit("10.0.0.1") == Refusal(
            Code.RATE_LIMITED, "too many connections from your address"
        )
        assert await admission.admit("10.0.0.2") is None  # another address is not charged


class TestSocketRates:
    def test_messages_per_second(self) -> None:
        rates = SocketRates(Limits(messages_per_second=10, bytes_per_second=10**6), now=0.0)
        assert rates.allow(0.0, 10, 100)
        assert not rates.allow(0.0, 1, 1)  # the messages are spent
        assert rates.allow(0.5, 5, 100)  # half a second: five more
        assert not rates.allow(0.5, 1, 1)

    def test_bytes_per_second(self) -> None:
        rates = SocketRates(Limits(messages_per_second=1000, bytes_per_second=1000), now=0.0)
        assert rates.allow(0.0, 1, 1000)
        assert not rates.allow(0.0, 1, 1)  # the bytes are spent, not the messages
        assert rates.allow(0.5, 1, 500)

    def test_a_batch_counts_each_frame(self) -> None:
        rates = SocketRates(Limits(messages_per_second=10), now=0.0)
        assert not rates.allow(0.0, 11, 11)  # one message of eleven frames
        assert rates.allow(0.0, 10, 10)  # nothing was taken by the refusal
