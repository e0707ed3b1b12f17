"""The address book file: Go glueberry's JSON format, read and written byte for byte as Go does.

What ``pkg/addressbook`` writes with ``json.MarshalIndent(book, "", "  ")`` (the layout is shown in
:mod:`glueberry.addressbook`): Go ``time.Time`` values in RFC 3339 with nanoseconds and their UTC
offset (:class:`GoTime`), strings escaped as Go's ``encoding/json`` escapes them, two-space
indentation (:func:`encode`), and a parser that accepts what Go's ``json.Unmarshal`` accepts and
names the first problem of anything else (:func:`decode`, :class:`BadFile`).
"""

from __future__ import annotations

import base64
import binascii
import calendar
import json
import logging
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Final, TypeAlias

from .exceptions import InvalidArgument, InvalidPeerID
from .p2p.keys import PeerID
from .p2p.multiaddr import Multiaddr

__all__ = ["FILE_VERSION", "SURROGATE", "ZERO_TIME", "BadFile", "GoTime", "Record", "decode", "encode"]

_log = logging.getLogger("glueberry")

FILE_VERSION: Final = 1  # storage.go: currentVersion
SURROGATE: Final = re.compile("[\ud800-\udfff]")  # a lone surrogate: not valid Unicode, cannot be written


# --------------------------------------------------------------------------------------------------
# Go time.Time as JSON (RFC 3339 with nanoseconds)


@dataclass(frozen=True, slots=True)
class GoTime:
    """A Go ``time.Time`` as it appears in the file: wall clock, UTC offset, nanoseconds."""

    dt: datetime  # aware, offset a whole number of minutes, microseconds included
    ns: int = 0  # nanoseconds below dt.microsecond, 0-999

    @classmethod
    def now(cls) -> GoTime:
        ns = time.time_ns()
        seconds, frac = divmod(ns, 1_000_000_000)
        dt = datetime.fromtimestamp(seconds, UTC).replace(microsecond=frac // 1000)
        return cls(dt, frac % 1000)

    @classmethod
    def from_datetime(cls, value: datetime) -> GoTime:
        offset = value.utcoffset()
        if offset is None:
            raise InvalidArgument("a timestamp must be timezone-aware (use datetime.now(UTC))")
        if offset % timedelta(minutes=1):  # RFC 3339 offsets are whole minutes
            try:
                value, offset = value.astimezone(UTC), timedelta(0)
            except OverflowError as exc:
                raise InvalidArgument(f"timestamp {value} is out of range in UTC") from exc
        tz = UTC if not offset else timezone(offset)
        return cls(value.replace(tzinfo=tz))

    @classmethod
    def parse(cls, text: str) -> GoTime:
        """Go's ``Time.UnmarshalJSON``: RFC 3339, fraction of any length (first 9 digits kept).

        Raises:
            ValueError: not that form, or a field out of range.
        """
        m = _RFC3339.fullmatch(text)
        if m is None:
            raise ValueError(f"{text[:60]!r} is not an RFC 3339 time")
        year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
        if year == 0:
            raise ValueError(f"{text[:60]!r}: year 0 is not supported")
        if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(year, month)[1]:
            raise ValueError(f"{text[:60]!r}: no such date")
        if hour > 23 or minute > 59 or second > 59:
            raise ValueError(f"{text[:60]!r}: time of day out of range")
        nanos = int((m.group(7) or "")[:9].ljust(9, "0"))
        tz: timezone = UTC
        if m.group(8) != "Z":
            off_h, off_m = int(m.group(10)), int(m.group(11))
            if off_h > 23 or off_m > 59:
                raise ValueError(f"{text[:60]!r}: UTC offset out of range")
            offset = timedelta(hours=off_h, minutes=off_m) * (-1 if m.group(9) == "-" else 1)
            tz = timezone(offset) if offset else UTC
        dt = datetime(year, month, day, hour, minute, second, nanos // 1000, tzinfo=tz)
        return cls(dt, nanos % 1000)

    def format(self) -> str:
        """Go's ``Time.MarshalJSON`` (without quotes)."""
        d = self.dt
        out = f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}"
        nanos = d.microsecond * 1000 + self.ns
        if nanos:
            out += "." + f"{nanos:09d}".rstrip("0")
        minutes = int((d.utcoffset() or timedelta(0)) // timedelta(minutes=1))
        if minutes == 0:
            return out + "Z"
        sign = "-" if minutes < 0 else "+"
        hh, mm = divmod(abs(minutes), 60)
        return f"{out}{sign}{hh:02d}:{mm:02d}"

    @property
    def is_zero(self) -> bool:
        """Go's ``Time.IsZero``: the instant 0001-01-01T00:00:00Z, whatever the offset."""
        return self.ns == 0 and self.dt == ZERO_TIME.dt


ZERO_TIME: Final = GoTime(datetime(1, 1, 1, tzinfo=UTC))
_RFC3339: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(Z|([+-])([0-9]{2}):([0-9]{2}))"
)


# --------------------------------------------------------------------------------------------------
# One peer


@dataclass(frozen=True, slots=True)
class Record:
    """What the file holds for one peer. A ``str`` in ``addrs`` is one we could not parse: it is
    hidden from :class:`~glueberry.addressbook.PeerEntry` but written back, since go-multiaddr may know its protocol."""

    peer_id: PeerID
    addrs: tuple[Multiaddr | str, ...]
    public_key: bytes | None
    metadata: Mapping[str, str]
    last_seen: GoTime
    blacklisted: bool
    created_at: GoTime
    updated_at: GoTime


# --------------------------------------------------------------------------------------------------
# Writing: Go's json.MarshalIndent(addressBookData, "", "  ")

_JsonOut: TypeAlias = dict[str, "_JsonOut"] | list["_JsonOut"] | str | int | bool

# encoding/json with SetEscapeHTML(true) (the default): <, >, & and U+2028/2029 escaped; \b \f \n
# \r \t short; other control characters \u00xx (lower-case hex); everything else as UTF-8.
_GO_ESCAPES: Final[dict[int, str]] = {
    **{c: f"\\u{c:04x}" for c in (*range(0x20), 0x3C, 0x3E, 0x26, 0x2028, 0x2029)},
    **{ord('"'): '\\"', ord("\\"): "\\\\", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t"},
}


def _go_string(text: str) -> str:
    return '"' + text.translate(_GO_ESCAPES) + '"'


def _write_value(value: _JsonOut, indent: str, out: list[str]) -> None:
    if isinstance(value, bool):
        out.append("true" if value else "false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, str):
        out.append(_go_string(value))
    elif not value:
        out.append("{}" if isinstance(value, dict) else "[]")
    else:
        inner = indent + "  "
        items: Iterable[tuple[str | None, _JsonOut]] = (
            value.items() if isinstance(value, dict) else ((None, v) for v in value)
        )
        out.append("{" if isinstance(value, dict) else "[")
        for i, (k, v) in enumerate(items):
            out.append(("," if i else "") + "\n" + inner + ("" if k is None else _go_string(k) + ": "))
            _write_value(v, inner, out)
        out.append("\n" + indent + ("}" if isinstance(value, dict) else "]"))


def _record_json(record: Record) -> dict[str, _JsonOut]:
    # Field order of Go's PeerEntry.MarshalJSON: the embedded entry's fields, then "multiaddrs".
    out: dict[str, _JsonOut] = {"peer_id": str(record.peer_id)}
    if record.public_key:
        out["public_key"] = base64.b64encode(record.public_key).decode("ascii")
    if record.metadata:
        out["metadata"] = {k: record.metadata[k] for k in sorted(record.metadata)}
    out["last_seen"] = record.last_seen.format()  # omitempty does not omit a time.Time
    out["blacklisted"] = record.blacklisted
    out["created_at"] = record.created_at.format()
    out["updated_at"] = record.updated_at.format()
    out["multiaddrs"] = [str(a) for a in record.addrs]
    return out


def encode(peers: Mapping[str, Record]) -> bytes:
    """The file for ``peers`` (keyed by peer ID), byte for byte as Go's MarshalIndent writes it."""
    book: _JsonOut = {"version": FILE_VERSION, "peers": {k: _record_json(peers[k]) for k in sorted(peers)}}
    out: list[str] = []
    _write_value(book, "", out)
    return "".join(out).encode()  # no trailing newline, like MarshalIndent


# --------------------------------------------------------------------------------------------------
# Reading: what Go's json.Unmarshal accepts, and a clear error for the rest


class BadFile(Exception):
    """Why the file is not an address book."""


@dataclass(frozen=True, slots=True)
class _Obj:
    pairs: list[tuple[str, object]]


class _Int(str):
    """A JSON integer literal, kept as text (Go's int rejects 1.0 and overflow)."""


class _Float(str):
    """Any other JSON number."""


def _reject_constant(name: str) -> object:
    raise BadFile(f"{name} is not JSON")


def _text(value: str) -> str:
    # Go's decoder turns an unpaired surrogate escape into U+FFFD; Python keeps it and could not
    # write it back.
    return SURROGATE.sub("\ufffd", value)


def _fields(obj: _Obj, names: tuple[str, ...]) -> dict[str, object]:
    """Go's struct field matching: exact or case-insensitive name, the last occurrence wins."""
    found: dict[str, object] = {}
    for key, value in obj.pairs:
        folded = key.replace("\u017f", "s").replace("\u212a", "k").lower()  # Go folds ſ→s, K→k
        if folded in names:
            found[folded] = value
    return found


_BOOK_FIELDS: Final = ("version", "peers")
_ENTRY_FIELDS: Final = (
    "peer_id",
    "multiaddrs",
    "public_key",
    "metadata",
    "last_seen",
    "blacklisted",
    "created_at",
    "updated_at",
)


def decode(data: bytes) -> dict[str, Record]:
    """Parse a whole file. Raises BadFile naming the first problem found."""
    try:
        # Go replaces invalid UTF-8 inside strings with U+FFFD; elsewhere it is a syntax error anyway.
        doc = json.loads(
            data.decode("utf-8", errors="replace"),
            object_pairs_hook=_Obj,
            parse_int=_Int,
            parse_float=_Float,
            parse_constant=_reject_constant,
        )
    except json.JSONDecodeError as exc:
        raise BadFile(f"it is not valid JSON ({exc})") from None
    except RecursionError:
        raise BadFile("it is not valid JSON (nested too deeply)") from None
    if not isinstance(doc, _Obj):
        raise BadFile(f"the top level is {_kind(doc)}, not an object")
    top = _fields(doc, _BOOK_FIELDS)
    version = top.get("version")
    if type(version) is not _Int:
        raise BadFile(f'"version" is {_kind(version)}, not an integer')
    if version != str(FILE_VERSION):
        raise BadFile(f"unknown version {version[:20]} (this program reads version {FILE_VERSION})")
    peers = top.get("peers")
    if peers is None:
        return {}  # storage.go load: a missing or null peers map is an empty book
    if not isinstance(peers, _Obj):
        raise BadFile(f'"peers" is {_kind(peers)}, not an object')
    out: dict[str, Record] = {}
    for key, value in peers.pairs:
        try:
            record = _decode_entry(key, value)
        except BadFile as exc:
            raise BadFile(f"peer {key[:80]!r}: {exc}") from None
        out[str(record.peer_id)] = record
    return out


def _decode_entry(key: str, value: object) -> Record:
    try:
        peer_id = PeerID.from_string(key)
    except InvalidPeerID as exc:
        raise BadFile(f"the key is not a peer ID ({exc})") from None
    if str(peer_id) != key:
        raise BadFile("the key is not a peer ID in canonical base58 form")
    if not isinstance(value, _Obj):
        raise BadFile(f"the entry is {_kind(value)}, not an object")
    f = _fields(value, _ENTRY_FIELDS)

    pid_text = f.get("peer_id", key)  # absent: Go keeps an empty ID; the key says what it must be
    if type(pid_text) is not str:
        raise BadFile(f'"peer_id" is {_kind(pid_text)}, not a string')
    if pid_text != key:
        raise BadFile(f'"peer_id" {pid_text[:80]!r} does not match its key')

    raw_addrs = f.get("multiaddrs")
    addrs: list[Multiaddr | str] = []
    if raw_addrs is not None:
        if not isinstance(raw_addrs, list):
            raise BadFile(f'"multiaddrs" is {_kind(raw_addrs)}, not an array')
        for item in raw_addrs:
            if item is None:
                continue  # Go reads null as "", which is not a multiaddr, and skips it
            if type(item) is not str:
                raise BadFile(f'"multiaddrs" holds {_kind(item)}, not a string')
            addrs.append(_parse_addr(_text(item), key))

    return Record(
        peer_id=peer_id,
        addrs=tuple(addrs),
        public_key=_decode_public_key(f.get("public_key")),
        metadata=_decode_metadata(f.get("metadata")),
        last_seen=_decode_time(f, "last_seen"),
        blacklisted=_decode_bool(f.get("blacklisted")),
        created_at=_decode_time(f, "created_at"),
        updated_at=_decode_time(f, "updated_at"),
    )


def _parse_addr(text: str, key: str) -> Multiaddr | str:
    try:
        return Multiaddr.parse(text)
    except ValueError as exc:  # types.go UnmarshalJSON: skip invalid multiaddrs rather than fail
        _log.warning("address book: peer %s: ignoring multiaddr %r: %s", key, text[:200], exc)
        return text


def _decode_public_key(value: object) -> bytes | None:
    if value is None:
        return None
    if type(value) is not str:
        raise BadFile(f'"public_key" is {_kind(value)}, not a base64 string')
    try:
        # Go's []byte: standard alphabet, padded; the decoder skips \r and \n.
        raw = binascii.a2b_base64(value.replace("\r", "").replace("\n", ""), strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise BadFile(f'"public_key" is not base64 ({exc})') from None
    return raw or None


def _decode_metadata(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, _Obj):
        raise BadFile(f'"metadata" is {_kind(value)}, not an object')
    out: dict[str, str] = {}
    for k, v in value.pairs:
        if v is None:
            out[_text(k)] = ""  # Go: null into a string map value stores ""
        elif type(v) is str:
            out[_text(k)] = _text(v)
        else:
            raise BadFile(f'"metadata" value of {k[:40]!r} is {_kind(v)}, not a string')
    return out


def _decode_time(fields: dict[str, object], name: str) -> GoTime:
    value = fields.get(name)
    if value is None:
        return ZERO_TIME  # absent or null: Go's zero time
    if type(value) is not str:
        raise BadFile(f'"{name}" is {_kind(value)}, not an RFC 3339 string')
    try:
        return GoTime.parse(value)
    except ValueError as exc:
        raise BadFile(f'"{name}": {exc}') from None


def _decode_bool(value: object) -> bool:
    if value is None:
        return False
    if type(value) is not bool:
        raise BadFile(f'"blacklisted" is {_kind(value)}, not true or false')
    return value


def _kind(value: object) -> str:
    if value is None:
        return "null or missing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, _Int | _Float):
        return f"the number {value[:20]}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
