"""Webhook secrets: printed once, sealed at rest, rotated with two valid at once."""

from __future__ import annotations

import base64
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from backend.clients.models import ApiClient, WebhookSecret
from backend.clients.services import api_key_create
from backend.clients.webhook_secrets import webhook_secrets
from backend.ephemeral.crypto import DecryptionError

pytestmark = pytest.mark.django_db


def issue(*args: str) -> str:
    out = StringIO()
    call_command("webhook_secret", *args, stdout=out, stderr=StringIO())
    return out.getvalue().strip()


def test_it_prints_a_new_secret_alone_and_stores_it_sealed() -> None:
    api_key_create(name="alice")
    secret = issue("--name", "alice")

    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    (row,) = WebhookSecret.objects.filter(client__name="alice")
    at_rest = base64.b64decode(row.sealed)
    assert secret.encode() not in at_rest and base64.b64decode(secret[6:]) not in at_rest
    assert secret[6:] not in row.sealed
    assert webhook_secrets(client_id=row.client_id) == [secret]


def test_a_second_secret_needs_rotate_and_keeps_two_valid() -> None:
    api_key_create(name="alice")
    first = issue("--name", "alice")
    with pytest.raises(CommandError, match="--rotate"):
        issue("--name", "alice")
    second = issue("--name", "alice", "--rotate")
    third = issue("--name", "alice", "--rotate")

    client = ApiClient.objects.get(name="alice")
    assert webhook_secrets(client_id=client.pk) == [third, second]
    assert first not in webhook_secrets(client_id=client.pk)
    assert WebhookSecret.objects.filter(client=client).count() == 2


def test_a_secret_is_bound_to_its_client() -> None:
    api_key_create(name="alice")
    api_key_create(name="bob")
    issue("--name", "alice")
    alice_row = WebhookSecret.objects.get(client__name="alice")
    bob = ApiClient.objects.get(name="bob")
    # Moved to another client's row, the sealed secret does not open.
    WebhookSecret.objects.create(client=bob, sealed=alice_row.sealed)
    with pytest.raises(DecryptionError, match="bound elsewhere"):
        webhook_secrets(client_id=bob.pk)


def test_an_unknown_client_is_refused_with_guidance() -> None:
    with pytest.raises(CommandError, match="create_api_key"):
        issue("--name", "nobody")
