"""Align a face on its five landmarks to a canonical template (a similarity transform).

The template is InsightFace's five-point ArcFace template for 112x112 crops,
the de-facto standard for aligned faces, scaled to the output size and
optionally padded so that the crop shows some hair and chin.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

#: Left eye, right eye, nose, left and right mouth corner in a 112x112 crop.
ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    np.float64,
)


def template(size: int, padding: float) -> np.ndarray:
    """Template points for a ``size`` crop that adds ``padding`` of the face on each side."""
    unit = ARCFACE_112 / 112.0
    return (unit + padding) / (1.0 + 2.0 * padding) * size


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift; no mirror) src -> dst.

    Umeyama (1991): the closed form, so the same landmarks always give the
    same crop, unlike OpenCV's RANSAC estimators.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mean_s, mean_d = src.mean(axis=0), dst.mean(axis=0)
    s0, d0 = src - mean_s, dst - mean_d
    cov = d0.T @ s0 / len(src)
    u, sing, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0
    rotation = u @ np.diag(d) @ vt
    var_s = (s0**2).sum() / len(src)
    scale = float((sing * d).sum() / var_s) if var_s > 0 else 1.0
    shift = mean_d - scale * rotation @ mean_s
    return np.hstack([scale * rotation, shift[:, None]])


def align(
    image: np.ndarray,
    landmarks: np.ndarray,
    *,
    size: int,
    padding: float,
    points: np.ndarray | None = None,
) -> np.ndarray:
    """The face warped so its landmarks sit on the template, ``size`` x ``size``.

    ``points`` replaces the template (five points in the output's pixels) for
    a model trained on another framing, such as dlib's face chips.

    A warp that shrinks a large face by more than 2x would alias (warpAffine
    samples, it does not average), so the source region is first reduced
    with area averaging to about the output's scale.
    """
    target = template(size, padding) if points is None else np.asarray(points, np.float64)
    matrix = similarity(landmarks, target)
    scale = math.hypot(matrix[0, 0], matrix[1, 0])
    if scale < 0.5:
        # Only the part of the image the crop can see is reduced.
        corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64)
        inverse = cv2.invertAffineTransform(matrix)
        source = corners @ inverse[:, :2].T + inverse[:, 2]
        height, width = image.shape[:2]
        x1 = int(max(0, math.floor(source[:, 0].min())))
        y1 = int(max(0, math.floor(source[:, 1].min())))
        x2 = int(min(width, math.ceil(source[:, 0].max())))
        y2 = int(min(height, math.ceil(source[:, 1].max())))
        if x2 > x1 and y2 > y1:
            region = image[y1:y2, x1:x2]
            new_size = (max(1, round((x2 - x1) * scale)), max(1, round((y2 - y1) * scale)))
            image = cv2.resize(region, new_size, interpolation=cv2.INTER_AREA)
            fx, fy = new_size[0] / (x2 - x1), new_size[1] / (y2 - y1)
            shifted = (np.asarray(landmarks, np.float64) - [x1, y1]) * [fx, fy]
            matrix = similarity(shifted, target)
    return cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
