"""Envelope encryption of every payload that Ephemera keeps, however briefly.

Each payload gets a fresh random 256-bit data key and is sealed with AES-256-GCM.
The data key is wrapped, also with AES-256-GCM, under the active key-encryption
key (KEK) of the keyring, and the blob names the KEK that wrapped it, so KEKs
can rotate while jobs are in flight. Both layers carry associated data that
binds the ciphertext to its purpose and job: a blob moved under another job's
key, or read for another purpose, does not open.

Blob layout (all lengths in bytes)::

    b"EPH1" | len(kid):1 | kid | wrap_nonce:12 | wrapped_key:48 | nonce:12 | ciphertext+tag
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from backend.env import ConfigError

MAGIC = b"EPH1"
NONCE_BYTES = 12
KEY_BYTES = 32
WRAPPED_KEY_BYTES = KEY_BYTES + 16
_KID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


class KeyringError(ConfigError, ValueError):
    """A keyring setting is unusable; the message says how to fix it."""


class DecryptionError(Exception):
    """A blob that is malformed, tampered with, bound elsewhere or under an unknown key."""


@dataclass(frozen=True)
class KeyEntry:
    """One entry of a keyring setting: ``kid:base64-32-bytes``, with ``@not-after`` if dated."""

    id: str
    key: bytes
    #: When the key retires (epoch seconds); None while it has no end.
    not_after: float | None = None

    def retired(self, now: float) -> bool:
        return self.not_after is not None and now >= self.not_after


def parse_key_entries(text: str, *, setting: str, dated: bool = False) -> list[KeyEntry]:
    """The entries of a keyring setting in their order, newest first.

    Every keyring of the service (``EPHEMERA_KEYS``, the end-to-end keys) is
    written this way. With ``dated`` an entry may end in ``@<ISO-8601>``, when
    the key retires.
    """
    form = "kid:base64[@not-after]" if dated else "kid:base64"
    entries: list[KeyEntry] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        head, at, until = item.partition("@") if dated else (item, "", "")
        kid, sep, encoded = head.partition(":")
        if not sep or not _KID.match(kid):
            raise KeyringError(f"each {setting} entry must be {form}, kid [A-Za-z0-9_.-]")
        if any(entry.id == kid for entry in entries):
            raise KeyringError(f"{setting} names key id {kid!r} twice")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise KeyringError(f"{setting} key {kid!r} is not valid base64") from None
        if len(key) != KEY_BYTES:
            raise KeyringError(f"{setting} key {kid!r} must be 32 bytes, not {len(key)}")
        entries.append(KeyEntry(kid, key, _instant(until, setting=setting) if at else None))
    return entries


def _instant(text: str, *, setting: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise KeyringError(f"{setting}: {text!r} is not an ISO-8601 date or time") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@dataclass(frozen=True)
class Keyring:
    """Key-encryption keys by id; ``active`` encrypts, all of them decrypt."""

    active: str
    keys: dict[str, bytes]

    @classmethod
    def parse(cls, text: str) -> Keyring:
        """Parse ``kid:base64-32-bytes[,kid:base64-32-bytes...]``."""
        entries = parse_key_entries(text, setting="EPHEMERA_KEYS")
        if not entries:
            raise KeyringError(
                "EPHEMERA_KEYS holds no key; generate one with: openssl rand -base64 32"
            )
        return cls(active=entries[0].id, keys={entry.id: entry.key for entry in entries})

    def wrap(self, data_key: bytes, *, context: bytes) -> tuple[str, bytes, bytes]:
        nonce = secrets.token_bytes(NONCE_BYTES)
        kid = self.active
        wrapped = AESGCM(self.keys[kid]).encrypt(nonce, data_key, _wrap_aad(kid, context))
        return kid, nonce, wrapped

    def unwrap(self, blob: SealedBlob, *, context: bytes) -> bytes:
        kek = self.keys.get(blob.kid)
        if kek is None:
            raise DecryptionError(f"blob wrapped under unknown key id {blob.kid!r}")
        try:
            return AESGCM(kek).decrypt(
                blob.wrap_nonce, blob.wrapped_key, _wrap_aad(blob.kid, context)
            )
        except InvalidTag:
            raise DecryptionError("data key does not unwrap: tampered or bound elsewhere") from None


@dataclass(frozen=True)
class SealedBlob:
    kid: str
    wrap_nonce: bytes
    wrapped_key: bytes
    nonce: bytes
    ciphertext: bytes


def _wrap_aad(kid: str, context: bytes) -> bytes:
    return b"ephemera/v1/wrap|" + kid.encode() + b"|" + context


def _context(purpose: str, subject: str) -> bytes:
    return f"ephemera/v1|{purpose}:{subject}".encode()


def seal(plaintext: bytes, *, keyring: Keyring, purpose: str, subject: str) -> bytes:
    """Encrypt under a fresh data key, bound to ``purpose:subject``."""
    context = _context(purpose, subject)
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = secrets.token_bytes(NONCE_BYTES)
    ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, context)
    kid, wrap_nonce, wrapped = keyring.wrap(data_key, context=context)
    kid_bytes = kid.encode()
    return b"".join(
        (MAGIC, bytes([len(kid_bytes)]), kid_bytes, wrap_nonce, wrapped, nonce, ciphertext)
    )


def parse(blob: bytes) -> SealedBlob:
    """Split a blob into its parts, checking only the framing."""
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 1:
        raise DecryptionError("not an Ephemera blob")
    kid_len = blob[len(MAGIC)]
    start = len(MAGIC) + 1
    minimum = start + kid_len + NONCE_BYTES + WRAPPED_KEY_BYTES + NONCE_BYTES + 16
    if kid_len == 0 or len(blob) < minimum:
        raise DecryptionError("truncated Ephemera blob")
    kid = blob[start : start + kid_len].decode("ascii", errors="replace")
    pos = start + kid_len
    wrap_nonce = blob[pos : pos + NONCE_BYTES]
    pos += NONCE_BYTES
    wrapped_key = blob[pos : pos + WRAPPED_KEY_BYTES]
    pos += WRAPPED_KEY_BYTES
    nonce = blob[pos : pos + NONCE_BYTES]
    pos += NONCE_BYTES
    return SealedBlob(kid, wrap_nonce, wrapped_key, nonce, blob[pos:])


def open_sealed(blob: bytes, *, keyring: Keyring, purpose: str, subject: str) -> bytes:
    """Decrypt a blob sealed for exactly this ``purpose:subject``."""
    parts = parse(blob)
    context = _context(purpose, subject)
    data_key = keyring.unwrap(parts, context=context)
    try:
        return AESGCM(data_key).decrypt(parts.nonce, parts.ciphertext, context)
    except InvalidTag:
        raise DecryptionError("payload does not decrypt: tampered or bound elsewhere") from None


@cache
def keyring() -> Keyring:
    """The process's keyring, parsed once from ``EPHEMERA_KEYS``."""
    from django.conf import settings

    return Keyring.parse(settings.EPHEMERA_KEYS)
