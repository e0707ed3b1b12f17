"""The libp2p Noise handshake payload: how each side proves its libp2p identity inside Noise.

Spec: libp2p/specs ``noise/README.md`` (r4), "The libp2p Handshake Payload" and "Static Key
Authentication".

Theory of operation
-------------------
Noise messages 2 and 3 each carry a ``NoiseHandshakePayload`` protobuf: ``identity_key`` (1, a
libp2p ``PublicKey``), ``identity_sig`` (2) and ``extensions`` (4, ``NoiseExtensions`` whose
field 2 lists stream muxers). The signature is the identity key's Ed25519 signature over
``noise-libp2p-static-key:`` ‖ the sender's X25519 static key, which binds the Noise session to the
libp2p identity. The caller signs beforehand (the signer may be remote and asynchronous) and
hands the finished signature to :class:`~glueberry.p2p.noise.NoiseProtocol`, which checks it
(:func:`check_identity_signature`) before sending it; :func:`authenticate` checks the remote's.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..exceptions import (
    InvalidHandshakePayload,
    InvalidKey,
    InvalidSignature,
    LocalProtocolError,
    PeerIDMismatch,
    RemoteProtocolError,
)
from . import _protobuf as pb
from .keys import PeerID, public_key_from_protobuf, public_key_to_protobuf, verify_signature
from .noise_handshake import DH_SIZE
from .signer import NOISE_SIGNATURE_PREFIX

__all__ = [
    "authenticate",
    "check_identity_signature",
    "decode_payload",
    "encode_payload",
    "noise_signature_payload",
]

_MAX_PAYLOAD_FIELDS = 1024


def noise_signature_payload(static_public_key: bytes) -> bytes:
    """What the libp2p identity key signs: ``noise-libp2p-static-key:`` ‖ the X25519 static key."""
    if len(static_public_key) != DH_SIZE:
        raise InvalidKey(f"X25519 public key must be 32 bytes, got {len(static_public_key)}")
    return NOISE_SIGNATURE_PREFIX + bytes(static_public_key)


def check_identity_signature(identity_key: bytes, signature: bytes, static_public_key: bytes) -> None:
    """Raise :class:`LocalProtocolError` unless ``signature`` is ``identity_key``'s signature over
    :func:`noise_signature_payload` of the static public key: our proof must verify before it is
    sent, or the remote rejects the handshake with nothing to say why."""
    payload = noise_signature_payload(static_public_key)
    if not verify_signature(bytes(identity_key), bytes(signature), payload):
        raise LocalProtocolError(
            "the identity signature does not verify: it must be the identity key's signature "
            "over noise_signature_payload(static public key)"
        )


def encode_payload(identity_key: bytes, signature: bytes, stream_muxers: Sequence[str]) -> bytes:
    payload = pb.encode_bytes_field(1, public_key_to_protobuf(identity_key))
    payload += pb.encode_bytes_field(2, signature)
    if stream_muxers:
        extensions = b"".join(pb.encode_bytes_field(2, name.encode()) for name in stream_muxers)
        payload += pb.encode_bytes_field(4, extensions)
    return payload


def decode_payload(data: bytes) -> tuple[bytes, bytes, tuple[str, ...]]:
    """Return (raw Ed25519 identity key, signature, stream muxers); unknown fields are skipped.

    Raises:
        HandshakeError: empty or malformed payload, no identity key, or not an Ed25519 key.
    """
    if not data:
        raise InvalidHandshakePayload("the remote's Noise handshake payload is empty: no identity was sent")
    try:
        fields = pb.decode_fields(data, max_fields=_MAX_PAYLOAD_FIELDS)
        key_proto = pb.single_bytes(fields, 1)
        signature = pb.single_bytes(fields, 2) or b""
        # A repeated occurrence of a message field merges: its repeated fields concatenate.
        muxers: list[str] = []
        for extensions in pb.repeated_bytes(fields, 4):
            ext_fields = pb.decode_fields(extensions, max_fields=_MAX_PAYLOAD_FIELDS)
            for raw in pb.repeated_bytes(ext_fields, 2):
                try:
                    muxers.append(raw.decode())
                except UnicodeDecodeError:
                    continue  # proto2 does not validate strings; a name we cannot read matches nothing
    except RemoteProtocolError as exc:
        raise InvalidHandshakePayload(f"malformed Noise handshake payload: {exc}") from exc
    if not key_proto:
        raise InvalidHandshakePayload("the remote's Noise handshake payload has no identity key")
    try:
        identity_key = public_key_from_protobuf(key_proto)
    except InvalidKey as exc:
        raise InvalidHandshakePayload(f"the remote's identity key is not usable: {exc}") from exc
    return identity_key, signature, tuple(muxers)


def authenticate(
    payload: bytes, remote_static: bytes, expected_peer: PeerID | None
) -> tuple[PeerID, bytes, tuple[str, ...]]:
    """Check the remote's payload (spec: "Static Key Authentication"): its identity key must have
    signed its static key, and it must be the peer we dialled.

    Return (remote peer ID, raw Ed25519 identity key, stream muxers).

    Raises:
        HandshakeError: see :func:`decode_payload`.
        InvalidSignature: the signature does not verify.
        PeerIDMismatch: the remote is not ``expected_peer``.
    """
    identity_key, signature, muxers = decode_payload(payload)
    peer_id = PeerID.from_public_key(identity_key)
    if not verify_signature(identity_key, signature, noise_signature_payload(remote_static)):
        raise InvalidSignature(
            "the remote's identity signature over its Noise static key does not verify",
            peer_id=str(peer_id),
        )
    if expected_peer is not None and peer_id != expected_peer:
        raise PeerIDMismatch(
            f"dialled {expected_peer} but the remote proved {peer_id}",
            peer_id=str(expected_peer),
        )
    return peer_id, identity_key, muxers
