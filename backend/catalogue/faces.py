"""The detection params the face tasks share, as JSON Schema; the face detectors read
their defaults from here too.

Defaults differ by purpose. ``anonymize`` favours recall: a missed face is a
privacy leak, a spare blur is not. ``detect`` and ``face_crop`` return faces
to the client, where a false face is an error, so they default to MTCNN's
published thresholds and CenterFace's own 0.5.
"""

from __future__ import annotations

from typing import Any

#: Longest side of the copy the detectors run on. Faces smaller than about
#: ``12 * long_side / detect_size`` input pixels cannot be found (P-Net's
#: window is 12 px): 960 is half of 1080p's long side, so a 1920x1080 photo is
#: searched down to 24 px faces within the worker's time budget (bench/faces.py).
DEFAULT_DETECT_SIZE = 960
RECALL_THRESHOLDS: dict[str, Any] = {"mtcnn": [0.6, 0.6, 0.6], "centerface": 0.2}
PRECISION_THRESHOLDS: dict[str, Any] = {"mtcnn": [0.6, 0.7, 0.7], "centerface": 0.5}


def detection_properties(*, recall_first: bool) -> dict[str, Any]:
    """Schema properties for detection params, with purpose-dependent defaults."""
    thresholds = RECALL_THRESHOLDS if recall_first else PRECISION_THRESHOLDS
    probability = {"type": "number", "minimum": 0.05, "maximum": 0.99}
    return {
        "detect_size": {
            "type": "integer",
            "minimum": 320,
            "maximum": 2048,
            "default": DEFAULT_DETECT_SIZE,
            "description": (
                "Longest side, in pixels, of the downscaled copy the detectors run on. "
                "Larger finds smaller faces in big photos and costs more time."
            ),
        },
        "min_face_size": {
            "type": "integer",
            "minimum": 12,
            "maximum": 1024,
            "default": 20,
            "description": "Smallest face MTCNN searches for, in input pixels.",
        },
        "mtcnn_thresholds": {
            "type": "array",
            "items": probability,
            "minItems": 3,
            "maxItems": 3,
            "default": list(thresholds["mtcnn"]),
            "description": "MTCNN's score thresholds for its three stages (P-, R-, O-Net).",
        },
        "centerface_threshold": {
            **probability,
            "default": thresholds["centerface"],
            "description": "CenterFace's heatmap threshold.",
        },
    }
