"""End-to-end encrypted jobs as a worker sees them: the private keys, open and reply.

``EPHEMERA_E2E_PRIVATE_KEYS`` (``kid:base64[,...]``) is mounted into worker pods
only and read here, never by Django's settings, so no web process ever holds
it. The job process opens the envelope in its own memory, then checks the
bytes as the web checks a plain upload (``workers.pipeline``), and seals the
result to the client's one-time reply key.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from django.conf import settings

from backend.devsecrets import dev_e2e_private_keys
from backend.e2e import parse_keys, public_keys
from backend.env import ConfigError, envsecret
from backend.ephemeral.records import JobRecord
from backend.errors import job_error
from ephemera_client import envelope
from ephemera_client.envelope import (
    EnvelopeMalformed,
    EnvelopeRejected,
    KeyPair,
    Role,
    UploadEnvelope,
)

SETTING = "EPHEMERA_E2E_PRIVATE_KEYS"


@cache
def private_keys() -> dict[str, bytes]:
    """The node's private keys by id; checked against the public keys it is given."""
    text = envsecret(SETTING)
    if text is None and not settings.PRODUCTION:
        text = dev_e2e_private_keys(settings.VAR_DIR)
    entries = {entry.id: entry.key for entry in parse_keys(text or "", setting=SETTING)}
    published = public_keys()
    if published and published[0].id not in entries:
        raise ConfigError(
            f"EPHEMERA_E2E_PUBLIC_KEYS publishes {published[0].id!r} as the active key, and "
            f"{SETTING} lacks its private half: every encrypted job would fail"
        )
    for public in published:
        private = entries.get(public.id)
        if private is not None and KeyPair.from_private(private).public != public.key:
            raise ConfigError(
                f"{SETTING} key {public.id!r} is not the private half of the public key "
                "EPHEMERA_E2E_PUBLIC_KEYS publishes under that id"
            )
    return entries


@dataclass(frozen=True)
class Opened:
    image: bytes
    reference: bytes | None
    #: The client's one-time public key, read from the authenticated envelope header.
    reply_key: bytes


def open_uploads(record: JobRecord, image: bytes, reference: bytes | None) -> Opened:
    """The job's uploads in plaintext; ``envelope_rejected`` when one does not open."""
    first = _parsed(image)
    second = None if reference is None else _parsed(reference)
    return Opened(
        _open(first, record, role="image"),
        None if second is None else _open(second, record, role="reference"),
        first.reply_key,
    )


def _parsed(data: bytes) -> UploadEnvelope:
    try:
        return envelope.parse_upload(data)
    except EnvelopeMalformed:
        raise job_error("envelope_rejected") from None


def _open(parsed: UploadEnvelope, record: JobRecord, *, role: Role) -> bytes:
    private = private_keys().get(parsed.key_id)
    try:
        if private is None:
            raise EnvelopeRejected("no private key for this key id")
        return envelope.open_upload(
            parsed,
            private_key=private,
            service=settings.EPHEMERA_E2E_SERVICE,
            task=record.task,
            role=role,
        )
    except EnvelopeRejected:
        raise job_error("envelope_rejected") from None


def seal_result(data: bytes, record: JobRecord, *, reply_key: bytes) -> bytes:
    """The result, sealed to the client's reply key: only the client opens it."""
    try:
        return envelope.seal_result(
            data,
            reply_key=reply_key,
            service=settings.EPHEMERA_E2E_SERVICE,
            task=record.task,
            job_id=record.id,
        )
    except EnvelopeRejected:
        raise job_error("envelope_rejected") from None
