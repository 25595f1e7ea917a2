"""Issuing, checking and revoking API keys."""

from __future__ import annotations

import hmac
import re
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from backend.clients.models import ApiClient, ApiKey, Tier, hash_secret

KEY_PATTERN = re.compile(r"^ek_([0-9a-f]{8})_([A-Za-z0-9_-]{43})$")
#: Record last use at most this often, so a busy key does not write on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@transaction.atomic
def api_key_create(
    *,
    name: str,
    tier: str = Tier.FREE,
    label: str = "",
    expires_at: datetime | None = None,
    allow_face_verify: bool | None = None,
) -> tuple[ApiKey, str]:
    """Issue a key for the client called ``name``, creating the client if needed.

    ``allow_face_verify`` sets the client's face_verify flag; None leaves an
    existing client's as it is (a new client starts without it).
    """
    if tier not in Tier.values:
        raise ValueError(f"unknown tier {tier!r}; use one of {', '.join(Tier.values)}")
    client, _ = ApiClient.objects.get_or_create(name=name, defaults={"tier": tier})
    changed: dict[str, object] = {"tier": tier}
    if allow_face_verify is not None:
        changed["face_verify_enabled"] = allow_face_verify
    # Update only what differs, so a new key does not rewrite the whole row.
    changed = {k: v for k, v in changed.items() if getattr(client, k) != v}
    if changed:
        for field, value in changed.items():
            setattr(client, field, value)
        client.save(update_fields=list(changed))
    return ApiKey.issue(client=client, label=label, expires_at=expires_at)


def api_key_authenticate(*, presented: str) -> tuple[ApiClient, ApiKey] | None:
    """The client and key for a presented key, or None for any kind of miss.

    Unknown prefix, wrong secret, revoked, expired and inactive all look the same
    to the caller, so the answer tells an attacker nothing about which it was.
    """
    match = KEY_PATTERN.match(presented)
    if match is None:
        return None
    prefix, secret = match.groups()
    key = ApiKey.objects.select_related("client").filter(prefix=prefix).first()
    expected = key.secret_hash if key else hash_secret("")
    if not hmac.compare_digest(expected, hash_secret(secret)) or key is None:
        return None
    now = timezone.now()
    if not key.is_usable(now) or not key.client.is_active:
        return None
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key.client, key


def api_key_revoke(*, prefix: str) -> ApiKey:
    """Revoke at once: the next request with this key is refused."""
    key = ApiKey.objects.get(prefix=prefix)
    key.revoke()
    return key
