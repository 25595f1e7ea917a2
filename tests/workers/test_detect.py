"""``detect``: JSON boxes, scores and landmarks in the given image's pixels."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from backend.catalogue.tasks import DETECT as SPEC
from tests.workers.faces_fixtures import Composed, astronaut_bgr, lbp_cascade_faces, match
from workers.detect import make_runner
from workers.models.faces import FaceDetector

Run = Callable[[np.ndarray, Mapping[str, Any]], dict[str, Any]]


@pytest.fixture(scope="module")
def run(face_detector: FaceDetector) -> Run:
    return make_runner(face_detector)  # type: ignore[return-value]


def test_the_astronaut_as_json(run: Run) -> None:
    photo = astronaut_bgr()

    result = json.loads(json.dumps(run(photo, SPEC.validate_params({}))))

    assert (result["width"], result["height"]) == (512, 512)
    assert len(result["faces"]) == 1
    face = result["faces"][0]
    assert set(face) == {"box", "score", "landmarks"}
    assert 0.9 < face["score"] <= 1.0
    assert len(face["landmarks"]) == 5 and all(len(p) == 2 for p in face["landmarks"])
    truth = lbp_cascade_faces(photo)
    hit, _ = match(truth, np.array([face["box"]], np.float32))
    assert hit.all()


def test_coordinates_are_those_of_the_array_given(run: Run) -> None:
    photo = astronaut_bgr()
    wide = cv2.copyMakeBorder(photo, 40, 0, 300, 0, cv2.BORDER_CONSTANT, value=(90, 90, 90))

    base = run(photo, SPEC.validate_params({}))["faces"][0]
    moved = run(wide, SPEC.validate_params({}))["faces"][0]

    np.testing.assert_allclose(moved["box"], np.add(base["box"], [300, 40, 300, 40]), atol=3)
    np.testing.assert_allclose(moved["landmarks"], np.add(base["landmarks"], [300, 40]), atol=3)


@pytest.mark.slow
def test_it_finds_the_faces_of_group_photos(run: Run, group_photos: list[Composed]) -> None:
    found = total = false_positives = 0
    for photo in group_photos:
        result = run(photo.image, SPEC.validate_params({}))
        boxes = np.array([f["box"] for f in result["faces"]], np.float32).reshape(-1, 4)
        hit, fp = match(photo.boxes, boxes)
        found += int(hit.sum())
        total += len(photo.boxes)
        false_positives += fp

    assert found / total >= 0.9
    assert false_positives <= total // 6


def test_the_schema_gives_every_param_a_default() -> None:
    schema = SPEC.params_schema

    assert SPEC.output == "json"
    assert schema["additionalProperties"] is False
    assert all("default" in prop for prop in schema["properties"].values())
    assert SPEC.validate_params({})["centerface_threshold"] == 0.5


def test_the_face_task_modules_import_without_torch_or_opencv() -> None:
    """The web reads SPEC for the catalogue and must never load torch."""
    code = (
        "import sys; import workers.anonymize, workers.face_crop, workers.detect; "
        "sys.exit(int('torch' in sys.modules or 'cv2' in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
