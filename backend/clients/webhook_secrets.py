"""Issuing, rotating and reading the webhook signing secrets of API clients."""

from __future__ import annotations

import base64

from django.db import transaction

from backend.clients.models import ApiClient, WebhookSecret
from backend.ephemeral import crypto
from backend.webhooks import signing

#: Secrets valid at once: the newest and, during a rotation, the one before it.
VALID_AT_ONCE = 2


class SecretExists(ValueError):
    """The client has a secret already; a new one is a rotation."""


def _purpose_subject(client_id: int) -> dict[str, str]:
    return {"purpose": "whsec", "subject": f"client:{client_id}"}


@transaction.atomic
def webhook_secret_issue(*, name: str, rotate: bool = False) -> str:
    """A new secret for the client called ``name``, returned once in plaintext.

    Without ``rotate`` the client must have none yet. With it, the new secret
    joins the newest existing one (both sign until the next rotation) and any
    older one is deleted.
    """
    client = ApiClient.objects.select_for_update().get(name=name)
    existing = list(WebhookSecret.objects.filter(client=client))
    if existing and not rotate:
        raise SecretExists(f"client {name!r} has a webhook secret; use --rotate for a new one")
    secret = signing.new_secret()
    blob = crypto.seal(secret.encode(), keyring=crypto.keyring(), **_purpose_subject(client.pk))
    WebhookSecret.objects.create(client=client, sealed=base64.b64encode(blob).decode())
    for old in existing[VALID_AT_ONCE - 1 :]:
        old.delete()
    return secret


def webhook_secrets(*, client_id: int) -> list[str]:
    """The client's valid secrets, newest first (empty when it has none)."""
    rows = WebhookSecret.objects.filter(client_id=client_id)[:VALID_AT_ONCE]
    return [
        crypto.open_sealed(
            base64.b64decode(row.sealed), keyring=crypto.keyring(), **_purpose_subject(client_id)
        ).decode()
        for row in rows
    ]


def has_webhook_secret(*, client_id: int) -> bool:
    return WebhookSecret.objects.filter(client_id=client_id).exists()
