"""The address book (Go glueberry ``pkg/addressbook``): its API and its JSON file.

Fixtures are written by hand from Go's code: ``types.go`` (PeerEntry, its MarshalJSON that adds
``multiaddrs`` after the embedded fields), ``storage.go`` (MarshalIndent with two spaces, no final
newline) and encoding/json (sorted map keys, HTML-safe escaping, time.Time as RFC 3339 with
nanoseconds, ``omitempty`` that leaves a zero time.Time in place).
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glueberry.addressbook import (
    MAX_MULTIADDRS_PER_PEER,
    AddressBook,
    AddressBookCorrupt,
    AddressBookUnreadable,
    AddressBookWriteFailed,
    MetadataTooLarge,
    PeerEntry,
)
from glueberry.exceptions import (
    InvalidArgument,
    InvalidConfig,
    InvalidMultiaddr,
    InvalidPeerID,
    LimitExceeded,
    PeerBlacklisted,
    PeerNotFound,
)
from glueberry.p2p.keys import PeerID
from glueberry.p2p.multiaddr import Multiaddr

A = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
B = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
C = "12D3KooW9tHTtS3inCZiYykw4u5G4frbjVFqhkmJX12gSNCVeH3e"
KEY32 = bytes(range(32))
KEY32_B64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
PLUS2 = timezone(timedelta(hours=2))
MINUS530 = timezone(-timedelta(hours=5, minutes=30))

# What a Go node writes (MarshalIndent of addressBookData), byte for byte.
GO_FILE = f"""{{
  "version": 1,
  "peers": {{
    "{A}": {{
      "peer_id": "{A}",
      "public_key": "{KEY32_B64}",
      "metadata": {{
        "name": "\\u003cnode\\u003e \\u0026 co",
        "role": "server"
      }},
      "last_seen": "2024-03-10T14:30:15.123456789+02:00",
      "blacklisted": false,
      "created_at": "2024-01-02T03:04:05.5Z",
      "updated_at": "2024-03-10T12:30:15.123456789Z",
      "multiaddrs": [
        "/ip4/192.0.2.1/tcp/4001",
        "/ip6/2001:db8::1/tcp/4001"
      ]
    }},
    "{B}": {{
      "peer_id": "{B}",
      "last_seen": "0001-01-01T00:00:00Z",
      "blacklisted": true,
      "created_at": "2023-12-31T23:59:59Z",
      "updated_at": "2024-01-01T00:00:00.000000001-05:30",
      "multiaddrs": []
    }}
  }}
}}"""

GO_ENTRY_KEYS = [
    "peer_id",
    "public_key",
    "metadata",
    "last_seen",
    "blacklisted",
    "created_at",
    "updated_at",
    "multiaddrs",
]
GO_TIME = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{0,8}[1-9])?(Z|[+-]\d{2}:\d{2})"


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def one_peer_file(entry: str, *, key: str = A, version: str = "1") -> str:
    return f'{{"version": {version}, "peers": {{"{key}": {entry}}}}}'


def ordered(path: Path) -> Any:
    """The file parsed with every object as a list of pairs, so key order can be compared."""
    return json.loads(path.read_text(), object_pairs_hook=list)


def dir_listing(path: Path) -> list[str]:
    return sorted(os.listdir(path.parent))


@pytest.fixture
def book_path(tmp_path: Path) -> Path:
    return tmp_path / "book.json"


class TestGoFileLayout:
    """storage.go save: json.MarshalIndent(book, "", "  ") of types.go's structs."""

    def test_reads_go_file(self, book_path: Path) -> None:
        book = AddressBook(write(book_path, GO_FILE))
        assert len(book) == 2
        a = book.get_peer(A)
        assert a.peer_id == PeerID.from_string(A)
        assert a.multiaddrs == (
            Multiaddr.parse("/ip4/192.0.2.1/tcp/4001"),
            Multiaddr.parse("/ip6/2001:db8::1/tcp/4001"),
        )
        assert a.public_key == KEY32
        assert dict(a.metadata) == {"name": "<node> & co", "role": "server"}
        assert a.last_seen == datetime(2024, 3, 10, 14, 30, 15, 123456, tzinfo=PLUS2)
        assert a.last_seen is not None
        assert a.last_seen.utcoffset() == timedelta(hours=2)
        assert a.created_at == datetime(2024, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)
        assert a.updated_at == datetime(2024, 3, 10, 12, 30, 15, 123456, tzinfo=UTC)
        assert not a.blacklisted
        b = book.get_peer(B)
        assert b.last_seen is None  # Go's zero time: never seen
        assert b.public_key is None
        assert dict(b.metadata) == {}
        assert b.multiaddrs == ()
        assert b.blacklisted
        assert b.updated_at == datetime(2024, 1, 1, tzinfo=MINUS530)

    def test_rewrites_go_file_byte_for_byte(self, book_path: Path) -> None:
        """Offsets, nanoseconds, escapes, key order and indentation all survive a save."""
        book = AddressBook(write(book_path, GO_FILE))
        book.add_peer(C, [])
        assert book_path.read_text() != GO_FILE
        book.remove_peer(C)
        assert book_path.read_text() == GO_FILE

    def test_entry_key_order_and_omitempty(self, book_path: Path) -> None:
        book = AddressBook(book_path)
        book.add_peer(A, ["/ip4/192.0.2.1/tcp/4001"], {"role": "server", "name": "x"})
        book.update_public_key(A, KEY32)
        book.update_last_seen(A)
        book.add_peer(B, [])
        doc = ordered(book_path)
        assert [k for k, _ in doc] == ["version", "peers"]
        assert doc[0] == ("version", 1)
        peers = dict(doc)["peers"]
        assert [k for k, _ in peers] == [A, B]  # map keys sorted
        full, bare = dict(peers[0][1]), dict(peers[1][1])
        assert [k for k, _ in peers[0][1]] == GO_ENTRY_KEYS
        # omitempty drops an empty public_key and metadata, but never a time.Time
        assert [k for k, _ in peers[1][1]] == [
            k for k in GO_ENTRY_KEYS if k not in ("public_key", "metadata")
        ]
        assert full["peer_id"] == A
        assert full["public_key"] == KEY32_B64
        assert full["metadata"] == [("name", "x"), ("role", "server")]
        assert full["multiaddrs"] == ["/ip4/192.0.2.1/tcp/4001"]
        assert full["blacklisted"] is False
        assert bare["last_seen"] == "0001-01-01T00:00:00Z"
        assert bare["multiaddrs"] == []  # an empty slice, never null
        for entry in (full, bare):
            for name in ("last_seen", "created_at", "updated_at"):
                assert _matches(GO_TIME, entry[name]), entry[name]

    def test_indentation(self, book_path: Path) -> None:
        book = AddressBook(book_path)
        book.add_peer(B, ["/ip4/192.0.2.1/tcp/1"])
        text = book_path.read_text()
        lines = text.split("\n")
        assert lines[:4] == ["{", '  "version": 1,', '  "peers": {', f'    "{B}": {{']
        assert lines[4] == f'      "peer_id": "{B}",'
        assert lines[-6:] == [
            '      "multiaddrs": [',
            '        "/ip4/192.0.2.1/tcp/1"',
            "      ]",
            "    }",
            "  }",
            "}",
        ]
        assert not text.endswith("\n")  # MarshalIndent adds no newline

    def test_empty_book(self, book_path: Path) -> None:
        book = AddressBook(book_path)
        book.add_peer(A, [])
        book.remove_peer(A)
        assert book_path.read_text() == '{\n  "version": 1,\n  "peers": {}\n}'

    def test_go_string_escaping(self, book_path: Path) -> None:
        """encoding/json: <, >, &, U+2028, U+2029 as \\u; \\b \\f \\n \\r \\t short; other controls \\u00xx."""
        book = AddressBook(book_path)
        book.add_peer(A, [], {"k<&>": '<a&b>\u2028\u2029\b\f\n\r\t\x01\x1f\x7f "q" \\ é ☃ 😀'})
        text = book_path.read_text(encoding="utf-8")
        expected = (
            '"k\\u003c\\u0026\\u003e": "\\u003ca\\u0026b\\u003e\\u2028\\u2029\\b\\f\\n\\r\\t\\u0001\\u001f\x7f'
            ' \\"q\\" \\\\ é ☃ 😀"'
        )
        assert expected in text

    @settings(max_examples=50, deadline=None)
    @given(st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
    def test_escaping_round_trips(self, value: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "book.json"
            AddressBook(path).add_peer(A, [], {"v": value})
            text = path.read_text(encoding="utf-8")
            assert json.loads(text)["peers"][A]["metadata"]["v"] == value
            assert not any(c in text for c in "<>&\u2028\u2029")
            assert AddressBook(path).get_peer(A).metadata == {"v": value}


def _matches(pattern: str, text: str) -> bool:
    import re

    return re.fullmatch(pattern, text) is not None


class TestReadingGoVariants:
    """What Go's json.Unmarshal accepts is accepted (types.go UnmarshalJSON, storage.go load)."""

    def test_missing_file_is_empty_and_not_created(self, tmp_path: Path) -> None:
        path = tmp_path / "sub" / "book.json"
        book = AddressBook(path)
        assert len(book) == 0
        assert book.list_peers() == []
        assert book.list_peers() == []
        assert A not in book
        assert not path.exists()

    def test_empty_file_is_empty_book(self, book_path: Path) -> None:
        write(book_path, b"")
        assert len(AddressBook(book_path)) == 0
        assert book_path.read_bytes() == b""

    @pytest.mark.parametrize("peers", ["", ', "peers": null'])
    def test_missing_or_null_peers(self, book_path: Path, peers: str) -> None:
        write(book_path, f'{{"version": 1{peers}}}')
        assert len(AddressBook(book_path)) == 0

    @pytest.mark.parametrize(
        ("text", "expected", "ns_text"),
        [
            ("2024-03-10T12:30:15Z", datetime(2024, 3, 10, 12, 30, 15, tzinfo=UTC), "2024-03-10T12:30:15Z"),
            (
                "2024-03-10T14:30:15+02:00",
                datetime(2024, 3, 10, 14, 30, 15, tzinfo=PLUS2),
                "2024-03-10T14:30:15+02:00",
            ),
            (
                "2024-03-10T07:00:15.1-05:30",
                datetime(2024, 3, 10, 7, 0, 15, 100000, tzinfo=MINUS530),
                "2024-03-10T07:00:15.1-05:30",
            ),
            (  # Go keeps 9 fraction digits and drops the rest
                "2024-03-10T12:30:15.1234567891234Z",
                datetime(2024, 3, 10, 12, 30, 15, 123456, tzinfo=UTC),
                "2024-03-10T12:30:15.123456789Z",
            ),
            (  # a zero offset is written "Z"
                "2024-03-10T12:30:15.000000100+00:00",
                datetime(2024, 3, 10, 12, 30, 15, tzinfo=UTC),
                "2024-03-10T12:30:15.0000001Z",
            ),
            ("2024-02-29T23:59:59.999999999Z", datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC), None),
        ],
    )
    def test_times(self, book_path: Path, text: str, expected: datetime, ns_text: str | None) -> None:
        write(book_path, one_peer_file(f'{{"last_seen": "{text}", "created_at": "{text}"}}'))
        book = AddressBook(book_path)
        entry = book.get_peer(A)
        assert entry.last_seen == expected
        assert entry.created_at == expected
        assert entry.last_seen is not None
        assert entry.last_seen.utcoffset() == expected.utcoffset()
        book.blacklist_peer(A)  # rewrite: the nanoseconds and the offset are kept
        saved = json.loads(book_path.read_text())["peers"][A]
        assert saved["created_at"] == saved["last_seen"] == (ns_text or text)

    def test_omitted_and_null_fields(self, book_path: Path) -> None:
        """omitempty variations, and nulls, which Go reads as zero values."""
        entries = {
            A: "{}",
            B: f'{{"peer_id": "{B}", "multiaddrs": null, "public_key": null, "metadata": null, '
            '"last_seen": null, "blacklisted": null, "created_at": null, "updated_at": null}',
            C: '{"public_key": "", "metadata": {}, "multiaddrs": [], "blacklisted": false}',
        }
        body = ", ".join(f'"{k}": {v}' for k, v in entries.items())
        book = AddressBook(write(book_path, f'{{"version": 1, "peers": {{{body}}}}}'))
        zero = datetime(1, 1, 1, tzinfo=UTC)
        for key in entries:
            e = book.get_peer(key)
            assert e == PeerEntry(PeerID.from_string(key), (), None, {}, None, False, zero, zero)
        book.add_peer(A, [])
        saved = json.loads(book_path.read_text())["peers"][B]
        assert saved == {
            "peer_id": B,
            "last_seen": "0001-01-01T00:00:00Z",
            "blacklisted": False,
            "created_at": "0001-01-01T00:00:00Z",
            "updated_at": "0001-01-01T00:00:00Z",
            "multiaddrs": [],
        }

    def test_field_names_match_case_insensitively(self, book_path: Path) -> None:
        write(book_path, f'{{"Version": 1, "PEERS": {{"{A}": {{"Peer_ID": "{A}", "BlackListed": true}}}}}}')
        assert AddressBook(book_path).is_blacklisted(A)

    def test_unknown_fields_ignored(self, book_path: Path) -> None:
        write(
            book_path, f'{{"version": 1, "x": [1.5, {{}}], "peers": {{"{A}": {{"extra": {{"a": null}}}}}}}}'
        )
        assert A in AddressBook(book_path)

    def test_invalid_multiaddrs_skipped_with_warning(
        self, book_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """types.go UnmarshalJSON skips what it cannot parse; we keep it in the file for go-multiaddr."""
        addrs = '["/ip4/192.0.2.1/tcp/0080", "garbage", null, "/unix/tmp/x.sock"]'
        write(book_path, one_peer_file(f'{{"multiaddrs": {addrs}}}'))
        with caplog.at_level(logging.WARNING, logger="glueberry"):
            book = AddressBook(book_path)
        assert book.get_peer(A).multiaddrs == (Multiaddr.parse("/ip4/192.0.2.1/tcp/80"),)
        warned = [r.getMessage() for r in caplog.records if r.name == "glueberry"]
        assert any("garbage" in m for m in warned)
        assert any("/unix/tmp/x.sock" in m for m in warned)
        book.blacklist_peer(A)
        saved = json.loads(book_path.read_text())["peers"][A]["multiaddrs"]
        assert saved == ["/ip4/192.0.2.1/tcp/80", "garbage", "/unix/tmp/x.sock"]
        book.unblacklist_peer(A)
        book.add_peer(A, ["/ip4/192.0.2.2/tcp/1"])  # AddPeer replaces the list, unparsed ones too
        assert json.loads(book_path.read_text())["peers"][A]["multiaddrs"] == ["/ip4/192.0.2.2/tcp/1"]

    def test_base64_with_newlines_and_null_metadata_value(self, book_path: Path) -> None:
        write(book_path, one_peer_file('{"public_key": "AQID\\r\\nBA==", "metadata": {"k": null}}'))
        entry = AddressBook(book_path).get_peer(A)
        assert entry.public_key == b"\x01\x02\x03\x04"
        assert dict(entry.metadata) == {"k": ""}

    def test_peer_id_field_may_be_absent(self, book_path: Path) -> None:
        write(book_path, one_peer_file('{"blacklisted": true}'))
        book = AddressBook(book_path)
        book.unblacklist_peer(A)
        assert json.loads(book_path.read_text())["peers"][A]["peer_id"] == A

    def test_lone_surrogate_escape_becomes_replacement_char(self, book_path: Path) -> None:
        write(book_path, one_peer_file('{"metadata": {"k": "a\\ud800b"}}'))
        book = AddressBook(book_path)
        assert book.get_peer(A).metadata == {"k": "a\ufffdb"}
        book.blacklist_peer(A)
        assert json.loads(book_path.read_text())["peers"][A]["metadata"] == {"k": "a\ufffdb"}


CORRUPT_FILES = [
    pytest.param("{", "not valid JSON", id="truncated-json"),
    pytest.param('{"version": 1, "peers": {}} x', "not valid JSON", id="trailing-garbage"),
    pytest.param("   ", "not valid JSON", id="whitespace-only"),
    pytest.param('\ufeff{"version": 1}', "not valid JSON", id="bom"),
    pytest.param('{"version": NaN, "peers": {}}', "NaN is not JSON", id="nan"),
    pytest.param("[" * 100_000, "not valid JSON", id="deep-nesting"),
    pytest.param("[]", "top level is an array", id="top-array"),
    pytest.param("null", "top level is null", id="top-null"),
    pytest.param('"book"', "top level is a string", id="top-string"),
    pytest.param('{"peers": {}}', '"version" is null or missing', id="no-version"),
    pytest.param('{"version": "1", "peers": {}}', '"version" is a string', id="version-string"),
    pytest.param('{"version": 1.0, "peers": {}}', '"version" is the number 1.0', id="version-float"),
    pytest.param('{"version": true, "peers": {}}', '"version" is a boolean', id="version-bool"),
    pytest.param('{"version": 2, "peers": {}}', "unknown version 2", id="version-2"),
    pytest.param('{"version": 0, "peers": {}}', "unknown version 0", id="version-0"),
    pytest.param('{"version": 1, "peers": []}', '"peers" is an array', id="peers-array"),
    pytest.param(one_peer_file("{}", key="not-a-peer-id"), "the key is not a peer ID", id="bad-key"),
    pytest.param(one_peer_file("{}", key=""), "the key is not a peer ID", id="empty-key"),
    pytest.param(one_peer_file("null"), "the entry is null", id="entry-null"),
    pytest.param(one_peer_file("[]"), "the entry is an array", id="entry-array"),
    pytest.param(one_peer_file(f'{{"peer_id": "{B}"}}'), "does not match its key", id="peer-id-mismatch"),
    pytest.param(one_peer_file('{"peer_id": null}'), '"peer_id" is null', id="peer-id-null"),
    pytest.param(one_peer_file('{"peer_id": 5}'), '"peer_id" is the number 5', id="peer-id-number"),
    pytest.param(
        one_peer_file('{"multiaddrs": "/ip4/1.2.3.4/tcp/1"}'), '"multiaddrs" is a string', id="addrs-str"
    ),
    pytest.param(one_peer_file('{"multiaddrs": [1]}'), '"multiaddrs" holds the number 1', id="addrs-number"),
    pytest.param(one_peer_file('{"public_key": 5}'), '"public_key" is the number 5', id="pubkey-number"),
    pytest.param(one_peer_file('{"public_key": "!!!!"}'), '"public_key" is not base64', id="pubkey-alphabet"),
    pytest.param(
        one_peer_file('{"public_key": "AQID"  , "x": 1, "public_key": "AQ"}'), "not base64", id="pubkey-pad"
    ),
    pytest.param(one_peer_file('{"public_key": "AQ==AQ=="}'), "not base64", id="pubkey-after-pad"),
    pytest.param(one_peer_file('{"metadata": []}'), '"metadata" is an array', id="metadata-array"),
    pytest.param(
        one_peer_file('{"metadata": {"k": 1}}'), "value of 'k' is the number 1", id="metadata-value"
    ),
    pytest.param(one_peer_file('{"blacklisted": "yes"}'), '"blacklisted" is a string', id="blacklisted-str"),
    pytest.param(one_peer_file('{"blacklisted": 1}'), '"blacklisted" is the number 1', id="blacklisted-int"),
    pytest.param(one_peer_file('{"last_seen": 1700000000}'), '"last_seen" is the number', id="time-number"),
    pytest.param(one_peer_file('{"last_seen": "yesterday"}'), "not an RFC 3339 time", id="time-text"),
    pytest.param(one_peer_file('{"created_at": "2024-13-01T00:00:00Z"}'), "no such date", id="time-month"),
    pytest.param(one_peer_file('{"created_at": "2023-02-29T00:00:00Z"}'), "no such date", id="time-feb29"),
    pytest.param(one_peer_file('{"updated_at": "2024-01-01T24:00:00Z"}'), "time of day", id="time-hour"),
    pytest.param(one_peer_file('{"updated_at": "2024-01-01T00:00:60Z"}'), "time of day", id="time-leap"),
    pytest.param(one_peer_file('{"updated_at": "2024-01-01t00:00:00z"}'), "not an RFC 3339", id="time-lower"),
    pytest.param(
        one_peer_file('{"updated_at": "2024-01-01T00:00:00"}'), "not an RFC 3339", id="time-no-zone"
    ),
    pytest.param(one_peer_file('{"updated_at": "2024-01-01T00:00:00+24:00"}'), "offset", id="time-offset"),
    pytest.param(one_peer_file('{"updated_at": "2024-01-01 00:00:00Z"}'), "not an RFC 3339", id="time-space"),
    pytest.param(one_peer_file('{"updated_at": "0000-01-01T00:00:00Z"}'), "year 0", id="time-year-0"),
]


class TestCorruptFile:
    """A file we cannot read raises a typed error and is left exactly as it was (Go would rename it
    to .bak and start empty: storage.go load)."""

    @pytest.mark.parametrize(("content", "problem"), CORRUPT_FILES)
    def test_refused_and_untouched(self, book_path: Path, content: str, problem: str) -> None:
        write(book_path, content)
        os.utime(book_path, ns=(1_000_000_000, 1_000_000_000))
        before = book_path.read_bytes()
        for _ in range(2):
            with pytest.raises(AddressBookCorrupt) as info:
                AddressBook(book_path)
            message = str(info.value)
            assert str(book_path) in message
            assert problem in message, message
            assert "Move it aside or fix it; it was not modified." in message
            assert book_path.read_bytes() == before
            assert book_path.stat().st_mtime_ns == 1_000_000_000
            assert dir_listing(book_path) == ["book.json", "book.json.lock"]
        assert isinstance(info.value, InvalidConfig)
        assert info.value.path == str(book_path)

    def test_too_large(self, book_path: Path) -> None:
        write(book_path, GO_FILE)
        with pytest.raises(AddressBookCorrupt, match="larger than 100 bytes"):
            AddressBook(book_path, max_file_bytes=100)
        assert book_path.read_text() == GO_FILE
        assert len(AddressBook(book_path, max_file_bytes=len(GO_FILE))) == 2

    def test_directory_is_unreadable(self, book_path: Path) -> None:
        book_path.mkdir()
        with pytest.raises(AddressBookUnreadable, match="cannot be read") as info:
            AddressBook(book_path)
        assert str(book_path) in str(info.value)
        assert isinstance(info.value, InvalidConfig)

    # Permission denied takes the same OSError path as the directory above; it cannot be shown
    # as root (CI runs as root and root reads any file), so it has no test of its own.


class TestAtomicWrite:
    """storage.go save: temp file in the same directory, fsync, rename; mode 0600."""

    def test_no_temp_file_left_and_mode_0600(self, book_path: Path) -> None:
        book = AddressBook(book_path)
        for i in range(5):
            book.add_peer(A, [f"/ip4/192.0.2.{i}/tcp/1"])
        book.update_last_seen(A)
        assert dir_listing(book_path) == ["book.json", "book.json.lock"]
        assert stat.S_IMODE(book_path.stat().st_mode) == 0o600

    def test_mode_is_0600_even_if_file_was_wider(self, book_path: Path) -> None:
        write(book_path, GO_FILE).chmod(0o644)
        AddressBook(book_path).add_peer(C, [])
        assert stat.S_IMODE(book_path.stat().st_mode) == 0o600

    def test_creates_missing_directory(self, tmp_path: Path) -> None:
        path = tmp_path / "a" / "b" / "book.json"
        AddressBook(path).add_peer(A, [])
        assert A in AddressBook(path)

    def test_failed_write_changes_nothing(self, tmp_path: Path) -> None:
        path = tmp_path / "sub" / "book.json"
        book = AddressBook(path)
        (tmp_path / "sub").write_text("a file where the directory should be")
        with pytest.raises(AddressBookWriteFailed, match="could not be saved"):
            book.add_peer(A, [])
        assert A not in book
        assert len(book) == 0

    def test_reads_do_not_write(self, book_path: Path) -> None:
        write(book_path, GO_FILE)
        os.utime(book_path, ns=(1_000_000_000, 1_000_000_000))
        book = AddressBook(book_path)
        book.get_peer(A)
        book.list_peers()
        book.all_peers()
        assert book.is_blacklisted(B)
        assert A in book
        assert len(book) == 2
        assert book_path.stat().st_mtime_ns == 1_000_000_000


class TestAddPeer:
    """book.go AddPeer: adds, or replaces an existing peer's addresses (and metadata if given)."""

    def test_add_and_get(self, book_path: Path) -> None:
        book = AddressBook(book_path)
        before = datetime.now(UTC)
        entry = book.add_peer(PeerID.from_string(A), [Multiaddr.parse("/ip4/192.0.2.1/tcp/1")], {"k": "v"})
        assert entry == book.get_peer(A)
        assert entry.multiaddrs == (Multiaddr.parse("/ip4/192.0.2.1/tcp/1"),)
        assert entry.metadata == {"k": "v"}
        assert entry.public_key is None
        assert entry.last_seen is None
        assert before - timedelta(seconds=1) <= entry.created_at == entry.updated_at <= datetime.now(UTC)
        assert entry.created_at.tzinfo is not None

    def test_update_existing(self, book_path: Path) -> None:
        book = AddressBook(book_path)
        first = book.add_peer(A, ["/ip4/192.0.2.1/tcp/1"], {"k": "v"})
        time.sleep(0.001)
        second = book.add_peer(A, ["/ip4/192.0.2.2/tcp/2"])
        assert second.multiaddrs == (Multiaddr.parse("/ip4/192.0.2.2/tcp/2"),)
        assert second.metadata == {"k": "v"}  # nil metadata keeps what was there
        assert second.created_at == first.created_at
        assert second.updated_at > first.updated_at
        assert book.add_peer(A, [], {}).metadata == {}  # an empty map replaces it
        assert len(book) == 1

    def test_entry_is_a_snapshot(self, book_path: Path) -> None:
        book = AddressBook(book_path)
        metadata = {"k": "v"}
        entry = book.add_peer(A, [], metadata)
        metadata["k"] = "changed"
        assert book.get_peer(A).metadata == {"k": "v"}
        with pytest.raises(TypeError):
            entry.metadata["k"] = "x"  # type: ignore[index]

    def test_remove(self, book_path: Path) -> None:
        book = AddressBook(book_path)
        book.add_peer(A, [])
        book.remove_peer(A)
        assert A not in book
        with pytest.raises(PeerNotFound) as info:
            book.remove_peer(A)
        assert info.value.peer_id == A
        with pytest.raises(PeerNotFound):
            book.get_peer(A)

    def test_contains(self, book_path: Path) -> None:
        book = AddressBook(book_path)
        book.add_peer(A, [])
        assert A in book
        assert PeerID.from_string(A) in book
        assert B not in book
        assert "garbage" not in book
        assert 5 not in book

    def test_ordered_listing(self, book_path: Path) -> None:
        book = AddressBook(book_path)
        for key in (B, C, A):
            book.add_peer(key, [])
        assert [str(e.peer_id) for e in book.all_peers()] == sorted([A, B, C])
        assert [str(e.peer_id) for e in book] == sorted([A, B, C])


class TestUpdates:
    """book.go UpdatePublicKey, UpdateLastSeen, UpdateMetadata: known peers only."""

    def test_public_key(self, book_path: Path) -> None:
        book = AddressBook(book_path)
        book.add_peer(A, [])
        book.update_public_key(A, KEY32)
        assert book.get_peer(A).public_key == KEY32
        assert AddressBook(book_path).get_peer(A).public_key == KEY32
        book.update_public_key(A, b"")
        assert book.get_peer(A).public_key is None
        with pytest.raises(PeerNotFound):
            book.update_public_key(B, KEY32)
        with pytest.raises(InvalidArgument, match="must be bytes"):
            book.update_public_key(A, "key")  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument, match="over 1024"):
            book.update_public_key(A, bytes(1025))

    def test_last_seen_now(self, book_path: Path) -> None:
        book = AddressBook(book_path)
        book.add_peer(A, [])
        before = datetime.now(UTC) - timedelta(seconds=1)
        book.update_last_seen(A)
        entry = book.get_peer(A)
        assert entry.last_seen is not None
        assert before <= entry.last_seen <= datetime.now(UTC)
        assert entry.updated_at == entry.last_seen  # Go sets both to the same now
        saved = json.loads(book_path.read_text())["peers"][A]["last_seen"]
        assert _matches(GO_TIME, saved)
        assert saved.endswith("Z")

    def test_last_seen_given(self, book_path: Path) -> None:
        book = AddressBook(book_path)
        book.add_peer(A, [])
        when = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=MINUS530)
        book.update_last_seen(A, when)
        assert json.loads(book_path.read_text())["peers"][A]["last_seen"] == "2024-05-06T07:08:09.123-05:30"
        seen = AddressBook(book_path).get_peer(A).last_seen
        assert seen == when
        assert seen is not None
        assert seen.utcoffset() == when.utcoffset()
        odd = timezone(timedelta(hours=1, seconds=30))  # RFC 3339 cannot say this offset: use UTC
        book.update_last_seen(A, datetime(2024, 1, 1, 1, 0, 30, tzinfo=odd))
        assert json.loads(book_path.read_text())["peers"][A]["last_seen"] == "2024-01-01T00:00:00Z"
        with pytest.raises(InvalidArgument, match="timezone-aware"):
            book.update_last_seen(A, datetime(2024, 1, 1))
        with pytest.raises(InvalidArgument, match="must be a datetime"):
            book.update_last_seen(A, "now")  # type: ignore[arg-type]
        with pytest.raises(PeerNotFound):
            book.update_last_seen(B)

    def test_metadata_merge(self, book_path: Path) -> None:
        book = AddressBook(book_path)
        book.add_peer(A, [], {"a": "1", "b": "2"})
        book.update_metadata(A, {"b": "", "c": "3"})  # "" deletes
        assert book.get_peer(A).metadata == {"a": "1", "c": "3"}
        with pytest.raises(PeerNotFound):
            book.update_metadata(B, {})


class TestBlacklist:
    """book.go BlacklistPeer, UnblacklistPeer, IsBlacklisted, ListPeers, ListAllPeers."""

    def test_semantics(self, book_path: Path) -> None:
        book = AddressBook(book_path)
        book.add_peer(A, [])
        book.add_peer(B, [])
        book.blacklist_peer(B)
        assert book.is_blacklisted(B)
        assert not book.is_blacklisted(A)
        assert [str(e.peer_id) for e in book.list_peers()] == [A]
        assert [str(e.peer_id) for e in book.all_peers()] == [A, B]
        assert len(book) == 2
        assert B in book
        with pytest.raises(PeerBlacklisted) as info:
            book.add_peer(B, ["/ip4/192.0.2.1/tcp/1"])
        assert info.value.peer_id == B
        book.update_last_seen(B)  # allowed on a blacklisted peer, as in Go
        reopened = AddressBook(book_path)
        assert reopened.is_blacklisted(B)
        assert reopened.all_peers() == book.all_peers()
        book.unblacklist_peer(B)
        assert not book.is_blacklisted(B)
        assert len(book.list_peers()) == 2
        book.add_peer(B, ["/ip4/192.0.2.1/tcp/1"])

    def test_unknown_peer(self, book_path: Path) -> None:
        book = AddressBook(book_path)
        assert not book.is_blacklisted(A)
        with pytest.raises(PeerNotFound):
            book.blacklist_peer(A)  # Go does not create an entry
        with pytest.raises(PeerNotFound):
            book.unblacklist_peer(A)
        assert len(book) == 0
        assert not book_path.exists()


class TestLimits:
    def test_max_peers(self, book_path: Path) -> None:
        book = AddressBook(book_path, max_peers=2)
        book.add_peer(A, [])
        book.add_peer(B, [])
        with pytest.raises(LimitExceeded) as info:
            book.add_peer(C, [])
        assert info.value.limit == "address_book_peers"
        assert C not in book
        book.add_peer(A, ["/ip4/192.0.2.1/tcp/1"])  # updating a known peer is still allowed
        book.remove_peer(A)
        book.add_peer(C, [])

    def test_file_over_max_peers_loads(self, book_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        write(book_path, GO_FILE)
        with caplog.at_level(logging.WARNING, logger="glueberry"):
            book = AddressBook(book_path, max_peers=1)
        assert len(book) == 2
        assert "over max_peers" in caplog.text
        with pytest.raises(LimitExceeded):
            book.add_peer(C, [])

    def test_metadata_size_counts_utf8_bytes_of_keys_and_values(self, book_path: Path) -> None:
        """validation.go ValidateMetadataSize: sum of len(k) + len(v), Go's len is bytes."""
        book = AddressBook(book_path, max_metadata_bytes=10)
        book.add_peer(A, [], {"ab": "cdefghij"})  # 10 bytes
        with pytest.raises(MetadataTooLarge, match="11 bytes") as info:
            book.add_peer(A, [], {"ab": "cdefghi", "é": ""})  # 9 + 2
        assert isinstance(info.value, InvalidArgument)
        assert book.get_peer(A).metadata == {"ab": "cdefghij"}
        with pytest.raises(MetadataTooLarge):
            book.update_metadata(A, {"x": "y"})
        default = AddressBook(book_path.with_name("other.json"))
        default.add_peer(A, [], {"k": "v" * 4095})
        with pytest.raises(MetadataTooLarge):
            default.add_peer(A, [], {"k": "v" * 4096})

    def test_multiaddrs_per_peer(self, book_path: Path) -> None:
        book = AddressBook(book_path)
        addrs = [f"/ip4/192.0.2.1/tcp/{i}" for i in range(MAX_MULTIADDRS_PER_PEER + 1)]
        book.add_peer(A, addrs[:-1])
        with pytest.raises(InvalidArgument, match=f"at most {MAX_MULTIADDRS_PER_PEER}"):
            book.add_peer(A, addrs)
        assert len(book.get_peer(A).multiaddrs) == MAX_MULTIADDRS_PER_PEER

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"max_peers": 0}, "max_peers"),
            ({"max_peers": True}, "max_peers"),
            ({"max_metadata_bytes": -1}, "max_metadata_bytes"),
            ({"max_file_bytes": 1.5}, "max_file_bytes"),
        ],
    )
    def test_bad_config(self, book_path: Path, kwargs: dict[str, Any], match: str) -> None:
        with pytest.raises(InvalidConfig, match=match):
            AddressBook(book_path, **kwargs)

    def test_bad_path(self) -> None:
        with pytest.raises(InvalidConfig, match="path"):
            AddressBook("")

    def test_bad_inputs(self, book_path: Path) -> None:
        book = AddressBook(book_path)
        with pytest.raises(InvalidPeerID, match="PeerID or str"):
            book.add_peer(5, [])  # type: ignore[arg-type]
        with pytest.raises(InvalidPeerID):
            book.add_peer("not-a-peer-id", [])
        with pytest.raises(InvalidArgument, match="not a single value"):
            book.add_peer(A, "/ip4/192.0.2.1/tcp/1")
        with pytest.raises(InvalidMultiaddr):
            book.add_peer(A, ["garbage"])
        with pytest.raises(InvalidArgument, match="Multiaddr or str"):
            book.add_peer(A, [5])  # type: ignore[list-item]
        with pytest.raises(InvalidArgument, match="must be str"):
            book.add_peer(A, [], {"k": 5})  # type: ignore[dict-item]
        with pytest.raises(InvalidArgument, match="mapping"):
            book.add_peer(A, [], [("k", "v")])  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument, match="surrogate"):
            book.add_peer(A, [], {"k": "\ud800"})
        with pytest.raises(InvalidPeerID):
            book.get_peer("garbage")
        assert len(book) == 0
        assert not book_path.exists()


# -- Hypothesis round trip -------------------------------------------------------------------------

peer_ids = st.one_of(
    st.binary(min_size=32, max_size=32).map(PeerID.from_public_key),
    st.binary(min_size=32, max_size=32).map(lambda d: PeerID(b"\x12\x20" + d)),
)
multiaddrs = st.builds(
    lambda ip, port: Multiaddr.parse(f"/ip4/{ip}/tcp/{port}"),
    st.ip_addresses(v=4),
    st.integers(0, 65535),
) | st.builds(
    lambda ip, port: Multiaddr.parse(f"/ip6/{ip}/tcp/{port}"), st.ip_addresses(v=6), st.integers(0, 65535)
)
texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
zones = st.sampled_from(
    [UTC, PLUS2, MINUS530, timezone(timedelta(hours=14)), timezone(-timedelta(hours=23, minutes=59))]
)
moments = st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=zones)
entries = st.fixed_dictionaries(
    {
        "peer_id": peer_ids,
        "addrs": st.lists(multiaddrs, max_size=4),
        "metadata": st.none() | st.dictionaries(texts, texts, max_size=4),
        "public_key": st.none() | st.binary(max_size=64),
        "last_seen": st.none() | moments,
        "blacklisted": st.booleans(),
    }
)


class TestRoundTrip:
    @settings(max_examples=60, deadline=None)
    @given(st.lists(entries, max_size=6, unique_by=lambda e: e["peer_id"]))
    def test_reopen_gives_same_entries_and_bytes(self, items: list[dict[str, Any]]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "book.json"
            book = AddressBook(path)
            for item in items:
                pid = item["peer_id"]
                book.add_peer(pid, item["addrs"], item["metadata"])
                if item["public_key"] is not None:
                    book.update_public_key(pid, item["public_key"])
                if item["last_seen"] is not None:
                    book.update_last_seen(pid, item["last_seen"])
                if item["blacklisted"]:
                    book.blacklist_peer(pid)
            for item in items:
                entry = book.get_peer(item["peer_id"])
                assert entry.multiaddrs == tuple(item["addrs"])
                assert entry.metadata == (item["metadata"] or {})
                assert entry.public_key == (item["public_key"] or None)
                assert entry.last_seen == item["last_seen"]
                assert entry.blacklisted == item["blacklisted"]
            if not items:
                return
            data = path.read_bytes()
            reopened = AddressBook(path)
            assert reopened.all_peers() == book.all_peers()
            assert reopened.list_peers() == book.list_peers()
            extra = PeerID.from_public_key(b"\xff" * 32)
            if extra not in reopened:
                reopened.add_peer(extra, [])
                reopened.remove_peer(extra)
                assert path.read_bytes() == data
