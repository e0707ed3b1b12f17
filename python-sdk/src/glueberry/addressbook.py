"""The address book: known peers, persisted to a JSON file in Go glueberry's format.

The file is what ``pkg/addressbook`` (``storage.go``, ``types.go``) writes with
``json.MarshalIndent(book, "", "  ")``, so a Go node and a Python node can share one::

    {
      "version": 1,
      "peers": {
        "<peer id>": {
          "peer_id": "<peer id>",
          "public_key": "<base64, omitted when empty>",
          "metadata": {"<key>": "<value>"},        (omitted when empty)
          "last_seen": "0001-01-01T00:00:00Z",      (Go's zero time: never seen)
          "blacklisted": false,
          "created_at": "2024-05-06T07:08:09.123456789Z",
          "updated_at": "2024-05-06T07:08:09.123456789+02:00",
          "multiaddrs": ["/ip4/192.0.2.1/tcp/4001"]
        }
      }
    }

``multiaddrs`` comes last because Go's ``PeerEntry.MarshalJSON`` adds it from an outer struct
around the embedded entry. Map keys are sorted, strings escaped as Go escapes them (``<``, ``>``,
``&``, U+2028 and U+2029 too) and times keep their UTC offset and nanoseconds, so a file written by
Go is written back byte for byte.

Unlike Go, which renames an unparsable file to ``.bak`` and starts empty, a file we cannot read
raises :class:`AddressBookCorrupt` and is left exactly as it was.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import contextlib
import json
import logging
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Final, TypeAlias

from .exceptions import (
    AddressBookCorrupt,
    AddressBookUnreadable,
    AddressBookWriteFailed,
    InvalidArgument,
    InvalidConfig,
    InvalidPeerID,
    LimitExceeded,
    MetadataTooLarge,
    PeerBlacklisted,
    PeerNotFound,
)
from .p2p.keys import PeerID
from .p2p.multiaddr import Multiaddr

if sys.platform == "win32":  # pragma: no cover - Go locks with LockFileEx there; we only rely on the rename

    def _flock(fd: int) -> None:
        pass

else:
    import fcntl

    def _flock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd is closed


__all__ = [
    "DEFAULT_MAX_FILE_BYTES",
    "DEFAULT_MAX_METADATA_BYTES",
    "DEFAULT_MAX_PEERS",
    "FILE_VERSION",
    "MAX_MULTIADDRS_PER_PEER",
    "MAX_PUBLIC_KEY_BYTES",
    "AddressBook",
    "AddressBookCorrupt",
    "AddressBookUnreadable",
    "AddressBookWriteFailed",
    "MetadataTooLarge",
    "PeerEntry",
]

_log = logging.getLogger("glueberry")

FILE_VERSION: Final = 1  # storage.go: currentVersion
DEFAULT_MAX_PEERS: Final = 10_000
DEFAULT_MAX_METADATA_BYTES: Final = 4096  # config.go: DefaultMaxMetadataSize
DEFAULT_MAX_FILE_BYTES: Final = 64 * 1024 * 1024
MAX_MULTIADDRS_PER_PEER: Final = 64
MAX_PUBLIC_KEY_BYTES: Final = 1024
_LOCK_SUFFIX: Final = ".lock"  # storage.go: lockFileSuffix, shared with a Go node using the same file


# --------------------------------------------------------------------------------------------------
# Go time.Time as JSON (RFC 3339 with nanoseconds)


@dataclass(frozen=True, slots=True)
class _Time:
    """A Go ``time.Time`` as it appears in the file: wall clock, UTC offset, nanoseconds."""

    dt: datetime  # aware, offset a whole number of minutes, microseconds included
    ns: int = 0  # nanoseconds below dt.microsecond, 0-999

    @classmethod
    def now(cls) -> _Time:
        ns = time.time_ns()
        seconds, frac = divmod(ns, 1_000_000_000)
        dt = datetime.fromtimestamp(seconds, UTC).replace(microsecond=frac // 1000)
        return cls(dt, frac % 1000)

    @classmethod
    def from_datetime(cls, value: datetime) -> _Time:
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
    def parse(cls, text: str) -> _Time:
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
        return self.ns == 0 and self.dt == _ZERO.dt


_ZERO: Final = _Time(datetime(1, 1, 1, tzinfo=UTC))
_RFC3339: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(Z|([+-])([0-9]{2}):([0-9]{2}))"
)


# --------------------------------------------------------------------------------------------------
# Entries


@dataclass(frozen=True, slots=True)
class PeerEntry:
    """A peer in the address book (a snapshot: later changes to the book do not show here).

    ``last_seen`` is None when the peer was never seen (Go's zero time in the file). Times are
    timezone-aware, to the microsecond; the file keeps Go's nanoseconds.
    """

    peer_id: PeerID
    multiaddrs: tuple[Multiaddr, ...]
    public_key: bytes | None
    metadata: Mapping[str, str]
    last_seen: datetime | None
    blacklisted: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class _Record:
    """What the file holds for one peer. A ``str`` in ``addrs`` is one we could not parse: it is
    hidden from :class:`PeerEntry` but written back, since go-multiaddr may know its protocol."""

    peer_id: PeerID
    addrs: tuple[Multiaddr | str, ...]
    public_key: bytes | None
    metadata: Mapping[str, str]
    last_seen: _Time
    blacklisted: bool
    created_at: _Time
    updated_at: _Time

    def entry(self) -> PeerEntry:
        return PeerEntry(
            peer_id=self.peer_id,
            multiaddrs=tuple(a for a in self.addrs if isinstance(a, Multiaddr)),
            public_key=self.public_key,
            metadata=MappingProxyType(dict(self.metadata)),
            last_seen=None if self.last_seen.is_zero else self.last_seen.dt,
            blacklisted=self.blacklisted,
            created_at=self.created_at.dt,
            updated_at=self.updated_at.dt,
        )


_Change: TypeAlias = Callable[[_Record, _Time], _Record]


class AddressBook:
    """Known peers, saved to ``path`` after every change (atomically: temp file, fsync, rename).

    Go ``pkg/addressbook.Book`` semantics; reads never touch the disk. Thread-safe.

    Raises (constructor):
        AddressBookCorrupt: the file is not a valid version-1 address book (left untouched).
        AddressBookUnreadable: the file exists but cannot be read.
        InvalidConfig: a limit is not a positive integer.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_peers: int = DEFAULT_MAX_PEERS,
        max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    ) -> None:
        path = os.fspath(path)
        if not isinstance(path, str) or not path:
            raise InvalidConfig("address book path must be a non-empty str or os.PathLike[str]")
        for name, value in (
            ("max_peers", max_peers),
            ("max_metadata_bytes", max_metadata_bytes),
            ("max_file_bytes", max_file_bytes),
        ):
            if type(value) is not int or value < 1:
                raise InvalidConfig(f"{name} must be a positive int, got {value!r}")
        self._path = path
        self._max_peers = max_peers
        self._max_metadata_bytes = max_metadata_bytes
        self._max_file_bytes = max_file_bytes
        self._mutex = threading.Lock()
        self._peers: dict[str, _Record] = self._load()
        if len(self._peers) > max_peers:
            _log.warning(
                "address book %s holds %d peers, over max_peers=%d: no peer can be added",
                path,
                len(self._peers),
                max_peers,
            )

    @property
    def path(self) -> str:
        return self._path

    # -- queries (memory only) --------------------------------------------------------------------

    def get_peer(self, peer_id: PeerID | str) -> PeerEntry:
        """Raises: PeerNotFound."""
        return self._existing(_key(peer_id)).entry()

    def list_peers(self) -> list[PeerEntry]:
        """The peers that are not blacklisted, by peer ID (Go ``ListPeers``)."""
        return [r.entry() for _, r in sorted(self._peers.items()) if not r.blacklisted]

    def all_peers(self) -> list[PeerEntry]:
        """Every peer, blacklisted ones included, by peer ID (Go ``ListAllPeers``)."""
        return [r.entry() for _, r in sorted(self._peers.items())]

    def is_blacklisted(self, peer_id: PeerID | str) -> bool:
        """False for a peer not in the book (Go ``IsBlacklisted``)."""
        record = self._peers.get(_key(peer_id))
        return record is not None and record.blacklisted

    def __contains__(self, peer_id: object) -> bool:
        if not isinstance(peer_id, PeerID | str):
            return False
        try:
            return _key(peer_id) in self._peers
        except InvalidPeerID:
            return False

    def __len__(self) -> int:
        return len(self._peers)

    def __iter__(self) -> Iterator[PeerEntry]:
        return iter(self.all_peers())

    # -- changes (each one saved before it takes effect) ---------------------------------------------

    def add_peer(
        self,
        peer_id: PeerID | str,
        multiaddrs: Iterable[Multiaddr | str],
        metadata: Mapping[str, str] | None = None,
    ) -> PeerEntry:
        """Add a peer, or replace the addresses of one already known (Go ``AddPeer``).

        For a known peer, ``metadata=None`` keeps its metadata and a mapping replaces it.

        Raises:
            InvalidPeerID, InvalidMultiaddr, InvalidArgument, MetadataTooLarge: bad input.
            PeerBlacklisted: the peer is known and blacklisted.
            LimitExceeded: the book already holds ``max_peers`` peers.
            AddressBookWriteFailed: the file could not be saved (nothing changed).
        """
        pid = _peer_id(peer_id)
        key = str(pid)
        addrs = _check_multiaddrs(multiaddrs)
        meta = None if metadata is None else self._check_metadata(metadata)
        with self._mutex:
            now = _Time.now()
            old = self._peers.get(key)
            if old is None:
                if len(self._peers) >= self._max_peers:
                    raise LimitExceeded(
                        f"the address book is full ({self._max_peers} peers, max_peers)",
                        limit="address_book_peers",
                        peer_id=key,
                    )
                new = _Record(pid, addrs, None, meta or {}, _ZERO, False, now, now)
            elif old.blacklisted:
                raise PeerBlacklisted("cannot update a blacklisted peer", peer_id=key)
            else:
                new = replace(
                    old, addrs=addrs, metadata=old.metadata if meta is None else meta, updated_at=now
                )
            self._commit(key, new)
            return new.entry()

    def remove_peer(self, peer_id: PeerID | str) -> None:
        """Raises: PeerNotFound, AddressBookWriteFailed."""
        key = _key(peer_id)
        with self._mutex:
            self._existing(key)
            self._commit(key, None)

    def blacklist_peer(self, peer_id: PeerID | str) -> None:
        """Mark a known peer blacklisted (Go ``BlacklistPeer``: unknown peers are an error).

        Raises: PeerNotFound, AddressBookWriteFailed.
        """
        self._update(peer_id, lambda r, now: replace(r, blacklisted=True, updated_at=now))

    def unblacklist_peer(self, peer_id: PeerID | str) -> None:
        """Raises: PeerNotFound, AddressBookWriteFailed."""
        self._update(peer_id, lambda r, now: replace(r, blacklisted=False, updated_at=now))

    def update_public_key(self, peer_id: PeerID | str, public_key: bytes) -> None:
        """Store the key learnt in the handshake; empty clears it (Go omits an empty key).

        Raises: PeerNotFound, InvalidArgument, AddressBookWriteFailed.
        """
        if not isinstance(public_key, bytes | bytearray | memoryview):
            raise InvalidArgument(f"public_key must be bytes, got {type(public_key).__name__}")
        key_bytes = bytes(public_key)
        if len(key_bytes) > MAX_PUBLIC_KEY_BYTES:
            raise InvalidArgument(f"public_key is {len(key_bytes)} bytes, over {MAX_PUBLIC_KEY_BYTES}")
        self._update(peer_id, lambda r, now: replace(r, public_key=key_bytes or None, updated_at=now))

    def update_last_seen(self, peer_id: PeerID | str, when: datetime | None = None) -> None:
        """Set when the peer was last connected (default: now, to the nanosecond).

        Go batches this change and flushes it every 5 s; we save it at once, as the node calls this
        once per connection.

        Raises: PeerNotFound, InvalidArgument (a naive datetime), AddressBookWriteFailed.
        """
        if when is not None and not isinstance(when, datetime):
            raise InvalidArgument(f"when must be a datetime, got {type(when).__name__}")
        seen = None if when is None else _Time.from_datetime(when)
        self._update(
            peer_id, lambda r, now: replace(r, last_seen=now if seen is None else seen, updated_at=now)
        )

    def update_metadata(self, peer_id: PeerID | str, metadata: Mapping[str, str]) -> None:
        """Merge into the peer's metadata; an empty value deletes its key (Go ``UpdateMetadata``).

        Raises: PeerNotFound, InvalidArgument, MetadataTooLarge, AddressBookWriteFailed.
        """
        changes = _check_str_map(metadata)

        def merge(record: _Record, now: _Time) -> _Record:
            merged = dict(record.metadata)
            for k, v in changes.items():
                if v:
                    merged[k] = v
                else:
                    merged.pop(k, None)
            return replace(record, metadata=self._check_metadata(merged), updated_at=now)

        self._update(peer_id, merge)

    # -- internals ---------------------------------------------------------------------------------

    def _existing(self, key: str) -> _Record:
        record = self._peers.get(key)
        if record is None:
            raise PeerNotFound("not in the address book", peer_id=key)
        return record

    def _update(self, peer_id: PeerID | str, change: _Change) -> None:
        key = _key(peer_id)
        with self._mutex:
            self._commit(key, change(self._existing(key), _Time.now()))

    def _commit(self, key: str, record: _Record | None) -> None:
        """Save the book with ``key`` set to ``record`` (None: removed), then adopt it."""
        peers = dict(self._peers)
        if record is None:
            del peers[key]
        else:
            peers[key] = record
        self._save(_encode(peers))
        self._peers = peers

    def _check_metadata(self, metadata: Mapping[str, str]) -> dict[str, str]:
        checked = _check_str_map(metadata)
        # validation.go ValidateMetadataSize: sum of len(key) + len(value), Go strings = UTF-8 bytes
        size = sum(len(k.encode()) + len(v.encode()) for k, v in checked.items())
        if size > self._max_metadata_bytes:
            raise MetadataTooLarge(f"metadata is {size} bytes, over the limit of {self._max_metadata_bytes}")
        return checked

    @contextlib.contextmanager
    def _file_lock(self, *, required: bool) -> Iterator[None]:
        """Go's inter-process lock (storage_unix.go: flock on ``<path>.lock``)."""
        try:
            fd = os.open(self._path + _LOCK_SUFFIX, os.O_CREAT | os.O_RDWR, 0o600)
        except OSError:
            if required:
                raise
            yield  # reading from a read-only directory: the rename in save keeps reads whole anyway
            return
        try:
            _flock(fd)
            yield
        finally:
            os.close(fd)

    def _load(self) -> dict[str, _Record]:
        path = self._path
        try:
            with self._file_lock(required=False), open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                data = f.read(self._max_file_bytes + 1) if size <= self._max_file_bytes else b""
        except FileNotFoundError:
            return {}  # storage.go load: a missing file is an empty book
        except OSError as exc:
            raise AddressBookUnreadable(path, exc.strerror or str(exc)) from exc
        if size > self._max_file_bytes or len(data) > self._max_file_bytes:
            raise AddressBookCorrupt(path, f"it is larger than {self._max_file_bytes} bytes")
        if not data:
            return {}  # storage.go load: so is an empty file
        try:
            return _decode(data)
        except _Bad as exc:
            raise AddressBookCorrupt(path, str(exc)) from None

    def _save(self, data: bytes) -> None:
        """storage.go save, made durable: temp file in the same directory, fsync, rename, fsync dir."""
        path = self._path
        directory = os.path.dirname(path) or "."
        try:
            os.makedirs(directory, mode=0o755, exist_ok=True)
            with self._file_lock(required=True):
                fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
                try:
                    with os.fdopen(fd, "wb") as f:  # mkstemp: mode 0600, like Go's OpenFile(…, 0600)
                        f.write(data)
                        f.flush()
                        os.fsync(f.fileno())
                    os.replace(tmp, path)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                    raise
            _fsync_directory(directory)
        except OSError as exc:
            raise AddressBookWriteFailed(path, exc.strerror or str(exc)) from exc


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms where a directory cannot be opened (Windows)
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _peer_id(peer_id: PeerID | str) -> PeerID:
    if isinstance(peer_id, PeerID):
        return peer_id
    if not isinstance(peer_id, str):
        raise InvalidPeerID(f"peer_id must be a PeerID or str, got {type(peer_id).__name__}")
    return PeerID.from_string(peer_id)


def _key(peer_id: PeerID | str) -> str:
    return str(_peer_id(peer_id))


def _check_multiaddrs(multiaddrs: Iterable[Multiaddr | str]) -> tuple[Multiaddr | str, ...]:
    if isinstance(multiaddrs, str | bytes) or not isinstance(multiaddrs, Iterable):
        raise InvalidArgument("multiaddrs must be a list of Multiaddr or str, not a single value")
    out: list[Multiaddr | str] = []
    for addr in multiaddrs:
        if len(out) == MAX_MULTIADDRS_PER_PEER:
            raise InvalidArgument(f"a peer can have at most {MAX_MULTIADDRS_PER_PEER} multiaddrs")
        if isinstance(addr, str):
            out.append(Multiaddr.parse(addr))
        elif isinstance(addr, Multiaddr):
            out.append(addr)
        else:
            raise InvalidArgument(f"a multiaddr must be a Multiaddr or str, got {type(addr).__name__}")
    return tuple(out)


def _check_str_map(mapping: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(mapping, Mapping):
        raise InvalidArgument(f"metadata must be a mapping of str to str, got {type(mapping).__name__}")
    out: dict[str, str] = {}
    for k, v in mapping.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise InvalidArgument(f"metadata keys and values must be str, got {k!r}: {v!r}"[:200])
        if _SURROGATE.search(k) or _SURROGATE.search(v):
            raise InvalidArgument(f"metadata is not valid Unicode (lone surrogate) in {k!r}"[:200])
        out[k] = v
    return out


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


def _record_json(record: _Record) -> dict[str, _JsonOut]:
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


def _encode(peers: Mapping[str, _Record]) -> bytes:
    book: _JsonOut = {"version": FILE_VERSION, "peers": {k: _record_json(peers[k]) for k in sorted(peers)}}
    out: list[str] = []
    _write_value(book, "", out)
    return "".join(out).encode()  # no trailing newline, like MarshalIndent


# --------------------------------------------------------------------------------------------------
# Reading: what Go's json.Unmarshal accepts, and a clear error for the rest


class _Bad(Exception):
    """Why the file is not an address book."""


@dataclass(frozen=True, slots=True)
class _Obj:
    pairs: list[tuple[str, object]]


class _Int(str):
    """A JSON integer literal, kept as text (Go's int rejects 1.0 and overflow)."""


class _Float(str):
    """Any other JSON number."""


def _reject_constant(name: str) -> object:
    raise _Bad(f"{name} is not JSON")


_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _text(value: str) -> str:
    # Go's decoder turns an unpaired surrogate escape into U+FFFD; Python keeps it and could not
    # write it back.
    return _SURROGATE.sub("\ufffd", value)


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


def _decode(data: bytes) -> dict[str, _Record]:
    """Parse a whole file. Raises _Bad naming the first problem found."""
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
        raise _Bad(f"it is not valid JSON ({exc})") from None
    except RecursionError:
        raise _Bad("it is not valid JSON (nested too deeply)") from None
    if not isinstance(doc, _Obj):
        raise _Bad(f"the top level is {_kind(doc)}, not an object")
    top = _fields(doc, _BOOK_FIELDS)
    version = top.get("version")
    if type(version) is not _Int:
        raise _Bad(f'"version" is {_kind(version)}, not an integer')
    if version != str(FILE_VERSION):
        raise _Bad(f"unknown version {version[:20]} (this program reads version {FILE_VERSION})")
    peers = top.get("peers")
    if peers is None:
        return {}  # storage.go load: a missing or null peers map is an empty book
    if not isinstance(peers, _Obj):
        raise _Bad(f'"peers" is {_kind(peers)}, not an object')
    out: dict[str, _Record] = {}
    for key, value in peers.pairs:
        try:
            record = _decode_entry(key, value)
        except _Bad as exc:
            raise _Bad(f"peer {key[:80]!r}: {exc}") from None
        out[str(record.peer_id)] = record
    return out


def _decode_entry(key: str, value: object) -> _Record:
    try:
        peer_id = PeerID.from_string(key)
    except InvalidPeerID as exc:
        raise _Bad(f"the key is not a peer ID ({exc})") from None
    if str(peer_id) != key:
        raise _Bad("the key is not a peer ID in canonical base58 form")
    if not isinstance(value, _Obj):
        raise _Bad(f"the entry is {_kind(value)}, not an object")
    f = _fields(value, _ENTRY_FIELDS)

    pid_text = f.get("peer_id", key)  # absent: Go keeps an empty ID; the key says what it must be
    if type(pid_text) is not str:
        raise _Bad(f'"peer_id" is {_kind(pid_text)}, not a string')
    if pid_text != key:
        raise _Bad(f'"peer_id" {pid_text[:80]!r} does not match its key')

    raw_addrs = f.get("multiaddrs")
    addrs: list[Multiaddr | str] = []
    if raw_addrs is not None:
        if not isinstance(raw_addrs, list):
            raise _Bad(f'"multiaddrs" is {_kind(raw_addrs)}, not an array')
        for item in raw_addrs:
            if item is None:
                continue  # Go reads null as "", which is not a multiaddr, and skips it
            if type(item) is not str:
                raise _Bad(f'"multiaddrs" holds {_kind(item)}, not a string')
            addrs.append(_parse_addr(_text(item), key))

    return _Record(
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
        raise _Bad(f'"public_key" is {_kind(value)}, not a base64 string')
    try:
        # Go's []byte: standard alphabet, padded; the decoder skips \r and \n.
        raw = binascii.a2b_base64(value.replace("\r", "").replace("\n", ""), strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise _Bad(f'"public_key" is not base64 ({exc})') from None
    return raw or None


def _decode_metadata(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, _Obj):
        raise _Bad(f'"metadata" is {_kind(value)}, not an object')
    out: dict[str, str] = {}
    for k, v in value.pairs:
        if v is None:
            out[_text(k)] = ""  # Go: null into a string map value stores ""
        elif type(v) is str:
            out[_text(k)] = _text(v)
        else:
            raise _Bad(f'"metadata" value of {k[:40]!r} is {_kind(v)}, not a string')
    return out


def _decode_time(fields: dict[str, object], name: str) -> _Time:
    value = fields.get(name)
    if value is None:
        return _ZERO  # absent or null: Go's zero time
    if type(value) is not str:
        raise _Bad(f'"{name}" is {_kind(value)}, not an RFC 3339 string')
    try:
        return _Time.parse(value)
    except ValueError as exc:
        raise _Bad(f'"{name}": {exc}') from None


def _decode_bool(value: object) -> bool:
    if value is None:
        return False
    if type(value) is not bool:
        raise _Bad(f'"blacklisted" is {_kind(value)}, not true or false')
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
