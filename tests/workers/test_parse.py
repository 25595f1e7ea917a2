"""``parse``: a palette label map whose labels agree with the landmarks they come from."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from backend.catalogue import CATALOGUE, InvalidParams
from tests.workers.faces_fixtures import astronaut_bgr, background
from workers.models.face_mesh import load_face_mesh
from workers.models.faces import DetectOptions, FaceDetector
from workers.models.parsing import ID, LABELS
from workers.models.pose import load_pose
from workers.models.selfie import load_selfie
from workers.parse import load, make_runner

SPEC = CATALOGUE["parse"]

Run = Callable[[np.ndarray, Mapping[str, Any]], dict[str, Any]]
PEOPLE = Path(__file__).resolve().parent / "models" / "data" / "people"


@pytest.fixture(scope="module")
def run(model_dir: Path, face_detector: FaceDetector) -> Run:
    return make_runner(  # type: ignore[return-value]
        load_pose(model_dir=model_dir, key=None),
        load_face_mesh(model_dir=model_dir, key=None),
        load_selfie(model_dir=model_dir, key=None),
    )


def decoded(answer: dict[str, Any]) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(answer["png_base64"])))


def test_the_label_map_is_a_palette_png_of_the_photo_s_size(run: Run) -> None:
    answer = run(astronaut_bgr(), SPEC.validate_params({}))

    image = decoded(answer)
    assert image.format == "PNG"
    assert image.mode == "P"
    assert image.size == (512, 512)
    assert [entry["name"] for entry in answer["legend"]] == list(LABELS)
    assert all(entry["source"] for entry in answer["legend"])
    palette = image.getpalette()
    assert palette is not None
    assert palette[3 * ID["lips"] : 3 * ID["lips"] + 3] == [220, 0, 80]


def test_the_labels_agree_with_the_landmarks_they_come_from(
    run: Run, face_detector: FaceDetector
) -> None:
    photo = astronaut_bgr()
    marks = face_detector.detect(photo, DetectOptions(detectors=("mtcnn",))).faces.landmarks[0]

    labels = np.array(decoded(run(photo, SPEC.validate_params({}))))

    def at(point: np.ndarray) -> str:
        return LABELS[labels[round(point[1]), round(point[0])]]

    def near(point: np.ndarray) -> set[str]:
        x, y = round(point[0]), round(point[1])
        return {LABELS[v] for v in np.unique(labels[y - 2 : y + 3, x - 2 : x + 3])}

    # MTCNN's points, from another net: the eye centres lie in (or within 2
    # pixels of) the mesh's eye openings.
    assert "eyes" in near(marks[0])
    assert "eyes" in near(marks[1])
    assert at(marks[2]) == "nose"
    assert at(marks[3:].mean(axis=0)) == "lips"
    assert at(np.array([230, 40])) == "hair"  # the top of her head
    assert at(np.array([230, 215])) == "neck"  # the black collar under her chin
    assert at(np.array([200, 330])) == "upper_body"  # her suit, between the arm bands
    assert at(np.array([100, 300])) == "arms"  # along her left upper arm (photo left)
    assert at(np.array([480, 20])) == at(np.array([450, 150])) == "background"
    counts = np.bincount(labels.ravel(), minlength=len(LABELS))
    assert counts[ID["face_skin"]] > counts[ID["eyes"]] + counts[ID["lips"]]


def test_each_person_of_a_group_gets_a_box_and_a_face(run: Run) -> None:
    group = cv2.imread(str(PEOPLE / "sample6.jpg"))
    assert group is not None

    answer = run(group, SPEC.validate_params({}))

    assert len(answer["people"]) >= 3
    assert all(p["box"] is not None and p["face_mesh"] for p in answer["people"])
    labels = np.array(decoded(answer))
    assert (labels == ID["face_skin"]).sum() > 3 * 1000  # three faces, each 1000+ px


def test_a_photo_without_people_is_all_background(run: Run) -> None:
    answer = run(background("brick"), SPEC.validate_params({}))

    assert answer["people"] == []
    assert np.array(decoded(answer)).max() == 0


def test_overlay_is_the_photo_with_colours_where_people_are(run: Run) -> None:
    photo = astronaut_bgr()

    answer = run(photo, SPEC.validate_params({"output": "overlay"}))

    image = decoded(answer)
    assert image.mode == "RGB"
    overlay = cv2.cvtColor(np.array(image), cv2.COLOR_RGB2BGR)
    assert np.array_equal(overlay[0:40, 440:512], photo[0:40, 440:512])  # background untouched
    assert np.abs(overlay[300:400, 50:100].astype(int) - photo[300:400, 50:100]).mean() > 10


@pytest.mark.parametrize("params", [{"output": "mask"}, {"max_people": 0}, {"x": 1}])
def test_it_rejects_params_outside_the_schema(params: dict[str, Any]) -> None:
    with pytest.raises(InvalidParams):
        SPEC.validate_params(params)


def test_the_task_loads_from_the_configured_model_dir() -> None:
    runner = load()

    answer = runner(astronaut_bgr(), SPEC.validate_params({}))

    assert isinstance(answer, dict)
    assert len(answer["people"]) == 1
