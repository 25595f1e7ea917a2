"""``python manage.py seal_model FILE``: write an AES-GCM copy of a model file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from workers.model_files import ModelFileError, seal_file


class Command(BaseCommand):
    help = (
        "Encrypt a pinned model file with EPHEMERA_MODEL_KEY into FILE.sealed. Workers "
        "decrypt it in memory only and verify the plaintext's SHA-256."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="A model file, e.g. var/models/pnet.pt")
        parser.add_argument(
            "--remove-plaintext",
            action="store_true",
            help="Delete FILE once the sealed copy has been written and checked.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        key: bytes | None = settings.EPHEMERA_MODEL_KEY
        if key is None:
            raise CommandError(
                "EPHEMERA_MODEL_KEY is not set. Set it to base64 of 32 random bytes, e.g. the "
                "output of `openssl rand -base64 32`, and give the workers the same value."
            )
        try:
            target = seal_file(
                options["file"], key=key, remove_plaintext=options["remove_plaintext"]
            )
        except ModelFileError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"sealed {options['file']} -> {target}"))
