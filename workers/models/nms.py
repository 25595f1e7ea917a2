"""Box overlap and non-maximum suppression in torch (there is no torchvision here).

Boxes are ``(N, 4)`` float tensors of ``x1, y1, x2, y2`` in pixels, with
``x2 > x1`` and ``y2 > y1`` for a real box; areas are continuous, not the
``+ 1`` pixel-count convention of the original MATLAB code.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

Overlap = Literal["iou", "min"]


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def box_overlap(a: torch.Tensor, b: torch.Tensor, *, mode: Overlap = "iou") -> torch.Tensor:
    """Pairwise overlap ``(N, M)``: intersection over union, or over the smaller area.

    ``"min"`` is what MTCNN's last stage uses: a small box inside a bigger one
    (a face part found as a face) counts as a duplicate even though its IoU is low.
    """
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = box_area(a)[:, None]
    area_b = box_area(b)[None, :]
    denom = torch.minimum(area_a, area_b) if mode == "min" else area_a + area_b - inter
    return inter / denom.clamp(min=1e-9)


#: Above this many boxes the overlap matrix (N^2 floats) costs more memory than
#: it is worth, and NMS falls back to the loop over kept boxes.
MATRIX_MAX = 2048


def nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    threshold: float,
    *,
    mode: Overlap = "iou",
) -> torch.Tensor:
    """Greedy NMS: indices of the kept boxes, highest score first.

    A box is dropped when its overlap with a kept, higher-scoring box exceeds
    ``threshold``. Up to ``MATRIX_MAX`` boxes all overlaps are computed at
    once and a scan applies them; beyond, a loop over the kept boxes. (A loop
    per kept box costs ~50 us of torch overhead per step, which was most of
    MTCNN's time on a busy photo.)
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long)
    order = torch.argsort(scores, descending=True, stable=True)
    if order.numel() > MATRIX_MAX:
        return _nms_loop(boxes, order, threshold, mode=mode)
    # over[i, j]: box i outranks box j and overlaps it too much. One scan in
    # rank order then keeps a box unless a kept box above it overlaps it. The
    # matrix is built in numpy with the same float32 arithmetic as
    # ``box_overlap`` (so the same boxes are kept): torch's per-op overhead made
    # it 3x slower at the few hundred boxes of a P-Net level (2.4 against 0.75
    # ms), and NMS was a tenth of MTCNN's time at 1080p.
    ranked = boxes[order].numpy()
    over = np.triu(_overlap_np(ranked, mode=mode) > threshold, 1)
    keep = np.ones(order.numel(), dtype=bool)
    for i in range(order.numel()):
        if keep[i]:
            keep &= ~over[i]
    return order[torch.from_numpy(keep)]


def _overlap_np(boxes: np.ndarray, *, mode: Overlap) -> np.ndarray:
    """``box_overlap(boxes, boxes)`` in numpy, operation for operation."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    w = np.clip(np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None]), 0, None)
    h = np.clip(np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None]), 0, None)
    inter = w * h
    if mode == "min":
        denom = np.minimum(area[:, None], area[None])
    else:
        denom = area[:, None] + area[None] - inter
    return inter / np.maximum(denom, np.float32(1e-9))  # type: ignore[no-any-return]


def _nms_loop(
    boxes: torch.Tensor, order: torch.Tensor, threshold: float, *, mode: Overlap
) -> torch.Tensor:
    """Greedy NMS, one vectorised step per kept box; ``order`` ranks the boxes."""
    remaining = order
    keep: list[torch.Tensor] = []
    while remaining.numel() > 0:
        best = remaining[0]
        keep.append(best)
        rest = remaining[1:]
        if rest.numel() == 0:
            break
        overlap = box_overlap(boxes[best].unsqueeze(0), boxes[rest], mode=mode)[0]
        remaining = rest[overlap <= threshold]
    return torch.stack(keep)


def batched_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    groups: torch.Tensor,
    threshold: float,
    *,
    mode: Overlap = "iou",
) -> torch.Tensor:
    """NMS within each group (e.g. each pyramid scale) in one pass.

    Shifting each group's boxes by a group-specific offset larger than any
    coordinate makes boxes of different groups disjoint, so one NMS call
    never lets a box of one group suppress a box of another.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long)
    offset = groups.to(boxes.dtype) * (boxes.max() + 1.0)
    return nms(boxes + offset[:, None], scores, threshold, mode=mode)
