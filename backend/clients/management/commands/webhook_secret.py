"""Issue or rotate a client's webhook secret; print it, alone, once, on standard output."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from backend.clients.models import ApiClient
from backend.clients.webhook_secrets import SecretExists, webhook_secret_issue


class Command(BaseCommand):
    help = (
        "Create a client's webhook signing secret (whsec_...), or with --rotate a new one "
        "that signs alongside the previous one until the next rotation. Prints only the secret."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="client name")
        parser.add_argument(
            "--rotate", action="store_true", help="add a new secret; the previous one stays valid"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            secret = webhook_secret_issue(name=options["name"], rotate=options["rotate"])
        except ApiClient.DoesNotExist:
            raise CommandError(
                f"no client {options['name']!r}; create it with create_api_key first"
            ) from None
        except SecretExists as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(f"issued a webhook secret for client {options['name']!r}")
        self.stdout.write(secret)
