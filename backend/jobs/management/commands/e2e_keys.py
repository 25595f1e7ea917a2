"""Make a new end-to-end key pair for the workers (docs/e2e.md, "Keys")."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ephemera_client import envelope
from ephemera_client.envelope import KeyPair


class Command(BaseCommand):
    help = (
        "Make an X25519 key pair for end-to-end encrypted jobs. Prints the public line "
        "(for EPHEMERA_E2E_PUBLIC_KEYS, web and workers) and writes the private line "
        "(for EPHEMERA_E2E_PRIVATE_KEYS, workers only) to --private-out, mode 0600, or "
        "prints it on standard error when no file is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--id", required=True, help="the key id, [A-Za-z0-9_.-]{1,32}")
        parser.add_argument(
            "--private-out", type=Path, help="write the private line to this new file"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        kid = options["id"]
        if not envelope.KEY_ID.match(kid):
            raise CommandError("--id must match [A-Za-z0-9_.-]{1,32}")
        pair = KeyPair.generate()
        private_line = f"{kid}:{base64.b64encode(pair.private).decode()}"
        target: Path | None = options["private_out"]
        if target is None:
            self.stderr.write(f"EPHEMERA_E2E_PRIVATE_KEYS entry (workers only): {private_line}")
        else:
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                raise CommandError(f"{target} exists: add the new key to it by hand") from None
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(private_line + "\n")
            self.stderr.write(f"wrote the private key to {target} (workers only)")
        self.stdout.write(f"{kid}:{base64.b64encode(pair.public).decode()}")
