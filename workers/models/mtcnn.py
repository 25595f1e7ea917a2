"""MTCNN (Zhang et al., 2016) written in torch, with facenet-pytorch's weights.

The three nets keep facenet-pytorch's layer names and layout (including the
``permute(0, 3, 2, 1)`` before the dense layers, which undoes the transposed
images the original Caffe models were trained on), so its state dicts load
unchanged. Everything around the nets is written here: the image pyramid,
candidate generation, bounding-box regression, squaring, cropping with zero
padding (as the original MATLAB code did; facenet-pytorch clips instead, which
distorts faces at the border) and non-maximum suppression. Each stage runs all
its candidates through its net in batches.

Inputs are RGB ``uint8`` arrays: the weights were trained on RGB.
"""

from __future__ import annotations

import io
import itertools
import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention
from torch import nn

from workers.model_files import read_model
from workers.models.detections import Faces
from workers.models.nms import nms

logger = logging.getLogger(__name__)

#: Recall-first defaults for anonymization; facenet-pytorch uses 0.6, 0.7, 0.7.
DEFAULT_THRESHOLDS: tuple[float, float, float] = (0.6, 0.6, 0.6)
DEFAULT_MIN_FACE = 20.0
PYRAMID_FACTOR = 0.709  # the paper's: each level is half the area of the previous
_PNET_CELL = 12
_PNET_STRIDE = 2
#: Candidates per forward pass of R-Net and O-Net. Measured on one core: the
#: time per crop is lowest when a batch's activations stay in cache (R-Net 128
#: crops, about 7 MB; O-Net 16, about 4 MB); O-Net batches of 128 run 2.5x
#: slower per crop. Chunks also bound peak memory.
_RNET_BATCH = 128
_ONET_BATCH = 16


#: The nets were trained on ``(pixel - 127.5) * 0.0078125``.
_PIXEL_MEAN = 127.5
_PIXEL_SCALE = 0.0078125


def take_pixels(conv: nn.Conv2d) -> None:
    """Fold the input normalisation into a net's first conv: it then takes 0..255 pixels.

    ``conv((x - m) * s) == conv'(x)`` with weights ``w * s`` and bias ``b - m * s *
    sum(w)`` (the convs have no padding, so every input is a pixel; ``s`` is a power
    of two, so the weights are scaled exactly). One pass over every pyramid level
    and every crop batch less; with OpenCV resampling the later pyramid levels,
    MTCNN's CPU time on a 1080p group photo fell from 170 to 158 ms.
    """
    bias = conv.bias
    assert bias is not None  # the first convs are built with one
    with torch.no_grad():
        bias -= _PIXEL_MEAN * _PIXEL_SCALE * conv.weight.sum(dim=(1, 2, 3))
        conv.weight *= _PIXEL_SCALE


def _max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``MaxPool2d(2, 2, ceil_mode=True)`` as two elementwise maxima of strided views.

    Same result; on the big first pyramid level it is ~10x faster than
    ``max_pool2d``, whose kernel was a fifth of P-Net's time.
    """
    height, width = x.shape[-2:]
    if height % 2 or width % 2:  # MTCNN.detect feeds even sizes; others are padded
        x = F.pad(x, (0, width % 2, 0, height % 2), value=float("-inf"))
    rows = torch.maximum(x[..., 0::2, :], x[..., 1::2, :])
    return torch.maximum(rows[..., 0::2], rows[..., 1::2])


def _max_pool_3x3(x: torch.Tensor) -> torch.Tensor:
    """``MaxPool2d(3, 2, ceil_mode=True)`` as elementwise maxima of strided views, one axis
    at a time.

    Same result, and the layout (channels-last) kept. On R-Net's and O-Net's
    first pools, the big ones, 2.5x and 1.9x faster than ``max_pool2d``, which
    also computed indices: the pools were a sixth of R-Net's time.
    """
    return _pool_3_2(_pool_3_2(x, 2), 3)


def _pool_3_2(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Maxima of windows of 3 at stride 2 along ``dim``; the last may be a pair (ceil mode)."""
    windows = (x.shape[dim] - 2) // 2 + 1

    def every_other(start: int, stop: int) -> torch.Tensor:
        index: list[slice] = [slice(None)] * x.dim()
        index[dim] = slice(start, stop, 2)
        return x[tuple(index)]

    out = torch.maximum(every_other(0, 2 * windows), every_other(1, 2 * windows))
    third = every_other(2, 2 * windows + 1)
    head = out.narrow(dim, 0, third.shape[dim])
    torch.maximum(head, third, out=head)
    return out


class PReLU(nn.PReLU):
    """``nn.PReLU`` (same parameter, same state-dict key) with a faster exact path.

    With every slope <= 1, ``prelu(x) == max(x, slope * x)`` bit for bit, and
    two vectorised passes beat torch's PReLU kernel, which was a quarter of
    MTCNN's time. Layers with a slope above 1 keep the kernel.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((self.weight <= 1).all()):
            shape = (1, -1) + (1,) * (x.dim() - 2)
            scaled = x * self.weight.view(shape)
            # Into the product's own buffer: a fresh output for the maximum
            # measured ten times slower than the whole PReLU kernel.
            return torch.maximum(x, scaled, out=scaled)
        return super().forward(x)


class PNet(nn.Module):
    """Proposal net: fully convolutional, one 12x12 window every 2 pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = PReLU(10)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The features the two 1x1 heads read, channels-last: ``(N, h, w, 32)``."""
        x = _max_pool_2x2(self.prelu1(self.conv1(x)))
        x = self.prelu2(self.conv2(x))
        return self.prelu3(self.conv3(x)).permute(0, 2, 3, 1)

    def candidates(
        self, x: torch.Tensor, threshold: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Windows of the first image of ``x`` whose face probability reaches ``threshold``.

        Returns their rows, columns, probabilities and box regressions ``(n, 4)``.
        The softmax over two logits is the sigmoid of their difference, so the
        classifier is one dot product per window, and the regression runs only
        on the few hundred windows kept: both heads over every window as one
        matmul took 4.8 ms of P-Net's 47 at 960x540, the dot product 2.
        """
        features = self(x)[0]  # (h, w, 32), contiguous
        cls_w, cls_b = self.conv4_1.weight.flatten(1), self.conv4_1.bias
        assert cls_b is not None  # built with a bias; the type says Optional
        prob = torch.sigmoid(features @ (cls_w[1] - cls_w[0]) + (cls_b[1] - cls_b[0]))
        ys, xs = torch.nonzero(prob >= threshold, as_tuple=True)
        reg = F.linear(features[ys, xs], self.conv4_2.weight.flatten(1), self.conv4_2.bias)
        return ys, xs, prob[ys, xs], reg


class RNet(nn.Module):
    """Refinement net on 24x24 crops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = PReLU(28)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = PReLU(48)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Box regression ``(N, 4)`` and face probability ``(N,)``."""
        x = _max_pool_3x3(self.prelu1(self.conv1(x)))
        x = _max_pool_3x3(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = x.permute(0, 3, 2, 1).contiguous()
        x = self.prelu4(self.dense4(x.view(x.shape[0], -1)))
        prob = torch.softmax(self.dense5_1(x), dim=1)[:, 1]
        return self.dense5_2(x), prob


class ONet(nn.Module):
    """Output net on 48x48 crops: final box, score and five landmarks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = PReLU(32)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = PReLU(64)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = PReLU(64)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Box regression ``(N, 4)``, landmarks ``(N, 10)`` (5 x then 5 y), probability."""
        x = _max_pool_3x3(self.prelu1(self.conv1(x)))
        x = _max_pool_3x3(self.prelu2(self.conv2(x)))
        x = _max_pool_2x2(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).contiguous()
        x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
        prob = torch.softmax(self.dense6_1(x), dim=1)[:, 1]
        return self.dense6_2(x), self.dense6_3(x), prob


def pyramid_scales(height: int, width: int, *, min_face: float, factor: float) -> list[float]:
    """Scales at which a P-Net window of 12 px covers faces from ``min_face`` px up."""
    scale = _PNET_CELL / min_face
    side = min(height, width) * scale
    scales = []
    while side >= _PNET_CELL:
        scales.append(scale)
        scale *= factor
        side *= factor
    return scales


def _level_thresholds(threshold: float, floors: Sequence[float]) -> Iterator[float]:
    """P-Net's threshold for each pyramid level in turn, endless: ``floors`` raise the first."""
    yield from (max(threshold, floor) for floor in floors)
    yield from itertools.repeat(threshold)


def regress(boxes: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    """Apply the nets' box regression: offsets are fractions of the box's size."""
    size = torch.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], dim=1).repeat(1, 2)
    return boxes + reg * size


def square(boxes: torch.Tensor) -> torch.Tensor:
    """The square with the box's centre and its longer side (the nets see squares)."""
    wh = boxes[:, 2:] - boxes[:, :2]
    side = wh.max(dim=1).values[:, None]
    centre = boxes[:, :2] + wh / 2
    return torch.cat([centre - side / 2, centre + side / 2], dim=1)


def crop_batch(rgb: np.ndarray, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Each box cut out of ``rgb`` (zero outside the image), resized to ``size`` square.

    Area interpolation averages over the source pixels, so a large face is not
    aliased down to 24 px. Returns the ``(N, 3, size, size)`` float batch of 0..255
    pixels, channels-last.
    """
    height, width = rgb.shape[:2]
    boxes_int = boxes.round().to(torch.int64).tolist()
    out = np.zeros((len(boxes_int), size, size, 3), np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes_int):
        if x2 <= x1 or y2 <= y1:
            continue
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
        if sx2 <= sx1 or sy2 <= sy1:
            continue
        if (sx1, sy1, sx2, sy2) == (x1, y1, x2, y2):
            patch = rgb[y1:y2, x1:x2]
        else:
            patch = np.zeros((y2 - y1, x2 - x1, 3), np.uint8)
            patch[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = rgb[sy1:sy2, sx1:sx2]
        out[k] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(out).permute(0, 3, 1, 2).float()


class MTCNN:
    """The three-stage cascade; ``detect`` is a pure function of its inputs."""

    def __init__(self, pnet: PNet, rnet: RNet, onet: ONet) -> None:
        self.pnet, self.rnet, self.onet = pnet, rnet, onet

    @torch.inference_mode()
    def detect(
        self,
        rgb: np.ndarray,
        *,
        min_face: float = DEFAULT_MIN_FACE,
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        factor: float = PYRAMID_FACTOR,
        level_floors: Sequence[float] = (),
    ) -> Faces:
        """Faces in an RGB ``uint8`` image, in its pixel coordinates.

        ``min_face`` below 12 px is raised to 12: P-Net's window cannot see smaller.
        ``level_floors[i]``, if given, is the least P-Net threshold of pyramid
        level ``i`` (level 0 sees the smallest faces); the others use ``thresholds[0]``.
        """
        min_face = max(float(min_face), float(_PNET_CELL))
        boxes = self._propose(
            rgb,
            min_face=min_face,
            thresholds=_level_thresholds(thresholds[0], level_floors),
            factor=factor,
        )
        if boxes.shape[0]:
            boxes = self._refine(rgb, boxes, threshold=thresholds[1])
        if boxes.shape[0] == 0:
            return Faces.empty()
        return self._output(rgb, boxes, threshold=thresholds[2])

    def _propose(
        self, rgb: np.ndarray, *, min_face: float, thresholds: Iterator[float], factor: float
    ) -> torch.Tensor:
        """Stage 1: P-Net over the pyramid -> squared candidate boxes ``(N, 4)``."""
        height, width = rgb.shape[:2]
        # Channels-last all the way (the HWC array already is): oneDNN's
        # convolutions run several times faster on it than on NCHW, above all
        # P-Net's first conv with its three input channels. The
        # batch axis goes in before the permute: added after it, its stride is
        # 3, which ``contiguous(channels_last)`` accepts as is but oneDNN took
        # for NCHW, so a level used unresampled (1080p's first) ran NCHW and
        # its heads' linear fell back to a batched matmul: P-Net at 960x540
        # took 80 ms instead of 49.
        level = torch.from_numpy(rgb)[None].permute(0, 3, 1, 2).float()
        found: list[torch.Tensor] = []
        first = True
        scales = pyramid_scales(height, width, min_face=min_face, factor=factor)
        for scale, threshold in zip(scales, thresholds, strict=False):
            # Even sizes: P-Net's 2x2 pooling then needs no padding (which
            # would also drop the channels-last layout). The exact scale of
            # each axis maps the windows back.
            size_h = 2 * math.ceil(height * scale / 2)
            size_w = 2 * math.ceil(width * scale / 2)
            # The first level comes from the full image with an antialiased
            # filter (it may shrink it a lot); each next one from the previous
            # level, shrunk only by ``factor``, where plain bilinear barely
            # aliases and costs a quarter (OpenCV's, on the channels-last
            # level seen as an HWC array, a third of torch's: 0.6 against 1.9
            # ms from 960x540).
            if (size_h, size_w) != tuple(level.shape[-2:]):
                if first:
                    level = F.interpolate(
                        level, size=(size_h, size_w), mode="bilinear", antialias=True
                    )
                else:
                    hwc = level[0].permute(1, 2, 0).numpy()
                    hwc = cv2.resize(hwc, (size_w, size_h), interpolation=cv2.INTER_LINEAR)
                    level = torch.from_numpy(hwc)[None].permute(0, 3, 1, 2)
            # (At scale 1, as for 1080p's detection copy, the level is the image.)
            level = level.contiguous(memory_format=torch.channels_last)
            first = False
            ys, xs, score, offsets = self.pnet.candidates(level, threshold)
            if ys.numel() == 0:
                continue
            origin = torch.stack([xs, ys], dim=1).float() * _PNET_STRIDE
            per_axis = torch.tensor([size_w / width, size_h / height]).repeat(2)
            cand = torch.cat([origin, origin + _PNET_CELL], dim=1) / per_axis
            keep = nms(cand, score, 0.5)
            found.append(torch.cat([cand[keep], score[keep, None], offsets[keep]], dim=1))
        if not found:
            return torch.zeros((0, 4))
        cand = torch.cat(found)
        keep = nms(cand[:, :4], cand[:, 4], 0.7)
        cand = cand[keep]
        return square(regress(cand[:, :4], cand[:, 5:9]))

    def _refine(self, rgb: np.ndarray, boxes: torch.Tensor, *, threshold: float) -> torch.Tensor:
        """Stage 2: R-Net on 24x24 crops -> fewer, better boxes."""
        regs, probs = [], []
        for start in range(0, boxes.shape[0], _RNET_BATCH):
            reg, prob = self.rnet(crop_batch(rgb, boxes[start : start + _RNET_BATCH], 24))
            regs.append(reg)
            probs.append(prob)
        reg, prob = torch.cat(regs), torch.cat(probs)
        ok = prob > threshold
        boxes, reg, prob = boxes[ok], reg[ok], prob[ok]
        keep = nms(boxes, prob, 0.7)
        return square(regress(boxes[keep], reg[keep]))

    def _output(self, rgb: np.ndarray, boxes: torch.Tensor, *, threshold: float) -> Faces:
        """Stage 3: O-Net on 48x48 crops -> final boxes, scores and landmarks."""
        regs, marks, probs = [], [], []
        for start in range(0, boxes.shape[0], _ONET_BATCH):
            reg, mark, prob = self.onet(crop_batch(rgb, boxes[start : start + _ONET_BATCH], 48))
            regs.append(reg)
            marks.append(mark)
            probs.append(prob)
        reg, mark, prob = torch.cat(regs), torch.cat(marks), torch.cat(probs)
        ok = prob > threshold
        boxes, reg, mark, prob = boxes[ok], reg[ok], mark[ok], prob[ok]
        if boxes.shape[0] == 0:
            return Faces.empty()
        # Landmarks are fractions of the box O-Net saw, before its regression.
        size = boxes[:, 2:] - boxes[:, :2]
        xs = boxes[:, 0:1] + mark[:, :5] * size[:, 0:1]
        ys = boxes[:, 1:2] + mark[:, 5:] * size[:, 1:2]
        points = torch.stack([xs, ys], dim=2)
        boxes = regress(boxes, reg)
        keep = nms(boxes, prob, 0.7, mode="min")
        return Faces(
            boxes[keep].numpy().astype(np.float32),
            prob[keep].numpy().astype(np.float32),
            points[keep].numpy().astype(np.float32),
        )


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run the block with one intra-op thread, then restore the setting.

    Copying the weights into the modules is big enough for torch to run it
    in parallel, which starts the OpenMP thread pool. The Celery parent loads
    the models and then forks, and a child that inherits a started pool hangs
    in its first parallel op (the fork test catches that). With one thread no
    pool starts, and the children start their own.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def load_mtcnn(*, model_dir: Path, key: bytes | None) -> MTCNN:
    """Load the three nets from verified (and, if sealed, decrypted) bytes.

    ``weights_only=True``: the files are pickles, and a state dict needs no
    code execution to load.
    """

    def load(net: PNet | RNet | ONet, name: str) -> None:
        data = read_model(name, model_dir=model_dir, key=key)
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
        net.eval().requires_grad_(False)
        take_pixels(net.conv1)

    pnet, rnet, onet = PNet(), RNet(), ONet()
    with _one_thread():
        load(pnet, "pnet.pt")
        load(rnet, "rnet.pt")
        load(onet, "onet.pt")
    logger.info("MTCNN loaded from %s", model_dir)
    return MTCNN(pnet, rnet, onet)
