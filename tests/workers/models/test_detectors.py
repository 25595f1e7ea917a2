"""MTCNN and CenterFace on real faces: the astronaut portrait and composed group photos."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.workers.faces_fixtures import (
    SIZE_BINS,
    Composed,
    astronaut_bgr,
    iou_matrix,
    lbp_cascade_faces,
    match,
)
from workers.model_files import ModelFileError
from workers.models.centerface import centerface_from_bytes
from workers.models.detections import Faces
from workers.models.faces import DetectOptions, FaceDetector, centerface_copy_size, merge

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def astronaut_truth() -> np.ndarray:
    """The astronaut's face as scikit-image's LBP cascade, an independent detector, sees it."""
    boxes = lbp_cascade_faces(astronaut_bgr())
    assert len(boxes) == 1
    return boxes


def check_landmarks(faces: Faces, index: int) -> None:
    """Eyes above the nose above the mouth, left before right, all inside the box."""
    (lex, ley), (rex, rey), (nx, ny), (lmx, lmy), (rmx, rmy) = faces.landmarks[index]
    x1, y1, x2, y2 = faces.boxes[index]
    assert lex < nx < rex
    assert lmx < nx < rmx
    assert max(ley, rey) < ny < min(lmy, rmy)
    assert (x1 <= faces.landmarks[index, :, 0]).all() and (faces.landmarks[index, :, 0] <= x2).all()
    assert (y1 <= faces.landmarks[index, :, 1]).all() and (faces.landmarks[index, :, 1] <= y2).all()


@pytest.mark.parametrize("detector", ["mtcnn", "centerface"])
def test_each_detector_finds_the_astronaut(
    face_detector: FaceDetector, astronaut_truth: np.ndarray, detector: str
) -> None:
    options = DetectOptions(detectors=(detector,))  # type: ignore[arg-type]

    faces = face_detector.detect_each(astronaut_bgr(), options)[detector]  # type: ignore[index]

    best = int(np.argmax(faces.scores))
    assert faces.scores[best] > 0.9
    assert iou_matrix(faces.boxes[best : best + 1], astronaut_truth)[0, 0] > 0.5
    check_landmarks(faces, best)


def test_the_two_detectors_agree_on_the_landmarks(face_detector: FaceDetector) -> None:
    each = face_detector.detect_each(astronaut_bgr(), DetectOptions())
    mtcnn = each["mtcnn"].landmarks[np.argmax(each["mtcnn"].scores)]
    centerface = each["centerface"].landmarks[np.argmax(each["centerface"].scores)]
    eye_distance = np.linalg.norm(mtcnn[1] - mtcnn[0])

    assert np.linalg.norm(mtcnn - centerface, axis=1).max() < 0.25 * eye_distance


def recall_by_bin(
    photos: list[Composed], found: list[Faces]
) -> tuple[dict[tuple[int, int], float], float, int]:
    """Recall at IoU 0.5 per size bin, mean IoU of the matches, false positives."""
    hits = {b: [0, 0] for b in SIZE_BINS}
    ious: list[float] = []
    false_positives = 0
    for photo, faces in zip(photos, found, strict=True):
        hit, fp = match(photo.boxes, faces.boxes)
        false_positives += fp
        sides = photo.boxes[:, 2] - photo.boxes[:, 0]
        for lo, hi in SIZE_BINS:
            in_bin = (sides >= lo) & (sides < hi)
            hits[(lo, hi)][0] += int(hit[in_bin].sum())
            hits[(lo, hi)][1] += int(in_bin.sum())
        if len(faces) and hit.any():
            ious.extend(iou_matrix(photo.boxes[hit], faces.boxes).max(axis=1).tolist())
    return {b: h / n for b, (h, n) in hits.items()}, float(np.mean(ious)), false_positives


@pytest.mark.slow
def test_recall_and_box_accuracy_on_group_photos(
    face_detector: FaceDetector, group_photos: list[Composed]
) -> None:
    each = [face_detector.detect_each(p.image, DetectOptions()) for p in group_photos]
    faces = sum(len(p.boxes) for p in group_photos)

    mtcnn, mtcnn_iou, mtcnn_fp = recall_by_bin(group_photos, [e["mtcnn"] for e in each])
    centerface, cf_iou, cf_fp = recall_by_bin(group_photos, [e["centerface"] for e in each])
    union, union_iou, union_fp = recall_by_bin(
        group_photos, [merge(list(e.values())).faces for e in each]
    )

    assert mtcnn[(24, 48)] >= 0.75 and min(mtcnn.values()) >= 0.75
    assert centerface[(96, 192)] >= 0.9
    assert union[(24, 48)] >= 0.85
    assert union[(48, 96)] >= 0.9 and union[(96, 192)] >= 0.9
    assert min(mtcnn_iou, cf_iou, union_iou) >= 0.6
    assert max(mtcnn_fp, cf_fp, union_fp) <= faces // 3


def test_detection_on_a_downscaled_copy_maps_boxes_back(face_detector: FaceDetector) -> None:
    photo = astronaut_bgr()
    large = cv2.resize(photo, (2048, 2048), interpolation=cv2.INTER_CUBIC)

    at_native = face_detector.detect(photo, DetectOptions(detect_size=512)).faces
    from_large = face_detector.detect(large, DetectOptions(detect_size=512)).faces

    assert len(at_native) >= 1 and len(from_large) >= 1
    expected = at_native.boxes[:1] * 4
    assert iou_matrix(from_large.boxes[:1], expected)[0, 0] > 0.9
    np.testing.assert_allclose(from_large.landmarks[0], at_native.landmarks[0] * 4, atol=8)


def test_no_faces_on_a_photo_without_people(face_detector: FaceDetector) -> None:
    from skimage import data

    coffee = cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR)

    found = face_detector.detect(coffee, DetectOptions(centerface_threshold=0.5)).faces

    assert len(found) == 0


def test_centerface_copies_take_multiples_of_32_where_that_barely_stretches_them() -> None:
    assert centerface_copy_size(960, 540, longest=640) == (640, 352)
    assert centerface_copy_size(540, 960, longest=640) == (352, 640)
    assert centerface_copy_size(640, 480, longest=480) == (480, 352)
    # 32 would squash 40 px by a fifth: left for the net to pad.
    assert centerface_copy_size(960, 60, longest=640) == (640, 40)


def test_merge_unites_overlapping_detections_and_covers_both() -> None:
    marks = np.zeros((1, 5, 2), np.float32)
    a = Faces(np.array([[10, 10, 50, 60]], np.float32), np.array([0.99], np.float32), marks)
    b = Faces(np.array([[12, 4, 54, 58]], np.float32), np.array([0.6], np.float32), marks)
    c = Faces(np.array([[200, 200, 240, 240]], np.float32), np.array([0.3], np.float32), marks)

    merged = merge([a, Faces.concat([b, c])])

    assert len(merged.faces) == 2
    np.testing.assert_allclose(merged.faces.boxes[0], [11, 7, 52, 59])
    np.testing.assert_allclose(merged.cover[0], [10, 4, 54, 60])
    assert merged.faces.scores.tolist() == pytest.approx([0.99, 0.3])


@pytest.mark.slow
def test_models_loaded_before_a_fork_work_in_the_child(model_dir: Path) -> None:
    """The Celery parent loads, then forks: the child must detect, not hang."""
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from workers.models.faces import DetectOptions, load_face_detector
        from tests.workers.faces_fixtures import astronaut_bgr
        detector = load_face_detector(Path({str(model_dir)!r}), None)
        pid = os.fork()
        if pid == 0:
            found = detector.detect(astronaut_bgr(), DetectOptions()).faces
            os._exit(0 if len(found) >= 1 else 3)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )

    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize(
    "data",
    [b"not an onnx file", b"", bytes(range(256)) * 64],
    ids=["text", "empty", "binary"],
)
def test_an_unreadable_centerface_file_raises_model_file_error(data: bytes) -> None:
    with pytest.raises(ModelFileError, match=r"(?s)centerface\.onnx.*fetch_models"):
        centerface_from_bytes(data)


@pytest.mark.parametrize("other", ["pnet.pt", "multistyle26.onnx"], ids=["torch", "onnx"])
def test_another_model_file_in_its_place_raises_model_file_error(
    model_dir: Path, other: str
) -> None:
    with pytest.raises(ModelFileError, match=r"centerface\.onnx"):
        centerface_from_bytes((model_dir / other).read_bytes())
