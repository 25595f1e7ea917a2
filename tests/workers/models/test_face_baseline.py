"""No face that either detector found before the speed work (issue 14) is lost since.

``data/face_baseline.json`` holds each detector's boxes, alone, on real
portraits and composed group photos, as the code found them before MTCNN and
CenterFace were made faster (``data/make_face_baseline.py`` says how). What
anonymize hides now is the union of both detectors; every face of the
baseline must still be in it.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backend.catalogue.tasks import ANONYMIZE as SPEC
from tests.workers.faces_fixtures import iou_matrix, match
from tests.workers.models.face_baseline import PHOTOS, photo, truth
from workers.anonymize import detect_options
from workers.models.faces import FaceDetector, merge

BASELINE = Path(__file__).resolve().parent / "data" / "face_baseline.json"
#: A baseline face is kept when a box that anonymize hides now overlaps it this much.
KEPT_IOU = 0.5


@cache
def baseline() -> dict[str, Any]:
    return json.loads(BASELINE.read_text())["photos"]  # type: ignore[no-any-return]


def baseline_faces(name: str) -> np.ndarray:
    """The baseline boxes of that photo that are faces, from either detector.

    On a composed photo those that match a pasted face at IoU 0.5 (the rest
    are the recall-first thresholds' spare blurs on distractors); on a
    portrait all of them.
    """
    found = baseline()[name]
    boxes = np.array(
        [box for det in ("mtcnn", "centerface") for box in found[det]["boxes"]], np.float32
    ).reshape(-1, 4)
    faces = truth(name)
    if faces is None or len(boxes) == 0:
        return boxes
    overlap = iou_matrix(boxes, faces)
    return boxes[(overlap >= 0.5).any(axis=1)]


def lost_faces(detector: FaceDetector, name: str) -> np.ndarray:
    """Baseline faces that no box anonymize hides now overlaps at ``KEPT_IOU``."""
    options = detect_options(SPEC.validate_params({}))
    found = merge(list(detector.detect_each(photo(name), options).values()))
    before = baseline_faces(name)
    if len(found.cover) == 0:
        return before
    hidden = np.concatenate([found.faces.boxes, found.cover])
    return before[iou_matrix(before, hidden).max(axis=1) < KEPT_IOU]


def test_the_baseline_has_faces_from_both_detectors_on_every_photo() -> None:
    assert set(baseline()) == set(PHOTOS)
    for name in PHOTOS:
        assert len(baseline()[name]["mtcnn"]["boxes"]) >= 1
        assert len(baseline()[name]["centerface"]["boxes"]) >= 1
        assert len(baseline_faces(name)) >= 1


@pytest.mark.parametrize("name", PHOTOS)
def test_no_face_either_detector_found_before_is_lost(
    face_detector: FaceDetector, name: str
) -> None:
    lost = lost_faces(face_detector, name)

    assert len(lost) == 0, f"{name}: faces of the baseline no longer hidden: {lost.tolist()}"


def test_the_composed_faces_found_before_are_still_found(face_detector: FaceDetector) -> None:
    """The same, counted against the pasted faces: none found before is missed now.

    Found means that a merged face or the box anonymize hides around it
    matches the pasted face at IoU 0.5.
    """
    options = detect_options(SPEC.validate_params({}))
    for name in PHOTOS:
        faces = truth(name)
        if faces is None:
            continue
        before = np.zeros(len(faces), bool)
        for det in ("mtcnn", "centerface"):
            boxes = np.array(baseline()[name][det]["boxes"], np.float32).reshape(-1, 4)
            before |= match(faces, boxes)[0]
        now = merge(list(face_detector.detect_each(photo(name), options).values()))
        hidden = np.concatenate([now.faces.boxes, now.cover])
        assert not (before & ~match(faces, hidden)[0]).any(), name
