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


BACKGROUND_PARAMS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "mode": {
            "enum": ["blur", "pixelate", "color"],
            "default": "blur",
            "description": "How to hide the background.",
        },
        "amount": {
            "type": "number",
            "minimum": 0.01,
            "maximum": 0.2,
            "default": 0.04,
            "description": (
                "Strength of the blur (its sigma) or size of the pixel blocks, as a fraction "
                "of the photo's long side."
            ),
        },
        "color": {
            "type": "string",
            "pattern": "^#[0-9a-fA-F]{6}$",
            "default": "#808080",
            "description": "The background colour for mode=color, as #RRGGBB.",
        },
        "feather": {
            "type": "number",
            "minimum": 0,
            "maximum": 0.05,
            "default": 0.006,
            "description": "Softness of the edge around the people, a fraction of the long side.",
        },
    },
}

#: The 26 learned styles, in the network's order, by names that describe their
#: look (the model ships none). Plain data here so the web reads the schema
#: without OpenCV; ``workers.models.style`` uses the same tuple.
STYLES: tuple[str, ...] = (
    "pale-gold-wash",
    "bold-black-on-yellow",
    "ink-on-cream",
    "colour-ribbons",
    "pastel-impasto",
    "warm-palette",
    "blue-mottle",
    "yellow-and-blue-blocks",
    "bright-sketch",
    "cutout-pattern",
    "brown-fresco",
    "ochre-ink",
    "soft-lilac",
    "green-cubist",
    "pale-blue-wash",
    "stained-glass",
    "blue-swirls",
    "woven-bars",
    "sepia-print",
    "blue-and-yellow-strokes",
    "red-fire",
    "pastel-pop",
    "cream-ink-red",
    "dark-green-wash",
    "blue-etching",
    "dark-mosaic",
)

STYLIZE_PARAMS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "style": {
            "enum": list(STYLES),
            "default": "blue-swirls",
            "description": (
                "One of the 26 learned styles, by a name that describes its look "
                "(the model ships no names)."
            ),
        },
        "strength": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "default": 1.0,
            "description": "How much of the style: 0 is the photo, 1 the full style.",
        },
    },
}

#: face_verify's detectors see a smaller copy than the other face tasks': a
#: face worth comparing fills a good part of the photo (the net sees it at
#: 150x150), and this halves the cost of detection (bench/learned.py).
FACE_VERIFY_DETECT_SIZE = 640
_VERIFY_DETECTION = detection_properties(recall_first=False)
FACE_VERIFY_PARAMS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "detect_size": {**_VERIFY_DETECTION["detect_size"], "default": FACE_VERIFY_DETECT_SIZE},
        "min_face_size": {**_VERIFY_DETECTION["min_face_size"], "default": 40},
        "mtcnn_thresholds": _VERIFY_DETECTION["mtcnn_thresholds"],
    },
}

PARSE_PARAMS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "output": {
            "enum": ["labels", "overlay"],
            "default": "labels",
            "description": (
                "labels: an 8-bit palette PNG whose pixel values are label ids; overlay: the "
                "photo with the labels' colours blended over it (RGB PNG)."
            ),
        },
        "max_people": {
            "type": "integer",
            "minimum": 1,
            "maximum": 10,
            "default": 6,
            "description": "Most people parsed, the most confident first.",
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

BACKGROUND = TaskSpec(
    name="background",
    description=(
        "Hide what is behind the people: blur, pixelate or paint the background one colour, "
        "with a soft edge around each person (learned person mask: MediaPipe selfie "
        "segmentation). The result has the input's size."
    ),
    params_schema=BACKGROUND_PARAMS,
    # Same size as the input: the mask is computed at 256x256 anyway, so the
    # photo need not be shrunk first.
    downscale_input=False,
)
STYLIZE = TaskSpec(
    name="stylize",
    description=(
        "Learned style transfer: the photo painted in one of 26 styles (a conditional "
        "instance-normalisation network), blended with the photo by strength."
    ),
    params_schema=STYLIZE_PARAMS,
)
FACE_VERIFY = TaskSpec(
    name="face_verify",
    description=(
        "Whether the largest face in `image` and the largest face in `reference` are the same "
        "person (dlib's ResNet face descriptor, distance threshold 0.6), as JSON: "
        "same_person, distance, threshold and the number of faces in each photo. The face "
        "descriptors never leave the worker. Needs the operator to enable it for the client, "
        "and `consent=true` on the job."
    ),
    params_schema=FACE_VERIFY_PARAMS,
    output="json",
    inputs=("image", "reference"),
    biometric=True,
)
PARSE = TaskSpec(
    name="parse",
    description=(
        "Multi-person human parsing: background, hair, face skin, brows, eyes, nose, lips, neck, "
        "upper body, arms, hands, legs, as a palette PNG label map (base64 in JSON) with a legend "
        "and one box per person; the legend says where each label comes from. Learned: the "
        "person masks (BlazePose, selfie segmentation), the body landmarks (BlazePose) and the "
        "face mesh. Geometry on them: face parts (brows, eyes, nose, lips, face skin) are the "
        "mesh's regions, arms, hands and legs are bands along the landmarks clipped to the "
        "mask, hair, neck and upper body are rules on the mask around the face and shoulders."
    ),
    params_schema=PARSE_PARAMS,
    output="json",
)

#: The catalogue, by name, in the order ``GET /api/v1/tasks`` lists it.
CATALOGUE: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        ANONYMIZE,
        FACE_CROP,
        CARTOONIZE,
        DETECT,
        BACKGROUND,
        STYLIZE,
        FACE_VERIFY,
        PARSE,
    )
}


def get_spec(name: str) -> TaskSpec | None:
    return CATALOGUE.get(name)
