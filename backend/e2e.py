"""End-to-end encrypted uploads as the web sees them: public keys and envelope checks.

The web holds the workers' public keys only (``EPHEMERA_E2E_PUBLIC_KEYS``); the
private halves are read by the workers alone (``workers.e2e``). For an
envelope, the web checks what ciphertext allows (its framing, a known key id
that is not retired, one reply key per job) and stores it as it came: it is
already encrypted. The wire format is ``ephemera_client.envelope`` (docs/e2e.md).
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

from django.conf import settings

from backend.env import ConfigError
from backend.errors import CodedError
from ephemera_client import envelope
from ephemera_client.envelope import EnvelopeMalformed, UploadEnvelope


@dataclass(frozen=True)
class KeyEntry:
    """One key of a keyring setting: ``kid:base64-32-bytes[@not-after]``."""

    id: str
    key: bytes
    #: When the key retires (epoch seconds); None while it has no end.
    not_after: float | None = None

    def retired(self, now: float) -> bool:
        return self.not_after is not None and now >= self.not_after


def parse_keys(text: str, *, setting: str) -> list[KeyEntry]:
    """The entries of a keyring setting, newest first; ``ConfigError`` names the fault."""
    entries: list[KeyEntry] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        head, _, until = item.partition("@")
        kid, sep, encoded = head.partition(":")
        if not sep or not envelope.KEY_ID.match(kid):
            raise ConfigError(f"each {setting} entry must be kid:base64[@not-after]")
        if any(entry.id == kid for entry in entries):
            raise ConfigError(f"{setting} names key id {kid!r} twice")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{setting} key {kid!r} is not valid base64") from None
        if len(key) != envelope.KEY_BYTES:
            raise ConfigError(f"{setting} key {kid!r} must be 32 bytes, not {len(key)}")
        entries.append(KeyEntry(kid, key, _instant(until, setting=setting) if until else None))
    return entries


def _instant(text: str, *, setting: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{setting}: {text!r} is not an ISO-8601 date or time") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@cache
def public_keys() -> list[KeyEntry]:
    """The workers' public keys, as the web may publish them."""
    return parse_keys(settings.EPHEMERA_E2E_PUBLIC_KEYS, setting="EPHEMERA_E2E_PUBLIC_KEYS")


def published(now: float | None = None) -> dict[str, object]:
    """The body of ``GET /api/v1/keys``: the suite and the keys not yet retired."""
    moment = time.time() if now is None else now
    live = [entry for entry in public_keys() if not entry.retired(moment)]
    return {
        "suite": envelope.SUITE_IDS,
        "service": settings.EPHEMERA_E2E_SERVICE,
        "content_type": envelope.CONTENT_TYPE,
        "keys": [
            {
                "id": entry.id,
                "public_key": base64.b64encode(entry.key).decode("ascii"),
                "not_after": _iso(entry.not_after),
                "active": index == 0,
            }
            for index, entry in enumerate(live)
        ],
    }


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat().replace("+00:00", "Z")


def invalid_envelope(detail: str) -> CodedError:
    return CodedError(
        "invalid_envelope",
        f"The encrypted upload is malformed ({detail}); see GET /api/v1/keys and docs/e2e.md.",
        status=400,
    )


def checked_envelopes(image: bytes, reference: bytes | None) -> list[UploadEnvelope]:
    """The job's envelopes after the web's checks; a ``CodedError`` says what is wrong."""
    parts = [image] if reference is None else [image, reference]
    if not all(envelope.is_envelope(part) for part in parts):
        raise invalid_envelope("a job's parts are either all encrypted or all plain")
    try:
        parsed = [envelope.parse_upload(part) for part in parts]
    except EnvelopeMalformed as exc:
        raise invalid_envelope(str(exc)) from None
    if len({part.reply_key for part in parsed}) != 1:
        raise invalid_envelope("the parts name different reply keys")
    for part in parsed:
        _check_key_id(part.key_id)
    return parsed


def _check_key_id(key_id: str) -> None:
    entry = next((entry for entry in public_keys() if entry.id == key_id), None)
    if entry is None:
        raise CodedError(
            "unknown_key",
            f"The upload is encrypted to key {key_id!r}, which this service does not publish; "
            "fetch GET /api/v1/keys and encrypt again.",
        )
    if entry.retired(time.time()):
        raise CodedError(
            "key_retired",
            f"Key {key_id!r} is retired; fetch GET /api/v1/keys and encrypt to the active key.",
        )
