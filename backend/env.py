"""Typed readers for the environment: the only place that touches ``os.environ``.

Every reader fails loudly on junk instead of falling back to a silent default,
and every one of them also accepts ``<NAME>_FILE``: the path of a file holding
the value, which is how Kubernetes and Compose mount secrets.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(RuntimeError):
    """The environment holds a value the service cannot run with."""


def _raw(name: str) -> str | None:
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        try:
            return Path(file_path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE={file_path} cannot be read: {exc.strerror}") from exc
    return os.environ.get(name)


def envstr(name: str, default: str | None = None) -> str | None:
    value = _raw(name)
    return default if value is None else value


def envsecret(name: str) -> str | None:
    """A secret: like ``envstr`` but never given a default in code."""
    value = _raw(name)
    return value or None


def envbool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name}={value!r} is not a boolean; use true or false")


def envint(name: str, default: int, *, minimum: int | None = None) -> int:
    value = _raw(name)
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not an integer") from None
    if minimum is not None and number < minimum:
        raise ConfigError(f"{name}={number} is below the minimum of {minimum}")
    return number


def envfloat(name: str, default: float, *, minimum: float | None = None) -> float:
    value = _raw(name)
    if value is None or value.strip() == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a number") from None
    if minimum is not None and number < minimum:
        raise ConfigError(f"{name}={number} is below the minimum of {minimum}")
    return number


def envlist(name: str, default: list[str]) -> list[str]:
    value = _raw(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def envkey32(name: str) -> bytes | None:
    """A base64-encoded 32-byte key, or None when unset."""
    value = envsecret(name)
    if value is None:
        return None
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{name} is not valid base64") from None
    if len(key) != 32:
        raise ConfigError(f"{name} must decode to 32 bytes, not {len(key)}")
    return key


def parse_tier_numbers(text: str, name: str) -> dict[str, int]:
    """``tier:number,...`` into a dict; every number a non-negative integer."""
    numbers: dict[str, int] = {}
    for entry in (part.strip() for part in text.split(",") if part.strip()):
        tier, sep, value = entry.partition(":")
        if not sep or not value.strip().isdigit():
            raise ConfigError(f"{name}: {entry!r} is not tier:number")
        numbers[tier.strip()] = int(value)
    return numbers
