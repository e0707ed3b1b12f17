"""multistream-select 1.0: agreeing on a protocol at the start of a connection or stream.

Spec: libp2p/specs ``connections/README.md`` (protocol negotiation); PROTOCOL.md §4.5.

Every message is ``uvarint(len(text) + 1) ‖ text ‖ "\\n"``. Both sides send the header
``/multistream/1.0.0``; the dialler proposes protocols one at a time; the listener echoes the one it
accepts or answers ``na``. The dialler pipelines the header and its first proposal, and may write
application data right behind them before any answer (go-libp2p's "lazy" negotiation), so the
listener hands whatever follows the agreed proposal to the next layer untouched.

Both cores follow the sans-I/O shape of ``docs/dev/conventions.md``; negotiation ends with one
:class:`ProtocolAgreed` event whose ``remainder`` holds the bytes received after the negotiation,
which belong to the next layer. The core is then done: the driver stops feeding it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from .._reader import Parser, StreamReader, TruncatedInput
from .._varint import encode_uvarint
from ..exceptions import (
    ConnectionClosed,
    FrameTooLarge,
    InvalidState,
    LocalProtocolError,
    NegotiationFailed,
    RemoteProtocolError,
)

__all__ = [
    "HEADER",
    "MAX_MESSAGE_LENGTH",
    "NA",
    "MultistreamClient",
    "MultistreamServer",
    "ProtocolAgreed",
    "encode_message",
]

HEADER = "/multistream/1.0.0"
NA = "na"
# go-multistream refuses messages over 1024 bytes; protocol IDs are short.
MAX_MESSAGE_LENGTH = 1024
# A listener answers at most this many proposals before giving up on a dialler.
MAX_PROPOSALS = 32


@dataclass(frozen=True, slots=True)
class ProtocolAgreed:
    """Both sides agreed on ``protocol``; ``remainder`` is what followed, for the next layer."""

    protocol: str
    remainder: bytes


def encode_message(text: str) -> bytes:
    data = text.encode() + b"\n"
    if len(data) > MAX_MESSAGE_LENGTH:
        raise LocalProtocolError(f"multistream message over {MAX_MESSAGE_LENGTH} bytes: {text[:40]!r}")
    return encode_uvarint(len(data)) + data


_HEADER_BYTES = encode_message(HEADER)
_NA_BYTES = encode_message(NA)


def _read_message(reader: StreamReader) -> Parser[str]:
    length = yield from reader.read_uvarint(max_bytes=2, minimal=True)
    if length > MAX_MESSAGE_LENGTH:
        raise FrameTooLarge(f"multistream message of {length} bytes (limit {MAX_MESSAGE_LENGTH})")
    data = yield from reader.read_exact(length)
    if not data.endswith(b"\n"):
        raise RemoteProtocolError("multistream message does not end with a newline")
    try:
        text = data[:-1].decode()
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError("multistream message is not UTF-8") from exc
    if "\n" in text:
        raise RemoteProtocolError("multistream message holds more than one line")
    return text


class _Negotiation:
    """What the dialler and listener share: the reader, the parser and the output queue."""

    def __init__(self) -> None:
        self._reader = StreamReader()
        self._events: list[ProtocolAgreed] = []
        self._out: list[bytes] = []
        self._parser = self._parse()
        self._done = False
        self._failed = False
        next(self._parser)  # run to the first yield

    def _parse(self) -> Parser[None]:
        raise NotImplementedError  # pragma: no cover

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from below.

        After calling this method: call :meth:`data_to_send` and send the bytes, then
        :meth:`events_received`.

        Raises:
            NegotiationFailed: the dialler ran out of proposals, or the listener saw too many.
            RemoteProtocolError: a malformed message.
        """
        self._check_usable()
        self._reader.feed_data(data)
        self._advance()

    def receive_eof(self) -> None:
        """The layer below ended; during negotiation that is a failure."""
        self._check_usable()
        self._reader.feed_eof()
        self._advance()

    def events_received(self) -> list[ProtocolAgreed]:
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    @property
    def done(self) -> bool:
        return self._done

    def _check_usable(self) -> None:
        if self._failed:
            raise InvalidState("multistream negotiation already failed")
        if self._done:
            raise InvalidState("multistream negotiation is over; feed the next layer instead")

    def _advance(self) -> None:
        try:
            next(self._parser)
        except StopIteration:
            self._done = True
        except TruncatedInput as exc:
            self._failed = True
            raise ConnectionClosed("connection ended during protocol negotiation") from exc
        except BaseException:
            self._failed = True
            raise

    def _agree(self, protocol: str) -> None:
        remainder = bytes(self._reader.buffer)
        self._reader.buffer.clear()
        self._events.append(ProtocolAgreed(protocol, remainder))

    def _expect_header(self) -> Parser[None]:
        header = yield from _read_message(self._reader)
        if header != HEADER:
            raise NegotiationFailed(f"remote speaks {header[:60]!r}, not {HEADER}")


class MultistreamClient(_Negotiation):
    """The dialler's side: proposes ``protocols`` in order until one is accepted.

    The header and first proposal are queued at construction: call :meth:`data_to_send` first.
    """

    def __init__(self, protocols: Sequence[str]) -> None:
        if not protocols:
            raise LocalProtocolError("multistream: nothing to propose")
        self._protocols = list(protocols)
        # Encoded up front, which also checks every length before anything is sent.
        self._proposals = [encode_message(protocol) for protocol in self._protocols]
        super().__init__()

    def _parse(self) -> Parser[None]:
        self._out.append(_HEADER_BYTES + self._proposals[0])
        yield  # construction stops here; the rest runs as bytes arrive
        yield from self._expect_header()
        for i, protocol in enumerate(self._protocols):
            if i:
                self._out.append(self._proposals[i])
            answer = yield from _read_message(self._reader)
            if answer == protocol:
                self._agree(protocol)
                return
            if answer != NA:
                raise RemoteProtocolError(f"multistream: answer {answer[:60]!r} to proposal {protocol!r}")
        raise NegotiationFailed(f"remote supports none of {', '.join(self._protocols)}")


class MultistreamServer(_Negotiation):
    """The listener's side: accepts the first proposal that ``supports`` approves.

    Args:
        supports: the protocols served, or a predicate over a proposed protocol ID.
    """

    def __init__(self, supports: Collection[str] | Callable[[str], bool]) -> None:
        self._supports: Callable[[str], bool] = supports if callable(supports) else supports.__contains__
        super().__init__()

    def _parse(self) -> Parser[None]:
        self._out.append(_HEADER_BYTES)
        yield
        yield from self._expect_header()
        for _ in range(MAX_PROPOSALS):
            proposal = yield from _read_message(self._reader)
            if proposal not in (NA, HEADER) and self._supports(proposal):
                self._out.append(encode_message(proposal))
                self._agree(proposal)
                return
            self._out.append(_NA_BYTES)  # also the answer to "ls", which we do not implement
        raise NegotiationFailed(f"dialler made {MAX_PROPOSALS} proposals without agreement")
