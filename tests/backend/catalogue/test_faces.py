"""The detection params the face tasks share: recall for anonymize, precision otherwise."""

from __future__ import annotations

from backend.catalogue import get_spec
from backend.catalogue.faces import (
    PRECISION_THRESHOLDS,
    RECALL_THRESHOLDS,
    detection_properties,
)


def defaults(task: str) -> dict[str, object]:
    spec = get_spec(task)
    assert spec is not None
    return spec.validate_params({})


def test_anonymize_favours_recall_and_the_others_precision() -> None:
    assert defaults("anonymize")["centerface_threshold"] == RECALL_THRESHOLDS["centerface"]
    for task in ("detect", "face_crop"):
        assert defaults(task)["mtcnn_thresholds"] == PRECISION_THRESHOLDS["mtcnn"]
        assert defaults(task)["centerface_threshold"] == PRECISION_THRESHOLDS["centerface"]
    assert RECALL_THRESHOLDS["centerface"] < PRECISION_THRESHOLDS["centerface"]


def test_each_schema_gets_its_own_threshold_lists() -> None:
    first = detection_properties(recall_first=False)
    first["mtcnn_thresholds"]["default"].append(0.9)
    assert detection_properties(recall_first=False)["mtcnn_thresholds"]["default"] == [
        0.6,
        0.7,
        0.7,
    ]
    assert PRECISION_THRESHOLDS["mtcnn"] == [0.6, 0.7, 0.7]
