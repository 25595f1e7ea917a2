"""``face_verify``: same person or not, from two real photos; nothing but the verdict leaves."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from backend.catalogue import CATALOGUE, InvalidParams
from backend.errors import CodedError
from tests.workers.faces_fixtures import astronaut_bgr
from workers.face_verify import THRESHOLD, load, make_compare
from workers.models.face_embed import FaceEmbedder, load_face_embedder
from workers.models.faces import FaceDetector
from workers.registry import PairRunner as Compare

SPEC = CATALOGUE["face_verify"]

PEOPLE = Path(__file__).resolve().parent / "models" / "data" / "people"


def photo(name: str) -> np.ndarray:
    image = cv2.imread(str(PEOPLE / name))
    assert image is not None
    return image


@pytest.fixture(scope="module")
def embedder(model_dir: Path, face_detector: FaceDetector) -> FaceEmbedder:
    return load_face_embedder(model_dir=model_dir, key=None)


@pytest.fixture(scope="module")
def compare(face_detector: FaceDetector, embedder: FaceEmbedder) -> Compare:
    return make_compare(face_detector, embedder)


@pytest.mark.parametrize(("a", "b"), [("obama.jpg", "obama2.jpg"), ("obama2.jpg", "obama3.jpg")])
def test_two_photos_of_one_person_are_the_same_person(compare: Compare, a: str, b: str) -> None:
    verdict = compare(photo(a), photo(b), SPEC.validate_params({}))

    assert verdict["same_person"] is True
    assert verdict["distance"] < THRESHOLD
    assert verdict["faces"] == [1, 1]


@pytest.mark.parametrize("other", ["biden.jpg", "astronaut"])
def test_photos_of_two_people_are_not_the_same_person(compare: Compare, other: str) -> None:
    second = astronaut_bgr() if other == "astronaut" else photo(other)

    verdict = compare(photo("obama.jpg"), second, SPEC.validate_params({}))

    assert verdict["same_person"] is False
    assert verdict["distance"] > THRESHOLD


def test_the_answer_is_the_verdict_and_nothing_else(
    compare: Compare, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    verdict = compare(photo("obama.jpg"), photo("sample2.jpg"), SPEC.validate_params({}))

    assert set(verdict) == {"same_person", "distance", "threshold", "faces"}
    assert verdict["faces"][0] == 1
    assert verdict["faces"][1] >= 2  # two women in sample2: the largest face is compared
    assert len(json.dumps(verdict)) < 120  # no descriptor can hide in it
    assert not [r for r in caplog.records if r.name.startswith("workers")]


@pytest.mark.parametrize("which", ["image", "reference"])
def test_a_photo_without_a_face_fails_with_its_code(compare: Compare, which: str) -> None:
    from skimage import data

    coffee = cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR)
    pair: dict[str, Any] = {"image": photo("obama.jpg"), "reference": photo("obama2.jpg")}
    pair[which] = coffee

    with pytest.raises(CodedError) as failed:
        compare(pair["image"], pair["reference"], SPEC.validate_params({}))

    assert failed.value.code == f"no_face_in_{which}"


@pytest.mark.parametrize("params", [{"threshold": 0.9}, {"detect_size": 100}, {"x": 1}])
def test_it_rejects_params_outside_the_schema(params: dict[str, Any]) -> None:
    with pytest.raises(InvalidParams):
        SPEC.validate_params(params)


def test_the_task_loads_from_the_configured_model_dir() -> None:
    compare: Compare = load()  # type: ignore[assignment]

    verdict = compare(photo("obama.jpg"), photo("obama3.jpg"), SPEC.validate_params({}))

    assert verdict["same_person"] is True
