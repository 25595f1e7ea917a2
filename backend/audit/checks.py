"""Deployment checks of Ephemera's own secrets, as Django system checks.

``python manage.py check --deploy`` runs them beside Django's own (a weak
``SECRET_KEY`` is Django's ``security.W009``, ``DEBUG`` on its ``security.W018``),
and the privacy audit reports what they find. Messages are fixed texts: never
a secret or a value.
"""

from __future__ import annotations

import string
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register

from backend.ephemeral import crypto

MIN_FLOWER_PASSWORD = 16
#: Defaults seen in tutorials and example files; compared case-insensitively.
_COMMON_PASSWORDS = frozenset(
    {
        "admin",
        "password",
        "changeme",
        "change_me",
        "secret",
        "flower",
        "letmein",
        "passwordpassword",
        "changemechangeme",
        "0123456789abcdef",
        "1234567890123456",
    }
)
_DEFAULT_MARKERS = ("changeme", "change_me", "change-me", "password", "example")
#: 32-byte test keys that appear in documentation and test suites.
_KNOWN_TEST_KEYS = frozenset(
    {
        bytes(range(32)),
        bytes(range(1, 33)),
        bytes(range(31, -1, -1)),
        b"0123456789abcdef0123456789abcdef",
        b"01234567890123456789012345678901",
    }
)
#: A uniformly random 32-byte key has about 30 distinct byte values; fewer than
#: this many happens by chance with probability far below 1e-15.
_MIN_DISTINCT_KEY_BYTES = 16
_PRINTABLE = frozenset(string.printable.encode())

FLOWER_AUTH_MISSING = "ephemera.W001"
FLOWER_AUTH_WEAK = "ephemera.W002"
KEYRING_WEAK = "ephemera.W003"


@register(Tags.security, deploy=True)
def check_flower_auth(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    value = settings.FLOWER_BASIC_AUTH or ""
    credentials = [part.strip() for part in value.split(",") if part.strip()]
    pairs = [credential.partition(":") for credential in credentials]
    if not pairs or any(not user or not sep or not password for user, sep, password in pairs):
        return [
            Warning(
                "FLOWER_BASIC_AUTH is unset or not user:password: Flower would show task "
                "history to anyone who reaches it; set it",
                id=FLOWER_AUTH_MISSING,
            )
        ]
    return [
        Warning(
            f"a FLOWER_BASIC_AUTH password is weak (shorter than {MIN_FLOWER_PASSWORD}, "
            "a common default or the user name); generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(24))'`",
            id=FLOWER_AUTH_WEAK,
        )
        for user, _, password in pairs
        if _weak_password(user, password)
    ]


def _weak_password(user: str, password: str) -> bool:
    lowered = password.lower()
    return (
        len(password) < MIN_FLOWER_PASSWORD
        or lowered in _COMMON_PASSWORDS
        or any(marker in lowered for marker in _DEFAULT_MARKERS)
        or lowered == user.lower()
        or len(set(password)) < 8
    )


@register(Tags.security, deploy=True)
def check_keyring(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    try:
        keyring = crypto.Keyring.parse(settings.EPHEMERA_KEYS)
    except crypto.KeyringError:
        return [
            Warning("EPHEMERA_KEYS does not parse as kid:base64-32-bytes entries", id=KEYRING_WEAK)
        ]
    advice = "replace it with `openssl rand -base64 32` under a new key id"
    keys = list(keyring.keys.values())
    found = [
        f"EPHEMERA_KEYS holds the same key under several key ids; {advice}"
        for _ in range(len(keys) - len(set(keys)))
    ]
    for key in keys:
        if len(set(key)) == 1:
            found.append(f"an EPHEMERA_KEYS key is one byte repeated; {advice}")
        elif key in _KNOWN_TEST_KEYS:
            found.append(f"an EPHEMERA_KEYS key is a well-known test value; {advice}")
        elif set(key) <= _PRINTABLE:
            found.append(f"an EPHEMERA_KEYS key is text (a password?), not random bytes; {advice}")
        elif len(set(key)) < _MIN_DISTINCT_KEY_BYTES:
            found.append(f"an EPHEMERA_KEYS key is far from random; {advice}")
    return [Warning(text, id=KEYRING_WEAK) for text in found]
