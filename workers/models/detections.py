"""What a face detector returns: boxes, scores and five landmarks per face."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Faces:
    """Detected faces in pixel coordinates of the image the detector was given.

    ``boxes`` is ``(N, 4)`` ``x1, y1, x2, y2``; ``scores`` is ``(N,)``;
    ``landmarks`` is ``(N, 5, 2)`` ``x, y`` for the left eye, right eye, nose,
    left and right mouth corner, "left" meaning the image's left.
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    @classmethod
    def empty(cls) -> Faces:
        return cls(
            np.zeros((0, 4), np.float32),
            np.zeros((0,), np.float32),
            np.zeros((0, 5, 2), np.float32),
        )

    @classmethod
    def concat(cls, parts: Sequence[Faces]) -> Faces:
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.boxes for p in parts]).astype(np.float32),
            np.concatenate([p.scores for p in parts]).astype(np.float32),
            np.concatenate([p.landmarks for p in parts]).astype(np.float32),
        )

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def scaled(self, factor: float, factor_y: float | None = None) -> Faces:
        """The same faces in an image ``factor`` times as large (maps a detection copy back);
        ``factor_y``, if given, for the height (a copy not of the same aspect)."""
        fx, fy = factor, factor if factor_y is None else factor_y
        xy = np.array([fx, fy], np.float32)
        return Faces(self.boxes * np.tile(xy, 2), self.scores, self.landmarks * xy)

    def clipped(self, width: int, height: int) -> Faces:
        """Boxes clipped to the image; landmarks are left alone (they may lie outside)."""
        boxes = self.boxes.copy()
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
        return Faces(boxes, self.scores, self.landmarks)
