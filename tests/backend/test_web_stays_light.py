"""The web process never loads the model stack: the API stays small and quick to start.

Real submits (a one-photo task, and face_verify with its reference) go through
the whole web path (auth, catalogue, sniffing, sealing, Redis, the queue) in a
fresh process; afterwards neither torch, OpenCV,
numpy nor any module of ``workers`` (beyond the app declaration that carries the
management commands) has been imported.
"""

from __future__ import annotations

from pathlib import Path

from tests.harness import web_probe

PROBE = """
import sys, django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.test import Client
from backend.clients.services import api_key_create
_, key = api_key_create(name="light", tier="standard", allow_face_verify=True)
web = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
tasks = web.get("/api/v1/tasks")
assert tasks.status_code == 200, tasks.content
names = {task["name"] for task in tasks.json()["tasks"]}
one_photo = {"anonymize", "face_crop", "cartoonize", "detect", "background", "stylize", "parse"}
assert names == one_photo | {"face_verify"}, names
photo = bytes.fromhex(sys.argv[1])
from django.core.files.uploadedfile import SimpleUploadedFile
job = web.post("/api/v1/jobs", {"task": "cartoonize", "image": SimpleUploadedFile("p.png", photo)})
assert job.status_code == 202, job.content
pair = web.post("/api/v1/jobs", {
    "task": "face_verify",
    "image": SimpleUploadedFile("p.png", photo),
    "reference": SimpleUploadedFile("r.png", photo),
    "consent": "true",
})
assert pair.status_code == 202, pair.content
heavy = ("torch", "cv2", "numpy")
# "workers" is an installed app for its management commands (fetch_models):
# Django imports its package, AppConfig, and the (empty) packages where it
# looks for commands and ORM models; none of them imports anything.
app_only = {"workers", "workers.apps", "workers.management", "workers.models"}
loaded = sorted(
    name for name in sys.modules
    if name.split(".")[0] in heavy + ("workers",) and name not in app_only
)
print("loaded:" + ",".join(loaded))
"""


def test_a_submit_loads_neither_torch_opencv_numpy_nor_workers(
    redis_conn: object, tmp_path: Path
) -> None:
    import cv2
    import numpy as np

    photo = cv2.imencode(".png", np.full((8, 8, 3), 128, np.uint8))[1].tobytes()
    loaded = web_probe(PROBE, photo.hex(), database=tmp_path / "light.sqlite3")
    assert loaded.strip().splitlines()[-1] == "loaded:"
