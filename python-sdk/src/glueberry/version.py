"""Versions: this package's own (``__version__``, e.g. in the libp2p agent version), and Go
glueberry's protocol version (``version.go``) for applications to exchange in their own handshake.
No Glueberry message carries either (PROTOCOL.md §9)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ProtocolVersion", "__version__"]

# Kept here, in a module that imports nothing of ours, so that any module may read it without
# importing the package root (which imports nearly everything).
__version__ = "0.1.0"


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
