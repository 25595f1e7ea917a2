"""The ``cartoonize`` task: an edge-preserving cartoon rendering of the photo.

This module is imported by the web for the catalogue and for params validation, so it must
not import torch; ``SPEC.load()`` imports the torch code in ``workers.models.cartoon``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from workers.registry import Runner, TaskSpec

PARAMS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "levels": {
            "type": "integer",
            "minimum": 2,
            "maximum": 16,
            "default": 8,
            "description": "Bands of brightness the colours are posterised to; fewer is flatter.",
        },
        "edge_strength": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "default": 0.6,
            "description": "Darkness of the ink lines along strong edges: 0 none, 1 black.",
        },
        "smoothing": {
            "type": "integer",
            "minimum": 0,
            "maximum": 5,
            "default": 2,
            "description": "Edge-preserving smoothing passes; more removes more texture.",
        },
    },
}


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


SPEC = TaskSpec(
    name="cartoonize",
    description=(
        "Edge-preserving cartoon rendering: flattens texture, posterises the colours and "
        "inks the strong edges. Returns an image of the same size."
    ),
    params_schema=PARAMS_SCHEMA,
    load=load,
)
