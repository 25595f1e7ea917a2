"""The wire format of end-to-end encrypted jobs (docs/e2e.md), for both ends.

The client seals an upload to a worker's public key and opens the result with
its one-time reply key; the service parses envelopes (web), opens uploads and
seals results (worker). Both import this one module, so the byte layout, the
``info`` and ``aad`` strings and the suite are defined once.

HPKE (RFC 9180) comes from ``pyhpke``, which builds it on ``cryptography``'s
primitives: base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pyhpke import AEADId, CipherSuite, KDFId, KEMId
from pyhpke.kem_key import KEMKeyPair
from pyhpke.kem_key_interface import KEMKeyInterface

SUITE = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES256_GCM)
#: The suite's registry ids (RFC 9180 section 7), as ``GET /api/v1/keys`` publishes them.
SUITE_IDS = {"mode": "base", "kem_id": 0x0020, "kdf_id": 0x0001, "aead_id": 0x0002}
CONTENT_TYPE = "application/vnd.ephemera.hpke"
UPLOAD_MAGIC = b"EPHK"
RESULT_MAGIC = b"EPHR"
VERSION = 1
KEY_BYTES = 32
TAG_BYTES = 16
KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")

Role = Literal["image", "reference"]


class EnvelopeMalformed(ValueError):
    """The bytes start like an envelope, but its header is broken or truncated."""


class EnvelopeRejected(Exception):
    """A well-formed envelope that does not open: tampered, or made for something else."""


@dataclass(frozen=True)
class UploadEnvelope:
    key_id: str
    #: The client's one-time X25519 public key: the result is sealed to it.
    reply_key: bytes
    enc: bytes
    ciphertext: bytes
    #: The bytes the seal authenticates as ``aad``: magic, version, key id, reply key.
    header: bytes


def is_envelope(data: bytes) -> bool:
    return data[: len(UPLOAD_MAGIC)] == UPLOAD_MAGIC


def upload_info(*, service: str, task: str, role: Role) -> bytes:
    return f"ephemera/v1/upload|{service}|{task}|{role}".encode()


def result_info(*, service: str, task: str, job_id: str) -> bytes:
    return f"ephemera/v1/result|{service}|{task}|{job_id}".encode()


def parse_upload(data: bytes) -> UploadEnvelope:
    """Split an upload envelope, checking only what ciphertext allows (its framing)."""
    if not is_envelope(data):
        raise EnvelopeMalformed("not an Ephemera envelope")
    if len(data) < 6 or data[4] != VERSION:
        raise EnvelopeMalformed("unknown envelope version")
    id_length = data[5]
    header_end = 6 + id_length + KEY_BYTES
    if len(data) < header_end + KEY_BYTES + TAG_BYTES:
        raise EnvelopeMalformed("truncated envelope")
    key_id = data[6 : 6 + id_length].decode("ascii", errors="replace")
    if not KEY_ID.match(key_id):
        raise EnvelopeMalformed("malformed key id")
    return UploadEnvelope(
        key_id=key_id,
        reply_key=data[6 + id_length : header_end],
        enc=data[header_end : header_end + KEY_BYTES],
        ciphertext=data[header_end + KEY_BYTES :],
        header=data[:header_end],
    )


def seal_upload(
    plaintext: bytes,
    *,
    key_id: str,
    public_key: bytes,
    reply_key: bytes,
    service: str,
    task: str,
    role: Role = "image",
) -> bytes:
    """An upload envelope that only the holder of ``public_key``'s private half opens."""
    if not KEY_ID.match(key_id):
        raise ValueError("malformed key id")
    header = b"".join(
        (UPLOAD_MAGIC, bytes([VERSION, len(key_id)]), key_id.encode("ascii"), reply_key)
    )
    enc, context = SUITE.create_sender_context(
        _public(public_key), info=upload_info(service=service, task=task, role=role)
    )
    return header + enc + context.seal(plaintext, aad=header)


def open_upload(
    envelope: UploadEnvelope, *, private_key: bytes, service: str, task: str, role: Role
) -> bytes:
    """The upload's bytes; ``EnvelopeRejected`` when the envelope does not open as this."""
    try:
        context = SUITE.create_recipient_context(
            envelope.enc,
            SUITE.kem.deserialize_private_key(private_key),
            info=upload_info(service=service, task=task, role=role),
        )
        return context.open(envelope.ciphertext, aad=envelope.header)
    except Exception:
        # pyhpke raises its own errors (and ValueError for a low-order point):
        # every one of them means the same thing to a caller.
        raise EnvelopeRejected("the envelope does not open") from None


def seal_result(
    plaintext: bytes, *, reply_key: bytes, service: str, task: str, job_id: str
) -> bytes:
    """A result envelope for the client that holds the reply key's private half."""
    header = RESULT_MAGIC + bytes([VERSION])
    try:
        enc, context = SUITE.create_sender_context(
            _public(reply_key), info=result_info(service=service, task=task, job_id=job_id)
        )
    except Exception:
        raise EnvelopeRejected("the reply key is not a usable X25519 public key") from None
    return header + enc + context.seal(plaintext, aad=header)


def open_result(
    data: bytes, *, reply_private: bytes, service: str, task: str, job_id: str
) -> bytes:
    """The result's bytes, opened with the one-time reply key."""
    header = RESULT_MAGIC + bytes([VERSION])
    start = len(header)
    if data[:start] != header or len(data) < start + KEY_BYTES + TAG_BYTES:
        raise EnvelopeMalformed("not an Ephemera result envelope")
    try:
        context = SUITE.create_recipient_context(
            data[start : start + KEY_BYTES],
            SUITE.kem.deserialize_private_key(reply_private),
            info=result_info(service=service, task=task, job_id=job_id),
        )
        return context.open(data[start + KEY_BYTES :], aad=header)
    except Exception:
        raise EnvelopeRejected("the result does not open with this reply key") from None


@dataclass(frozen=True)
class KeyPair:
    """A raw X25519 key pair: a worker key, or a client's one-time reply key."""

    private: bytes
    public: bytes

    @classmethod
    def generate(cls) -> KeyPair:
        pair: KEMKeyPair = SUITE.kem.derive_key_pair(secrets.token_bytes(KEY_BYTES))
        return cls(pair.private_key.to_private_bytes(), pair.public_key.to_public_bytes())

    @classmethod
    def from_private(cls, private: bytes) -> KeyPair:
        public = X25519PrivateKey.from_private_bytes(private).public_key()
        return cls(private, public.public_bytes_raw())


def _public(raw: bytes) -> KEMKeyInterface:
    return SUITE.kem.deserialize_public_key(raw)
