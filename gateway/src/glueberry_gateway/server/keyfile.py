"""The gateway's identity file: an Ed25519 seed as hex, readable by its owner only
(``identity_key_file`` in the settings; written by ``glueberry-gateway keygen``)."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from glueberry.exceptions import InvalidKey
from glueberry.p2p.keys import private_key_from_bytes

__all__ = ["read_key_file", "write_key_file"]


def write_key_file(path: Path, key: Ed25519PrivateKey, *, force: bool = False) -> None:
    """Write ``key``'s 32-byte seed as 64 hex characters, readable by the owner only (0600).

    Raises:
        FileExistsError: ``path`` exists and ``force`` is false.
    """
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file (--force) keeps its old mode otherwise
        os.write(fd, seed.hex().encode("ascii") + b"\n")
    finally:
        os.close(fd)


def read_key_file(path: Path) -> Ed25519PrivateKey:
    """Read a key written by :func:`write_key_file` (the format ``identity_key_file`` expects).

    Raises:
        OSError: the file cannot be read.
        InvalidKey: it does not hold 64 (or 128, Go's seed ‖ public key) hex characters.
    """
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise InvalidKey(f"{path} is not a hex-encoded Ed25519 key") from None
    return private_key_from_bytes(raw)
