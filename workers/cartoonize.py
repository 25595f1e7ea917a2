"""The ``cartoonize`` task: an edge-preserving cartoon rendering of the photo.

``load()`` imports the torch code in ``workers.models.cartoon``; importing this
module stays cheap, so the registry can list it without loading torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from workers.registry import Runner


def load() -> Runner:
    """Import the torch implementation; it has no weights, so nothing else to prepare.

    No tensor work happens here: load() runs before the worker forks, and a parent that has
    started torch's intra-op thread pool can leave forked children hanging on it.
    """
    from workers.models.cartoon import cartoonize

    def run(image: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
        # JSON Schema's "integer" admits 3.0, which range() and the quantiser reject.
        return cartoonize(
            image,
            levels=int(params["levels"]),
            edge_strength=float(params["edge_strength"]),
            smoothing=int(params["smoothing"]),
        )

    return run
