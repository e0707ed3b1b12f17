"""Logging for the gateway process: one JSON object per line (default) or plain text.

``configure_logging(settings)`` installs one handler on the root logger, so the gateway's own
loggers (``glueberry_gateway``, ``glueberry_gateway.audit``) and uvicorn's (``uvicorn.error``) all
come out in the same format on stderr.

A JSON line has ``ts`` (RFC 3339, UTC, milliseconds), ``level``, ``logger`` and ``message``, then
the record's ``extra`` fields: the audit lines carry ``event`` (``auth``, ``session_open``,
``session_close``), ``ok``, ``ip``, ``peer``, ``backend``, ``session``, ``code``, ``frames_in`` and
``frames_out``. An exception adds ``exc`` (the formatted traceback).

Nothing here may leak a secret or application data: any extra whose name looks secret (see
:data:`SECRET_FIELD`) is dropped, and bytes values are replaced by their length. The gateway never
passes payload to a logger in the first place; this is the second line of defence.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Final, TextIO

import orjson

from glueberry.exceptions import InvalidConfig

from .settings import LOG_FORMATS, LOG_LEVELS, Settings

__all__ = [
    "AUDIT_LOGGER",
    "SECRET_FIELD",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "is_secret_field",
    "record_fields",
]

AUDIT_LOGGER: Final = "glueberry_gateway.audit"

#: Extra fields whose name matches this are never written (case-insensitive, anywhere in the name).
SECRET_FIELD: Final = re.compile(
    r"token|signature|key|secret|payload|password|passwd|credential|authorization|cookie",
    re.IGNORECASE,
)

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",  # Python 3.12+
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}
# Dataclasses (PeerID, Multiaddr) go through _json_default, i.e. their string form, not their fields.
_JSON_OPTIONS: Final = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS


def is_secret_field(name: str) -> bool:
    """True if an extra field with this name must not be logged."""
    return SECRET_FIELD.search(name) is not None


def _safe_value(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"  # raw bytes are key material or payload: never their content
    return value


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra`` fields of ``record`` that may be logged, in the order they were given."""
    return {
        name: _safe_value(value)
        for name, value in vars(record).items()
        if name not in _RECORD_ATTRS and not name.startswith("_") and not is_secret_field(name)
    }


def _timestamp(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)  # PeerID, Multiaddr, Path, enums: their string form


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, then the safe extras."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in record_fields(record).items():
            line.setdefault(name, value)  # an extra never overwrites the four fixed fields
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=_json_default, option=_JSON_OPTIONS).decode()


def _text_value(value: Any) -> str:
    if value is None:
        return "-"
    text = value if isinstance(value, str) else str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return orjson.dumps(text).decode()
    return text


class TextFormatter(logging.Formatter):
    """``<ts> <LEVEL> <logger>: <message> key=value …`` for reading in a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [f"{_timestamp(record.created)} {record.levelname:<7} {record.name}: {record.getMessage()}"]
        parts.extend(f"{name}={_text_value(value)}" for name, value in record_fields(record).items())
        text = " ".join(parts)
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return text


class _GatewayHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler we install, so configuring twice replaces it instead of doubling lines."""


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> None:
    """Send every log record to ``stream`` (default stderr) in ``settings.log_format``.

    The root level is ``settings.log_level``; the audit logger (``glueberry_gateway.audit``) is
    always at INFO, so audit lines are written even with ``log_level = "WARNING"``.

    Raises:
        InvalidConfig: ``log_level`` or ``log_format`` is not one we know.
    """
    level = settings.log_level.upper()
    if level not in LOG_LEVELS:
        raise InvalidConfig(f"log_level: {settings.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    if settings.log_format not in LOG_FORMATS:
        raise InvalidConfig(f"log_format: {settings.log_format!r} is not json or text")
    handler = _GatewayHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _GatewayHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger(AUDIT_LOGGER).setLevel(logging.INFO)
    logging.captureWarnings(True)
