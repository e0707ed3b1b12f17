"""Gateway logs (glueberry_gateway.server.logs, docs/gateway.md "Logs"): the JSON line shape, the text
format, the audit logger's level, and that nothing secret-looking is ever written."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime

import pytest

from glueberry.exceptions import InvalidConfig
from glueberry.p2p.keys import PeerID, generate_private_key
from glueberry_gateway.server.logs import (
    AUDIT_LOGGER,
    JsonFormatter,
    TextFormatter,
    configure_logging,
    is_secret_field,
)
from glueberry_gateway.server.settings import Settings


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    audit = logging.getLogger(AUDIT_LOGGER)
    handlers, level, audit_level = list(root.handlers), root.level, audit.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
        audit.setLevel(audit_level)
        logging.captureWarnings(False)


def _record(message: str = "session opened", **extra: object) -> logging.LogRecord:
    record = logging.LogRecord(AUDIT_LOGGER, logging.INFO, __file__, 1, message, None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


class TestJsonShape:
    def test_fixed_fields_then_extras(self) -> None:
        peer = PeerID.from_private_key(generate_private_key())
        line = JsonFormatter().format(
            _record(event="session_open", peer=peer, backend="chat", session=3, ip="198.51.100.7")
        )
        assert "\n" not in line
        data = json.loads(line)
        assert list(data)[:4] == ["ts", "level", "logger", "message"]
        assert data["level"] == "INFO"
        assert data["logger"] == AUDIT_LOGGER
        assert data["message"] == "session opened"
        assert data["event"] == "session_open"
        assert data["peer"] == str(peer)
        assert data["backend"] == "chat"
        assert data["session"] == 3
        assert data["ip"] == "198.51.100.7"

    def test_the_timestamp_is_rfc3339_utc(self) -> None:
        record = _record()
        record.created = 1_700_000_000.25
        ts = json.loads(JsonFormatter().format(record))["ts"]
        assert ts == "2023-11-14T22:13:20.250Z"
        assert datetime.fromisoformat(ts).timestamp() == 1_700_000_000.25

    def test_arguments_are_interpolated(self) -> None:
        record = logging.LogRecord(
            "glueberry_gateway", logging.WARNING, __file__, 1, "%d of %s", (2, "x"), None
        )
        data = json.loads(JsonFormatter().format(record))
        assert data["message"] == "2 of x"
        assert data["level"] == "WARNING"

    def test_an_extra_never_replaces_a_fixed_field(self) -> None:
        data = json.loads(JsonFormatter().format(_record(level="forged", ts="then", logger="x")))
        assert data["level"] == "INFO"
        assert data["logger"] == AUDIT_LOGGER
        assert data["ts"] != "then"

    def test_exceptions_are_formatted(self) -> None:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            record = logging.LogRecord("glueberry_gateway", logging.ERROR, __file__, 1, "failed", None, None)
            import sys

            record.exc_info = sys.exc_info()
        data = json.loads(JsonFormatter().format(record))
        assert "RuntimeError: boom" in data["exc"]

    def test_values_json_cannot_encode_become_text(self) -> None:
        data = json.loads(JsonFormatter().format(_record(backends={"chat"}, where=object(), none=None)))
        assert data["backends"] == ["chat"]
        assert isinstance(data["where"], str)
        assert data["none"] is None


class TestSecretsAreDropped:
    """No secret or payload reaches a log line, whatever a caller passes in ``extra``."""

    @pytest.mark.parametrize(
        "name",
        [
            "token",
            "resume_token",
            "signature",
            "key",
            "public_key",
            "private_key",
            "secret",
            "payload",
            "password",
            "Authorization",
            "cookie",
            "API_KEY",
        ],
    )
    def test_secret_looking_extras_are_dropped(self, name: str) -> None:
        record = _record(**{name: "hunter2", "event": "auth"})
        for formatter in (JsonFormatter(), TextFormatter()):
            line = formatter.format(record)
            assert "hunter2" not in line
            assert name not in line
            assert "auth" in line
        assert is_secret_field(name)

    @pytest.mark.parametrize("name", ["event", "peer", "backend", "session", "code", "ip", "frames_in", "ok"])
    def test_the_audit_fields_are_kept(self, name: str) -> None:
        assert not is_secret_field(name)
        assert name in json.loads(JsonFormatter().format(_record(**{name: 1})))

    def test_bytes_are_never_written_only_their_length(self) -> None:
        line = JsonFormatter().format(_record(frame=b"\x01\x00\x01\x01asecret-ciphertext"))
        assert "ciphertext" not in line
        assert json.loads(line)["frame"] == "<22 bytes>"
        assert "ciphertext" not in TextFormatter().format(_record(frame=b"secret-ciphertext"))

    def test_uvicorn_colour_copy_is_dropped(self) -> None:
        data = json.loads(JsonFormatter().format(_record(color_message="\x1b[36mhi\x1b[0m")))
        assert "color_message" not in data


class TestTextFormat:
    def test_one_line_with_key_values(self) -> None:
        line = TextFormatter().format(_record(event="session_close", code="NORMAL", note="two words"))
        assert "INFO" in line
        assert AUDIT_LOGGER in line
        assert "session opened" in line
        assert "event=session_close" in line
        assert "code=NORMAL" in line
        assert 'note="two words"' in line
        assert "\n" not in line


class TestConfigureLogging:
    def test_json_lines_on_the_stream(self, restore_logging: None) -> None:
        stream = io.StringIO()
        configure_logging(Settings(log_format="json", log_level="INFO"), stream=stream)
        logging.getLogger("glueberry_gateway").info("hello", extra={"event": "x", "token": "t0p"})
        logging.getLogger("glueberry_gateway").debug("not shown")
        lines = stream.getvalue().splitlines()
        assert len(lines) == 1
        data = json.loads(lines[0])
        assert data["message"] == "hello"
        assert data["event"] == "x"
        assert "token" not in data

    def test_the_audit_logger_is_always_at_info(self, restore_logging: None) -> None:
        stream = io.StringIO()
        configure_logging(Settings(log_format="json", log_level="ERROR"), stream=stream)
        logging.getLogger("glueberry_gateway").info("quiet")
        logging.getLogger(AUDIT_LOGGER).info("auth", extra={"event": "auth", "ok": True})
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert [line["message"] for line in lines] == ["auth"]

    def test_configuring_twice_does_not_double_lines(self, restore_logging: None) -> None:
        first, second = io.StringIO(), io.StringIO()
        configure_logging(Settings(log_format="json"), stream=first)
        configure_logging(Settings(log_format="text"), stream=second)
        logging.getLogger("glueberry_gateway").warning("once")
        assert first.getvalue() == ""
        assert second.getvalue().count("once") == 1
        assert not second.getvalue().startswith("{")

    def test_unknown_level_or_format(self, restore_logging: None) -> None:
        with pytest.raises(InvalidConfig, match="log_level"):
            configure_logging(Settings(log_level="LOUD"), stream=io.StringIO())
        with pytest.raises(InvalidConfig, match="log_format"):
            configure_logging(Settings(log_format="xml"), stream=io.StringIO())
