"""Go glueberry's protocol version (``version.go``) for applications to exchange in their own
handshake. Nothing on the wire carries it (PROTOCOL.md §9)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ProtocolVersion"]


@dataclass(frozen=True, slots=True, order=True)
class ProtocolVersion:
    major: int
    minor: int
    patch: int

    @classmethod
    def current(cls) -> ProtocolVersion:
        """The Go module's version whose wire behaviour we match."""
        return cls(1, 2, 9)

    @classmethod
    def parse(cls, text: str) -> ProtocolVersion:
        parts = text.split(".")
        if len(parts) != 3 or not all(p.isdigit() and len(p) <= 3 for p in parts):
            raise ValueError(f"not a version: {text[:20]!r} (expected MAJOR.MINOR.PATCH)")
        major, minor, patch = (int(p) for p in parts)
        if max(major, minor, patch) > 255:
            raise ValueError("version numbers are 0-255 (Go uses uint8)")
        return cls(major, minor, patch)

    def compatible(self, other: ProtocolVersion) -> bool:
        """Go's ``Compatible``: same major, and the other's minor not newer than ours."""
        return self.major == other.major and other.minor <= self.minor

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"
