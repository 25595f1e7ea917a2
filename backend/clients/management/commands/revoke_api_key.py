"""Revoke an API key by its public prefix (or by the whole key)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from backend.clients.models import ApiKey
from backend.clients.services import KEY_PATTERN, api_key_revoke


class Command(BaseCommand):
    help = "Revoke an API key at once. Give its 8-character prefix or the whole key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("key", help="the prefix (e.g. 1a2b3c4d) or the whole ek_ key")

    def handle(self, *args: Any, **options: Any) -> None:
        given: str = options["key"]
        match = KEY_PATTERN.match(given)
        prefix = match.group(1) if match else given
        try:
            key = api_key_revoke(prefix=prefix)
        except ApiKey.DoesNotExist:
            raise CommandError(f"no key with prefix {prefix!r}; list keys in the admin") from None
        self.stdout.write(f"revoked ek_{key.prefix}_… of client {key.client.name!r}")
