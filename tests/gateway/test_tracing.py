"""The gateway's OpenTelemetry spans: auth, session open, dial (with the sign request inside),
and never any payload, key or token in their attributes."""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.gateway.conftest import STREAMS, EchoBackend, MakeClient, MakeGateway

_exporter = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(_exporter))
trace.set_tracer_provider(_provider)  # once per process: the API refuses to replace it


async def test_spans_for_auth_open_dial_without_payload(
    echo_backend: EchoBackend, make_gateway: MakeGateway, make_client: MakeClient
) -> None:
    _exporter.clear()
    gw = await make_gateway(echo_backend.backend())
    client = await make_client(gw.url)
    session = await client.open("py")
    await session.handshake(STREAMS)
    secret = os.urandom(16).hex()
    await session.send("chat", secret.encode())
    assert (await session.receive(timeout=5)).data == b"echo:" + secret.encode()

    spans = {s.name: s for s in _exporter.get_finished_spans()}
    assert {"gateway.auth", "gateway.session_open", "gateway.dial", "gateway.sign_request"} <= set(spans)
    dial, opened = spans["gateway.dial"], spans["gateway.session_open"]
    assert dial.parent is not None
    assert opened.context is not None
    assert dial.parent.span_id == opened.context.span_id
    assert spans["gateway.sign_request"].parent.span_id == dial.context.span_id  # type: ignore[union-attr]
    for span in spans.values():
        for key, value in (span.attributes or {}).items():
            assert secret not in str(value), key
            assert not isinstance(value, bytes), key
        assert set(span.attributes or {}) <= {"glueberry.backend"}
