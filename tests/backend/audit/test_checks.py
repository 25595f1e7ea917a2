"""Ephemera's own deployment checks, as ``manage.py check --deploy`` runs them."""

from __future__ import annotations

import base64
import io
import secrets

import pytest
from django.core.checks import Tags, run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from pytest_django.fixtures import Settings

from backend.audit.checks import FLOWER_AUTH_MISSING, FLOWER_AUTH_WEAK, KEYRING_WEAK


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def ours() -> list[str]:
    """The ids of Ephemera's deploy warnings, one per finding, as Django collects them."""
    found = run_checks(include_deployment_checks=True, tags=[Tags.security])
    return [str(message.id) for message in found if str(message.id).startswith("ephemera.")]


@pytest.fixture(autouse=True)
def strong(settings: Settings) -> None:
    settings.FLOWER_BASIC_AUTH = f"ops:{secrets.token_urlsafe(24)}"
    settings.EPHEMERA_KEYS = f"k1:{b64(secrets.token_bytes(32))}"


def test_strong_secrets_raise_no_warning() -> None:
    assert ours() == []


def test_check_deploy_names_a_weak_setting_and_never_its_value(settings: Settings) -> None:
    settings.FLOWER_BASIC_AUTH = "ops:hunter2"
    with pytest.raises(SystemCheckError) as failed:
        call_command("check", "--deploy", "--fail-level", "WARNING", stdout=io.StringIO())
    assert FLOWER_AUTH_WEAK in str(failed.value)
    assert "hunter2" not in str(failed.value)


def test_the_checks_run_with_deploy_only(settings: Settings) -> None:
    settings.FLOWER_BASIC_AUTH = None
    settings.EPHEMERA_KEYS = "k1:not-base64!"
    assert not [m for m in run_checks(tags=[Tags.security]) if str(m.id).startswith("ephemera.")]
    assert sorted(ours()) == [FLOWER_AUTH_MISSING, KEYRING_WEAK]


@pytest.mark.parametrize("value", [None, "", "admin", ":only-a-password-here", "ops:"])
def test_it_warns_of_flower_without_auth(settings: Settings, value: str | None) -> None:
    settings.FLOWER_BASIC_AUTH = value
    assert ours() == [FLOWER_AUTH_MISSING]


@pytest.mark.parametrize(
    ("user", "password"),
    [
        ("ops", "admin"),
        ("ops", "short-but-ok"),
        ("ops", "changeme-changeme-2024"),
        ("ops", "aaaaaaaaaaaaaaaaaaaa"),
        ("flower-operator-01", "flower-operator-01"),
    ],
)
def test_it_warns_of_a_weak_flower_password(settings: Settings, user: str, password: str) -> None:
    settings.FLOWER_BASIC_AUTH = f"{user}:{password}"
    assert ours() == [FLOWER_AUTH_WEAK]


def test_it_warns_once_per_weak_password_among_several(settings: Settings) -> None:
    settings.FLOWER_BASIC_AUTH = f"a:admin, b:{secrets.token_urlsafe(24)}, c:changeme"
    assert ours() == [FLOWER_AUTH_WEAK, FLOWER_AUTH_WEAK]


def keyrings() -> list[tuple[str, str]]:
    random_key = b64(secrets.token_bytes(32))
    return [
        ("repeated", f"new:{random_key},old:{random_key}"),
        ("all zero", f"k1:{b64(bytes(32))}"),
        ("all one byte", f"k1:{b64(bytes([7]) * 32)}"),
        ("a test value", f"k1:{b64(bytes(range(32)))}"),
        ("a password", f"k1:{b64(b'correct horse battery staple 123')}"),
        ("far from random", f"k1:{b64(bytes([0x80, 0x81, 0x82]) * 10 + bytes([0x83, 0x84]))}"),
        ("unparseable", "k1:not-base64!"),
    ]


@pytest.mark.parametrize(("case", "keyring"), keyrings(), ids=[case for case, _ in keyrings()])
def test_it_warns_of_weak_encryption_keys(settings: Settings, case: str, keyring: str) -> None:
    settings.EPHEMERA_KEYS = keyring
    assert ours() == [KEYRING_WEAK]
