"""End-to-end encrypted uploads as the web sees them: public keys and envelope checks.

The web holds the workers' public keys only (``EPHEMERA_E2E_PUBLIC_KEYS``); the
private halves are read by the workers alone (``workers.e2e``). For an
envelope, the web checks what ciphertext allows (its framing, a known key id
that is not retired, one reply key per job) and stores it as it came: it is
already encrypted. The wire format is ``ephemera_client.envelope`` (docs/e2e.md).
"""

from __future__ import annotations

import base64
import time
from functools import cache

from django.conf import settings

from backend.ephemeral.crypto import KeyEntry, parse_key_entries
from backend.errors import CodedError
from backend.isotime import iso_utc
from ephemera_client import envelope
from ephemera_client.envelope import EnvelopeMalformed, UploadEnvelope


def parse_keys(text: str, *, setting: str) -> list[KeyEntry]:
    """An end-to-end keyring setting, newest first; a ``ConfigError`` names the fault."""
    return parse_key_entries(text, setting=setting, dated=True)


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
                "not_after": iso_utc(entry.not_after),
                "active": index == 0,
            }
            for index, entry in enumerate(live)
        ],
    }


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
