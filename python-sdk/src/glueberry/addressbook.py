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
Go is written back byte for byte. That reading and writing is :mod:`glueberry._addressbook_json`.

Unlike Go, which renames an unparsable file to ``.bak`` and starts empty, a file we cannot read
raises :class:`AddressBookCorrupt` and is left exactly as it was.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from types import MappingProxyType
from typing import Final, TypeAlias

from ._addressbook_json import FILE_VERSION, SURROGATE, ZERO_TIME, BadFile, GoTime, Record, decode, encode
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

DEFAULT_MAX_PEERS: Final = 10_000
DEFAULT_MAX_METADATA_BYTES: Final = 4096  # config.go: DefaultMaxMetadataSize
DEFAULT_MAX_FILE_BYTES: Final = 64 * 1024 * 1024
MAX_MULTIADDRS_PER_PEER: Final = 64
MAX_PUBLIC_KEY_BYTES: Final = 1024
_LOCK_SUFFIX: Final = ".lock"  # storage.go: lockFileSuffix, shared with a Go node using the same file


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


def _entry(record: Record) -> PeerEntry:
    """The snapshot of a record that callers see."""
    return PeerEntry(
        peer_id=record.peer_id,
        multiaddrs=tuple(a for a in record.addrs if isinstance(a, Multiaddr)),
        public_key=record.public_key,
        metadata=MappingProxyType(dict(record.metadata)),
        last_seen=None if record.last_seen.is_zero else record.last_seen.dt,
        blacklisted=record.blacklisted,
        created_at=record.created_at.dt,
        updated_at=record.updated_at.dt,
    )


_Change: TypeAlias = Callable[[Record, GoTime], Record]


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
        self._peers: dict[str, Record] = self._load()
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
        return _entry(self._existing(_key(peer_id)))

    def list_peers(self) -> list[PeerEntry]:
        """The peers that are not blacklisted, by peer ID (Go ``ListPeers``)."""
        return [_entry(r) for _, r in sorted(self._peers.items()) if not r.blacklisted]

    def all_peers(self) -> list[PeerEntry]:
        """Every peer, blacklisted ones included, by peer ID (Go ``ListAllPeers``)."""
        return [_entry(r) for _, r in sorted(self._peers.items())]

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
            now = GoTime.now()
            old = self._peers.get(key)
            if old is None:
                if len(self._peers) >= self._max_peers:
                    raise LimitExceeded(
                        f"the address book is full ({self._max_peers} peers, max_peers)",
                        limit="address_book_peers",
                        peer_id=key,
                    )
                new = Record(pid, addrs, None, meta or {}, ZERO_TIME, False, now, now)
            elif old.blacklisted:
                raise PeerBlacklisted("cannot update a blacklisted peer", peer_id=key)
            else:
                new = replace(
                    old, addrs=addrs, metadata=old.metadata if meta is None else meta, updated_at=now
                )
            self._commit(key, new)
            return _entry(new)

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
        seen = None if when is None else GoTime.from_datetime(when)
        self._update(
            peer_id, lambda r, now: replace(r, last_seen=now if seen is None else seen, updated_at=now)
        )

    def update_metadata(self, peer_id: PeerID | str, metadata: Mapping[str, str]) -> None:
        """Merge into the peer's metadata; an empty value deletes its key (Go ``UpdateMetadata``).

        Raises: PeerNotFound, InvalidArgument, MetadataTooLarge, AddressBookWriteFailed.
        """
        changes = _check_str_map(metadata)

        def merge(record: Record, now: GoTime) -> Record:
            merged = dict(record.metadata)
            for k, v in changes.items():
                if v:
                    merged[k] = v
                else:
                    merged.pop(k, None)
            return replace(record, metadata=self._check_metadata(merged), updated_at=now)

        self._update(peer_id, merge)

    # -- internals ---------------------------------------------------------------------------------

    def _existing(self, key: str) -> Record:
        record = self._peers.get(key)
        if record is None:
            raise PeerNotFound("not in the address book", peer_id=key)
        return record

    def _update(self, peer_id: PeerID | str, change: _Change) -> None:
        key = _key(peer_id)
        with self._mutex:
            self._commit(key, change(self._existing(key), GoTime.now()))

    def _commit(self, key: str, record: Record | None) -> None:
        """Save the book with ``key`` set to ``record`` (None: removed), then adopt it."""
        peers = dict(self._peers)
        if record is None:
            del peers[key]
        else:
            peers[key] = record
        self._save(encode(peers))
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

    def _load(self) -> dict[str, Record]:
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
            return decode(data)
        except BadFile as exc:
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
        if SURROGATE.search(k) or SURROGATE.search(v):
            raise InvalidArgument(f"metadata is not valid Unicode (lone surrogate) in {k!r}"[:200])
        out[k] = v
    return out
