"""The web process never loads torch: the API stays small and quick to start."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO

PROBE = """
import sys, django
django.setup()
from django.test import Client
import backend.urls
from workers.registry import all_specs
assert set(all_specs()) == {"anonymize", "face_crop", "cartoonize", "detect"}, all_specs()
Client().get("/api/v1/tasks")
print("loaded:" + ",".join(sorted(name for name in ("torch", "cv2") if name in sys.modules)))
"""


def test_the_web_loads_neither_torch_nor_opencv() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "backend.settings"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip().splitlines()[-1] == "loaded:"
