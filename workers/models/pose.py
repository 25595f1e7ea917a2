"""MediaPipe BlazePose (person detector and 33 body landmarks with a person mask) via LiteRT.

Why LiteRT and not OpenCV, measured with OpenCV 5.0.0: ``readNetFromTFLite``
cannot import ``pose_detection.tflite`` (its DENSIFY op is not implemented),
and for ``pose_landmark_full.tflite`` it exposes one of five outputs and
answers the others wrongly (``forward("Identity")`` gives a 1x1x1x1 tensor
instead of 195 numbers; the segmentation differs from LiteRT by 0.21).
``ai-edge-litert`` is Google's own runtime for these files; both nets take
about 12 and 15 ms on one core.

The pre- and post-processing follow MediaPipe's ``pose_detection_cpu``,
``pose_detection_to_roi`` and ``pose_landmark_by_roi_cpu`` graphs:

- detector: the photo letterboxed to 224x224, values -1..1; 2254 SSD anchors
  (5 layers, strides 8, 16, 32, 32, 32, two anchors per cell and layer, fixed
  size); per anchor a box and four key points (hip centre, a point giving the
  body's scale, shoulder centre, a point giving the upper body's scale),
  sigmoid score, weighted NMS at IoU 0.3;
- region of interest: centred on the hip centre, rotated so that the scale
  point is straight above it, a square of side 2.5x their distance;
- landmarks: that square warped to 256x256, values 0..1; 39 landmarks (the
  first 33 are the body's) of x, y, z, visibility and presence (logits), a
  pose presence score, and a 256x256 person-mask logit map.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from workers.model_files import read_model

logger = logging.getLogger(__name__)

DETECTOR_FILE = "pose_detection.tflite"
LANDMARK_FILE = "pose_landmark_full.tflite"
DETECTOR_SIZE = 224
LANDMARK_SIZE = 256
NUM_BODY = 33
DETECTION_THRESHOLD = 0.5
PRESENCE_THRESHOLD = 0.5
_NMS_IOU = 0.3
_ROI_SCALE = 1.25


def _interpreter(data: bytes) -> object:
    from ai_edge_litert.interpreter import Interpreter

    # One thread: a worker process runs on one core (the node's concurrency
    # is the number of processes).
    interpreter = Interpreter(model_content=data, num_threads=1)
    interpreter.allocate_tensors()
    return interpreter


def _run(interpreter: object, tensor: np.ndarray) -> dict[str, np.ndarray]:
    it = interpreter  # ai_edge_litert ships no type information
    it.set_tensor(it.get_input_details()[0]["index"], tensor)  # type: ignore[attr-defined]
    it.invoke()  # type: ignore[attr-defined]
    return {
        d["name"]: it.get_tensor(d["index"]).copy()  # type: ignore[attr-defined]
        for d in it.get_output_details()  # type: ignore[attr-defined]
    }


def ssd_anchors() -> np.ndarray:
    """The detector's 2254 anchor centres (x, y) in 0..1, in the net's output order."""
    strides = (8, 16, 32, 32, 32)
    centres: list[tuple[float, float]] = []
    layer = 0
    while layer < len(strides):
        # Layers that share a stride share a grid; each adds two anchors per cell.
        same = layer
        while same < len(strides) and strides[same] == strides[layer]:
            same += 1
        per_cell = 2 * (same - layer)
        cells = math.ceil(DETECTOR_SIZE / strides[layer])
        for y in range(cells):
            for x in range(cells):
                centres.extend([((x + 0.5) / cells, (y + 0.5) / cells)] * per_cell)
        layer = same
    return np.array(centres, np.float32)


@dataclass(frozen=True)
class PoseRegion:
    """A detected person: score, box and the rotated square the landmark net sees (pixels)."""

    score: float
    box: np.ndarray  # x1, y1, x2, y2
    centre: tuple[float, float]
    side: float
    rotation: float  # radians, counter-clockwise in image coordinates as MediaPipe's


@dataclass(frozen=True)
class Pose:
    """One person's body: 33 landmarks (x, y in pixels, z, visibility, presence) and mask."""

    region: PoseRegion
    presence: float
    landmarks: np.ndarray  # (33, 5)
    mask: np.ndarray  # float32 0..1 at the photo's size


def _weighted_nms(boxes: np.ndarray, scores: np.ndarray, points: np.ndarray) -> list[int]:
    """MediaPipe's weighted NMS: overlapping detections are averaged, weighted by score."""
    order = np.argsort(-scores)
    kept: list[int] = []
    remaining = list(order)
    while remaining:
        top = remaining[0]
        x1 = np.maximum(boxes[top, 0], boxes[remaining, 0])
        y1 = np.maximum(boxes[top, 1], boxes[remaining, 1])
        x2 = np.minimum(boxes[top, 2], boxes[remaining, 2])
        y2 = np.minimum(boxes[top, 3], boxes[remaining, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        iou = inter / (area[top] + area[remaining] - inter + 1e-9)
        group = [r for r, o in zip(remaining, iou, strict=True) if o > _NMS_IOU]
        weights = scores[group] / scores[group].sum()
        boxes[top] = (boxes[group] * weights[:, None]).sum(axis=0)
        points[top] = (points[group] * weights[:, None, None]).sum(axis=0)
        kept.append(int(top))
        remaining = [r for r, o in zip(remaining, iou, strict=True) if o <= _NMS_IOU]
    return kept


class PoseEstimator:
    """Both BlazePose nets, loaded once; ``estimate`` is a pure function of its input."""

    def __init__(self, detector: object, landmarker: object) -> None:
        self.detector = detector
        self.landmarker = landmarker
        self.anchors = ssd_anchors()

    def detect(self, rgb: np.ndarray, *, max_people: int = 6) -> list[PoseRegion]:
        """People in an RGB ``uint8`` photo, best first."""
        height, width = rgb.shape[:2]
        scale = DETECTOR_SIZE / max(height, width)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        pad_x, pad_y = (DETECTOR_SIZE - new_w) / 2, (DETECTOR_SIZE - new_h) / 2
        canvas = np.zeros((DETECTOR_SIZE, DETECTOR_SIZE, 3), np.float32)
        resized = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA)
        left, top = int(pad_x), int(pad_y)
        canvas[top : top + new_h, left : left + new_w] = resized.astype(np.float32) / 127.5 - 1.0
        outputs = _run(self.detector, canvas[None])
        raw = next(v for v in outputs.values() if v.shape[-1] == 12)[0]
        logits = next(v for v in outputs.values() if v.shape[-1] == 1)[0, :, 0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50)))
        keep = np.flatnonzero(scores >= DETECTION_THRESHOLD)
        if keep.size == 0:
            return []
        raw, scores, anchors = raw[keep], scores[keep], self.anchors[keep]
        centre = raw[:, 0:2] / DETECTOR_SIZE + anchors
        size = raw[:, 2:4] / DETECTOR_SIZE
        boxes = np.hstack([centre - size / 2, centre + size / 2])
        points = raw[:, 4:12].reshape(-1, 4, 2) / DETECTOR_SIZE + anchors[:, None, :]
        # Letterbox to photo pixels.
        to_px = np.array([DETECTOR_SIZE, DETECTOR_SIZE], np.float32)
        offset = np.array([left, top], np.float32)
        boxes = ((boxes.reshape(-1, 2, 2) * to_px - offset) / scale).reshape(-1, 4)
        points = (points * to_px - offset) / scale
        regions = []
        for i in _weighted_nms(boxes, scores, points)[:max_people]:
            hip, top_point = points[i, 0], points[i, 1]
            dx, dy = top_point - hip
            side = 2.0 * math.hypot(dx, dy) * _ROI_SCALE
            # Rotate so that the scale point lies straight above the hip centre.
            rotation = math.pi / 2 - math.atan2(-dy, dx)
            regions.append(
                PoseRegion(
                    float(scores[i]),
                    boxes[i].copy(),
                    (float(hip[0]), float(hip[1])),
                    side,
                    rotation,
                )
            )
        return regions

    def landmarks(self, rgb: np.ndarray, region: PoseRegion) -> Pose:
        """The body's landmarks and mask inside ``region``, in photo coordinates."""
        height, width = rgb.shape[:2]
        matrix = roi_matrix(region, LANDMARK_SIZE)
        # MediaPipe's ImageToTensorCalculator replicates the border by default
        # (only the detector asks for zeros); the square usually reaches far
        # outside the photo, so this matters: zeros move the landmarks by
        # 2-4 pixels of the 256 crop (measured against MediaPipe).
        crop = cv2.warpAffine(
            rgb,
            matrix,
            (LANDMARK_SIZE, LANDMARK_SIZE),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        outputs = _run(self.landmarker, (crop.astype(np.float32) / 255.0)[None])
        flat = next(v for v in outputs.values() if v.shape == (1, 195))
        presence = next(v for v in outputs.values() if v.shape == (1, 1))
        seg = next(v for v in outputs.values() if v.shape == (1, LANDMARK_SIZE, LANDMARK_SIZE, 1))
        heatmap = next(v for v in outputs.values() if v.shape == (1, 64, 64, 39))
        marks = flat.reshape(39, 5)[:NUM_BODY].astype(np.float64)
        marks[:, :2] = refine_from_heatmap(marks[:, :2] / LANDMARK_SIZE, heatmap[0]) * LANDMARK_SIZE
        inverse = cv2.invertAffineTransform(matrix)
        xy = marks[:, :2] @ inverse[:, :2].T + inverse[:, 2]
        z = marks[:, 2] * (region.side / LANDMARK_SIZE)
        sig = 1.0 / (1.0 + np.exp(-marks[:, 3:5]))
        body = np.column_stack([xy, z, sig]).astype(np.float32)
        mask_logits = seg[0, :, :, 0]
        mask_small = 1.0 / (1.0 + np.exp(-np.clip(mask_logits, -50, 50)))
        mask = cv2.warpAffine(
            mask_small.astype(np.float32),
            inverse,
            (width, height),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
        )
        return Pose(region, float(presence[0, 0]), body, mask)

    def estimate(self, rgb: np.ndarray, *, max_people: int = 6) -> list[Pose]:
        """Every detected person whose landmark net confirms a pose."""
        poses = [self.landmarks(rgb, r) for r in self.detect(rgb, max_people=max_people)]
        return [p for p in poses if p.presence >= PRESENCE_THRESHOLD]


def refine_from_heatmap(
    points: np.ndarray, heatmap: np.ndarray, *, kernel: int = 7, min_confidence: float = 0.5
) -> np.ndarray:
    """MediaPipe's ``RefineLandmarksFromHeatmapCalculator`` on points in 0..1 of the crop.

    Each point moves to the confidence-weighted mean cell of the 7x7
    heatmap window around it, when the window's best confidence reaches
    ``min_confidence`` (as MediaPipe does, cells are weighted at their
    top-left corner).
    """
    size_y, size_x, count = heatmap.shape
    refined = points.copy()
    half = (kernel - 1) // 2
    confidence_map = 1.0 / (1.0 + np.exp(-np.clip(heatmap, -50, 50)))
    for i in range(min(count, len(points))):
        col, row = int(points[i, 0] * size_x), int(points[i, 1] * size_y)
        if not (0 <= col < size_x and 0 <= row < size_y):
            continue
        r1, r2 = max(0, row - half), min(size_y, row + half + 1)
        c1, c2 = max(0, col - half), min(size_x, col + half + 1)
        window = confidence_map[r1:r2, c1:c2, i]
        total = float(window.sum())
        if window.max() < min_confidence or total <= 0:
            continue
        rows, cols = np.mgrid[r1:r2, c1:c2]
        refined[i] = [
            (cols * window).sum() / total / size_x,
            (rows * window).sum() / total / size_y,
        ]
    return refined


def roi_matrix(region: PoseRegion, size: int) -> np.ndarray:
    """The affine map from photo pixels to the ``size`` x ``size`` rotated square."""
    cx, cy = region.centre
    cos, sin = math.cos(region.rotation), math.sin(region.rotation)
    scale = size / region.side
    # Photo -> square: shift the centre to the origin, rotate by -rotation in
    # MediaPipe's sense (its angles are counter-clockwise with y pointing down,
    # i.e. clockwise on screen), scale, shift to the square's centre.
    a = np.array([[cos, sin], [-sin, cos]]) * scale
    shift = np.array([size / 2, size / 2]) - a @ np.array([cx, cy])
    return np.hstack([a, shift[:, None]])


def load_pose(*, model_dir: Path, key: bytes | None) -> PoseEstimator:
    """Both nets from verified bytes in memory (never from a decrypted file)."""
    detector = _interpreter(read_model(DETECTOR_FILE, model_dir=model_dir, key=key))
    landmarker = _interpreter(read_model(LANDMARK_FILE, model_dir=model_dir, key=key))
    logger.info("pose detector and landmarks loaded from %s", model_dir)
    return PoseEstimator(detector, landmarker)
