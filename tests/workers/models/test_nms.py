"""NMS and pooling written in torch, against plain reference implementations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from workers.models.mtcnn import _max_pool_2x2, _max_pool_3x3
from workers.models.nms import PAIRS_MAX, batched_nms, box_overlap, nms


def reference_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str) -> list[int]:
    """The textbook greedy loop in numpy: take the best box, drop what it overlaps, repeat."""
    order = np.argsort(-scores, kind="stable")
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep: list[int] = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        w = np.clip(
            np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]),
            0,
            None,
        )
        h = np.clip(
            np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]),
            0,
            None,
        )
        inter = w * h
        denom = np.minimum(area[i], area[rest]) if mode == "min" else area[i] + area[rest] - inter
        order = rest[inter / denom <= threshold]
    return keep


def random_boxes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    xy = rng.uniform(0, 300, (n, 2))
    wh = rng.uniform(4, 80, (n, 2))
    return np.hstack([xy, xy + wh]).astype(np.float32), rng.uniform(0, 1, n).astype(np.float32)


@pytest.mark.parametrize("mode", ["iou", "min"])
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_keeps_what_the_greedy_loop_keeps(mode: str, threshold: float) -> None:
    rng = np.random.default_rng(7)
    for n in (1, 2, 17, 150):
        boxes, scores = random_boxes(rng, n)

        kept = nms(torch.from_numpy(boxes), torch.from_numpy(scores), threshold, mode=mode)  # type: ignore[arg-type]

        assert kept.tolist() == reference_nms(boxes, scores, threshold, mode)


def test_many_boxes_spread_over_a_photo_agree() -> None:
    rng = np.random.default_rng(3)
    boxes, scores = random_boxes(rng, 2500)

    kept = nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.5)

    assert kept.tolist() == reference_nms(boxes, scores, 0.5, "iou")


def test_the_loop_fallback_for_boxes_piled_on_one_spot_agrees() -> None:
    rng = np.random.default_rng(5)
    xy = rng.uniform(0, 20, (3000, 2))
    boxes = np.hstack([xy, xy + rng.uniform(40, 80, (3000, 2))]).astype(np.float32)
    scores = rng.uniform(0, 1, 3000).astype(np.float32)
    assert PAIRS_MAX < 3000 * 2999 // 2  # every pair overlaps

    kept = nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.5)

    assert kept.tolist() == reference_nms(boxes, scores, 0.5, "iou")


def test_batched_nms_never_suppresses_across_groups() -> None:
    box = torch.tensor([[10.0, 10.0, 50.0, 50.0]])
    boxes = box.repeat(4, 1)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])

    kept = batched_nms(boxes, scores, torch.tensor([0, 0, 1, 1]), 0.5)

    assert sorted(kept.tolist()) == [0, 2]


def test_overlap_of_known_boxes() -> None:
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [2.0, 2.0, 4.0, 4.0], [20.0, 20.0, 30.0, 30.0]])

    iou = box_overlap(a, b)[0].tolist()
    over_min = box_overlap(a, b, mode="min")[0].tolist()

    assert iou == pytest.approx([50 / 150, 4 / 100, 0.0])
    assert over_min == pytest.approx([0.5, 1.0, 0.0])


@pytest.mark.parametrize(("h", "w"), [(6, 8), (7, 8), (6, 9), (11, 13)])
def test_the_fast_pooling_is_max_pool_with_ceil_mode(h: int, w: int) -> None:
    x = torch.randn(2, 10, h, w).contiguous(memory_format=torch.channels_last)

    assert torch.equal(_max_pool_2x2(x), F.max_pool2d(x, 2, 2, ceil_mode=True))


@pytest.mark.parametrize(("h", "w"), [(22, 22), (9, 9), (46, 46), (21, 21), (5, 8), (3, 4)])
def test_the_fast_3x3_pooling_is_max_pool_with_ceil_mode(h: int, w: int) -> None:
    x = torch.randn(4, 28, h, w).contiguous(memory_format=torch.channels_last)

    pooled = _max_pool_3x3(x)

    assert torch.equal(pooled, F.max_pool2d(x, 3, 2, ceil_mode=True))
    assert pooled.is_contiguous(memory_format=torch.channels_last)
