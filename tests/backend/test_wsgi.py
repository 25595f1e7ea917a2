"""The WSGI module gunicorn's workers import as they boot."""

from __future__ import annotations

from pathlib import Path

from tests.harness import web_probe

PROBE = """
import sys
import backend.wsgi
loaded = [name for name in ("backend.urls", "backend.api.views") if name in sys.modules]
print(",".join(sorted(loaded)))
"""


def test_a_web_worker_loads_every_view_as_it_boots_not_on_its_first_request(
    tmp_path: Path,
) -> None:
    loaded = web_probe(PROBE, database=tmp_path / "wsgi.sqlite3")
    assert loaded.strip().splitlines()[-1] == "backend.api.views,backend.urls"
