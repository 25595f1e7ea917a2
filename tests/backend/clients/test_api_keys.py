"""API keys: hashed at rest, shown once, rotated, revoked and expired."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from backend.clients.models import ApiClient, ApiKey, hash_secret
from backend.clients.services import api_key_authenticate, api_key_create

pytestmark = pytest.mark.django_db


def test_a_key_is_stored_only_as_a_hash() -> None:
    key, plaintext = api_key_create(name="alice")
    secret = plaintext.split("_", 2)[2]
    row = ApiKey.objects.get(pk=key.pk)
    assert row.secret_hash == hash_secret(secret)
    assert secret not in str(vars(row))


def test_create_api_key_prints_the_key_alone_on_stdout() -> None:
    out, err = StringIO(), StringIO()
    call_command("create_api_key", "--name", "alice", "--tier", "standard", stdout=out, stderr=err)
    printed = out.getvalue().strip()
    assert printed.startswith("ek_") and "\n" not in printed
    client, _ = api_key_authenticate(presented=printed)
    assert (client.name, client.tier) == ("alice", "standard")
    assert printed not in err.getvalue()


def test_a_client_can_rotate_keys_and_revoke_the_old_one() -> None:
    _, old = api_key_create(name="alice")
    _, new = api_key_create(name="alice")
    assert api_key_authenticate(presented=old) is not None
    call_command("revoke_api_key", old, stdout=StringIO())
    assert api_key_authenticate(presented=old) is None
    assert api_key_authenticate(presented=new) is not None


def test_an_expired_key_is_refused() -> None:
    _, plaintext = api_key_create(name="alice", expires_at=timezone.now() - timedelta(seconds=1))
    assert api_key_authenticate(presented=plaintext) is None


def test_an_inactive_client_is_refused() -> None:
    key, plaintext = api_key_create(name="alice")
    key.client.is_active = False
    key.client.save()
    assert api_key_authenticate(presented=plaintext) is None


def test_a_wrong_secret_with_a_real_prefix_is_refused() -> None:
    _, plaintext = api_key_create(name="alice")
    prefix = plaintext.split("_")[1]
    assert api_key_authenticate(presented=f"ek_{prefix}_{'A' * 43}") is None


def test_use_is_recorded() -> None:
    key, plaintext = api_key_create(name="alice")
    assert key.last_used_at is None
    api_key_authenticate(presented=plaintext)
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_face_verify_is_off_for_a_new_client_and_the_command_can_allow_it() -> None:
    call_command("create_api_key", "--name", "carol", stdout=StringIO(), stderr=StringIO())
    assert not ApiClient.objects.get(name="carol").face_verify_enabled

    err = StringIO()
    call_command(
        "create_api_key", "--name", "carol", "--allow-face-verify", stdout=StringIO(), stderr=err
    )
    assert ApiClient.objects.get(name="carol").face_verify_enabled
    assert "face_verify on" in err.getvalue()

    # A later key without the option leaves the client's leave as it is.
    call_command("create_api_key", "--name", "carol", stdout=StringIO(), stderr=StringIO())
    assert ApiClient.objects.get(name="carol").face_verify_enabled

    call_command(
        "create_api_key",
        "--name",
        "carol",
        "--no-allow-face-verify",
        stdout=StringIO(),
        stderr=StringIO(),
    )
    assert not ApiClient.objects.get(name="carol").face_verify_enabled
