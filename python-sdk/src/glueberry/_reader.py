"""Incremental byte reader for parsers written as generators.

A parser is a generator that ``yield``\\ s whenever it needs more bytes and ``return``\\ s its result,
so a message split at any byte boundary needs no special case (the shape of python-websockets'
``streams.py``)::

    def parse_frame(reader: StreamReader) -> Parser[Frame]:
        header = yield from reader.read_exact(12)
        ...

The owner feeds bytes with :meth:`StreamReader.feed_data` and then resumes the generator with
``next()``; a ``StopIteration`` carries the parsed value.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TypeVar

from .exceptions import FrameTooLarge, RemoteProtocolError

__all__ = ["Parser", "StreamReader", "TruncatedInput"]

T = TypeVar("T")
Parser = Generator[None, None, T]


class TruncatedInput(EOFError):
    """The stream ended before a parser got the bytes it needed."""


class StreamReader:
    """A byte buffer that parsers read from; bounded by what its owner feeds it."""

    __slots__ = ("buffer", "eof")

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.eof = False

    def feed_data(self, data: bytes | bytearray | memoryview) -> None:
        if self.eof:
            raise RemoteProtocolError("data received after end of stream")
        self.buffer += data

    def feed_eof(self) -> None:
        self.eof = True

    def __len__(self) -> int:
        return len(self.buffer)

    def read_exact(self, n: int) -> Parser[bytes]:
        """Read exactly ``n`` bytes. Raises :class:`TruncatedInput` if the stream ends first."""
        while len(self.buffer) < n:
            if self.eof:
                raise TruncatedInput(f"stream ended with {len(self.buffer)} of {n} bytes")
            yield
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def read_line(self, max_length: int) -> Parser[bytes]:
        """Read up to and including ``\\n``; the line may be at most ``max_length`` bytes long."""
        start = 0
        while True:
            end = self.buffer.find(b"\n", start)
            if end >= 0:
                break
            start = len(self.buffer)
            if start > max_length:
                raise FrameTooLarge(f"line longer than {max_length} bytes")
            if self.eof:
                raise TruncatedInput("stream ended inside a line")
            yield
        if end + 1 > max_length:
            raise FrameTooLarge(f"line longer than {max_length} bytes")
        data = bytes(self.buffer[: end + 1])
        del self.buffer[: end + 1]
        return data

    def at_eof(self) -> Parser[bool]:
        """Wait until a byte is buffered (False) or the stream ended with nothing left (True)."""
        while not self.buffer:
            if self.eof:
                return True
            yield
        return False

    def read_uvarint(self, *, max_bytes: int = 10, minimal: bool = False) -> Parser[int]:
        """Read an unsigned LEB128 varint of at most ``max_bytes`` bytes.

        With ``max_bytes=10`` a 10th byte above 1 overflows 64 bits and is rejected, as Go's
        ``binary.Uvarint`` does. With ``minimal=True`` a redundant trailing zero group is rejected
        (multiformats unsigned-varint); otherwise it is accepted (cramberry, Go's reader).
        """
        value = 0
        shift = 0
        for i in range(max_bytes):
            while not self.buffer:
                if self.eof:
                    raise TruncatedInput("stream ended inside a varint")
                yield
            byte = self.buffer[0]
            del self.buffer[:1]
            if i == 9 and byte > 1:
                raise RemoteProtocolError("varint overflows 64 bits")
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                if minimal and byte == 0 and i > 0:
                    raise RemoteProtocolError("varint is not minimally encoded")
                return value
            shift += 7
        raise RemoteProtocolError(f"varint longer than {max_bytes} bytes")
