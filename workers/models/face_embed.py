"""dlib's ResNet face descriptor (128-d), written in torch, with face-api's TF.js weights.

Davis King's ``dlib_face_recognition_resnet_model_v1`` (public domain) as
ported to TF.js by face-api (``@vladmandic/face-api@1.7.15``, MIT): the
weights are 117 tensors in one ``.bin`` file, described by a JSON manifest
(name, shape, and for each an 8-bit quantisation ``value = q * scale + min``).
They are read and dequantized here with numpy; no TensorFlow is involved.

The architecture follows face-api's ``FaceRecognitionNet`` (read, not
copied): a 7x7 stride-2 "valid" conv and a 3x3 stride-2 max-pool, then
residual blocks at 32, 64, 128 and 256 channels whose down-sampling blocks
add a 2x2 average pool of their input (zero-padded in channels, and their own
output zero-padded by one row and column where the shapes differ, as TF.js
does), a global mean and a 256x128 linear map. Every conv is followed by a
per-channel scale and shift (dlib's affine layer). Input: a 150x150 RGB crop,
minus the mean colour, divided by 255.

Two faces are the same person when their descriptors are closer than a
threshold in Euclidean distance (dlib trained for 0.6).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention
from torch import nn

from workers.model_files import read_model

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "face_recognition_model.bin"
MANIFEST_FILE = "face_recognition_model-weights_manifest.json"
SIZE = 150
MEAN_RGB = (122.782, 117.001, 104.298)

#: (name, stride-2 "down" block?) in the order of the forward pass.
BLOCKS: tuple[tuple[str, bool], ...] = (
    ("conv32_1", False),
    ("conv32_2", False),
    ("conv32_3", False),
    ("conv64_down", True),
    ("conv64_1", False),
    ("conv64_2", False),
    ("conv64_3", False),
    ("conv128_down", True),
    ("conv128_1", False),
    ("conv128_2", False),
    ("conv256_down", True),
    ("conv256_1", False),
    ("conv256_2", False),
    ("conv256_down_out", True),
)


def chip_points(size: int = SIZE) -> np.ndarray:
    """Where our five landmarks go in the net's input: face-api's dlib framing.

    face-api crops a square of side ``eye-to-mouth distance / 0.45`` whose
    point (0.5, 0.43) is the centroid of the eye centres and the mouth centre
    (``FaceLandmarks.alignDlib``). The ArcFace template's five points (a
    canonical face) are placed so that they satisfy the same two conditions;
    the mouth centre is the mean of the mouth corners.
    """
    from workers.models.align import ARCFACE_112

    eyes, mouth = ARCFACE_112[:2], ARCFACE_112[3:].mean(axis=0)
    eye_to_mouth = float(np.linalg.norm(eyes - mouth, axis=1).mean())
    centroid = np.vstack([eyes, mouth]).mean(axis=0)
    scale = 0.45 * size / eye_to_mouth
    return (ARCFACE_112 - centroid) * scale + np.array([0.5, 0.43]) * size


def dequantize(manifest: list[dict[str, object]], data: bytes) -> dict[str, np.ndarray]:
    """The named float32 tensors of a TF.js weights file (uint8-quantised or float32)."""
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for group in manifest:
        for spec in group["weights"]:  # type: ignore[attr-defined]
            shape = tuple(int(d) for d in spec["shape"])
            count = int(np.prod(shape)) if shape else 1
            quant = spec.get("quantization")
            if quant is None:
                if spec["dtype"] != "float32":
                    raise ValueError(f"{spec['name']}: unsupported dtype {spec['dtype']}")
                raw = np.frombuffer(data, np.float32, count, offset)
                offset += 4 * count
                values = raw.astype(np.float32)
            else:
                if quant["dtype"] != "uint8":
                    raise ValueError(f"{spec['name']}: unsupported quantisation {quant['dtype']}")
                raw = np.frombuffer(data, np.uint8, count, offset)
                offset += count
                values = raw.astype(np.float32) * np.float32(quant["scale"]) + np.float32(
                    quant["min"]
                )
            tensors[spec["name"]] = values.reshape(shape)
    if offset != len(data):
        raise ValueError(f"the manifest describes {offset} bytes, the weights file has {len(data)}")
    return tensors


@dataclass(frozen=True)
class _Conv:
    weight: torch.Tensor  # (out, in, kh, kw)
    bias: torch.Tensor
    scale: torch.Tensor
    shift: torch.Tensor


class DlibResNet(nn.Module):
    """The 29-layer ResNet; ``forward`` maps (N, 3, 150, 150) normalised RGB to (N, 128)."""

    def __init__(self, tensors: dict[str, np.ndarray]) -> None:
        super().__init__()
        self._convs: dict[str, _Conv] = {}
        for name in ["conv32_down", *(f"{b}/conv{i}" for b, _ in BLOCKS for i in (1, 2))]:
            self._convs[name] = _Conv(
                torch.from_numpy(tensors[f"{name}/conv/filters"].transpose(3, 2, 0, 1).copy()),
                torch.from_numpy(tensors[f"{name}/conv/bias"].copy()),
                torch.from_numpy(tensors[f"{name}/scale/weights"].copy()),
                torch.from_numpy(tensors[f"{name}/scale/biases"].copy()),
            )
        self.fc = torch.from_numpy(tensors["fc"].copy())  # (256, 128)
        expected = 4 * len(self._convs) + 1
        if len(tensors) != expected:
            raise ValueError(f"the weights have {len(tensors)} tensors, the net uses {expected}")

    def _conv(self, x: torch.Tensor, name: str, *, down: bool, relu: bool) -> torch.Tensor:
        c = self._convs[name]
        # TF "same" for an odd kernel at stride 1 pads k//2 on every side;
        # "valid" pads nothing.
        pad = 0 if down else c.weight.shape[-1] // 2
        out = F.conv2d(x, c.weight, c.bias, stride=2 if down else 1, padding=pad)
        out = out * c.scale[None, :, None, None] + c.shift[None, :, None, None]
        return F.relu(out) if relu else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._conv(x, "conv32_down", down=True, relu=True)
        out = F.max_pool2d(out, 3, 2)
        for name, down in BLOCKS:
            out = self._block(out, name, down=down)
        return out.mean(dim=(2, 3)) @ self.fc

    def _block(self, x: torch.Tensor, name: str, *, down: bool) -> torch.Tensor:
        out = self._conv(x, f"{name}/conv1", down=down, relu=True)
        out = self._conv(out, f"{name}/conv2", down=False, relu=False)
        if not down:
            return F.relu(out + x)
        pooled = F.avg_pool2d(x, 2, 2)
        if pooled.shape[-2:] != out.shape[-2:]:
            # A 3x3 "valid" stride-2 conv yields one row and column fewer than
            # the 2x2 pool for even sizes; face-api pads zeros at the end.
            out = F.pad(out, (0, 1, 0, 1))
        if pooled.shape[1] != out.shape[1]:
            pooled = F.pad(pooled, (0, 0, 0, 0, 0, out.shape[1] - pooled.shape[1]))
        return F.relu(out + pooled)


class FaceEmbedder:
    """The loaded net; ``embed`` is a pure function of its input."""

    def __init__(self, net: DlibResNet) -> None:
        self.net = net.eval()

    @torch.inference_mode()
    def embed(self, rgb150: np.ndarray) -> np.ndarray:
        """The 128-d descriptors of aligned RGB ``uint8`` crops, (150, 150, 3) or (N, ...)."""
        batch = rgb150[None] if rgb150.ndim == 3 else rgb150
        if batch.shape[1:] != (SIZE, SIZE, 3):
            raise ValueError(f"the net takes {SIZE}x{SIZE} RGB crops, got {rgb150.shape}")
        x = torch.from_numpy(batch.astype(np.float32))
        x = (x - torch.tensor(MEAN_RGB)) / 255.0
        out = self.net(x.permute(0, 3, 1, 2).contiguous())
        result: np.ndarray = out.numpy()
        return result[0] if rgb150.ndim == 3 else result


def load_face_embedder(*, model_dir: Path, key: bytes | None) -> FaceEmbedder:
    """Read and dequantize the verified weights in memory and build the net."""
    manifest = json.loads(read_model(MANIFEST_FILE, model_dir=model_dir, key=key))
    tensors = dequantize(manifest, read_model(WEIGHTS_FILE, model_dir=model_dir, key=key))
    logger.info("face embedding (dlib ResNet) loaded from %s", model_dir)
    return FaceEmbedder(DlibResNet(tensors))
