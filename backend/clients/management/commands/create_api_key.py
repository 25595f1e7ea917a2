"""Issue an API key and print it, alone, on standard output: it is shown only once."""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from backend.clients.models import Tier
from backend.clients.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for a client (created if new). Prints only the key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="client name")
        parser.add_argument("--tier", default=Tier.FREE, choices=Tier.values)
        parser.add_argument("--label", default="", help="what this key is for")
        parser.add_argument("--expires-in-days", type=int, default=None)
        parser.add_argument(
            "--allow-face-verify",
            action=argparse.BooleanOptionalAction,
            default=None,
            help=(
                "let the client run face_verify (biometric comparison; every job must also "
                "carry consent=true); --no-allow-face-verify withdraws it; left as it is "
                "when not given (off for a new client)"
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["expires_in_days"]
        if days is not None and days <= 0:
            raise CommandError("--expires-in-days must be positive")
        expires_at = timezone.now() + timedelta(days=days) if days else None
        key, plaintext = api_key_create(
            name=options["name"],
            tier=options["tier"],
            label=options["label"],
            expires_at=expires_at,
            allow_face_verify=options["allow_face_verify"],
        )
        face_verify = "on" if key.client.face_verify_enabled else "off"
        self.stderr.write(
            f"issued key ek_{key.prefix}_… for client {key.client.name!r} "
            f"(face_verify {face_verify})"
        )
        self.stdout.write(plaintext)
