"""The tasks on offer: each one's name, description, params and output.

Adding a task means a spec here and a runner in ``workers.registry``; a test
checks that the two lists agree.
"""

from __future__ import annotations

from typing import Any

from backend.catalogue.faces import detection_properties
from backend.catalogue.spec import TaskSpec

ANONYMIZE_PARAMS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "mode": {
            "enum": ["blur", "pixelate", "box"],
            "default": "blur",
            "description": "How to hide each face.",
        },
        "margin": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "default": 0.2,
            "description": "Extra area hidden around each face, as a fraction of its size.",
        },
        **detection_properties(recall_first=True),
    },
}

DETECT_PARAMS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": detection_properties(recall_first=False),
}

MIN_SIZE = 32
MAX_SIZE = 1024

FACE_CROP_PARAMS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "size": {
            "type": "integer",
            "minimum": MIN_SIZE,
            "maximum": MAX_SIZE,
            "default": 256,
            "description": "Side of the square output, in pixels.",
        },
        "padding": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "default": 0.25,
            "description": (
                "Space around the canonical face (eyes to mouth), as a fraction of it: "
                "0 is the tight 112x112 ArcFace framing."
            ),
        },
        **detection_properties(recall_first=False),
    },
}

CARTOONIZE_PARAMS: dict[str, Any] = {
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


ANONYMIZE = TaskSpec(
    name="anonymize",
    description=(
        "Find every face (two detectors, recall first) and blur, pixelate or black it out. "
        "The result has the input's size."
    ),
    params_schema=ANONYMIZE_PARAMS,
    # Answers in the input's own size and coordinates; the detector downscales
    # its own copy (detect_size), so the photo itself is not shrunk first.
    downscale_input=False,
)
FACE_CROP = TaskSpec(
    name="face_crop",
    description=(
        "The largest face, aligned on its eyes, nose and mouth to a canonical position, "
        "as a square image."
    ),
    params_schema=FACE_CROP_PARAMS,
)
CARTOONIZE = TaskSpec(
    name="cartoonize",
    description=(
        "Edge-preserving cartoon rendering: flattens texture, posterises the colours and "
        "inks the strong edges. Returns an image of the same size."
    ),
    params_schema=CARTOONIZE_PARAMS,
)
DETECT = TaskSpec(
    name="detect",
    description="Face boxes, scores and five landmarks per face, as JSON.",
    params_schema=DETECT_PARAMS,
    downscale_input=False,
    output="json",
)

#: The catalogue, by name, in the order ``GET /api/v1/tasks`` lists it.
CATALOGUE: dict[str, TaskSpec] = {
    spec.name: spec for spec in (ANONYMIZE, FACE_CROP, CARTOONIZE, DETECT)
}


def get_spec(name: str) -> TaskSpec | None:
    return CATALOGUE.get(name)
