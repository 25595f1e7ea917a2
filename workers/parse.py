"""Task ``parse``: multi-person human parsing as a palette label map, a legend and boxes.

People are found by BlazePose's detector and confirmed by its landmark net;
each face is measured by the face mesh in a box placed on the pose's eyes
and mouth (as MediaPipe Holistic does). The labels come
from learned masks and landmarks as ``workers.models.parsing`` explains
(and the legend says per label). The answer is JSON: the label map (or a
colour overlay on the photo, ``output=overlay``) as a base64 PNG of the
photo's size, the legend, and one box per person.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from workers.registry import Runner

if TYPE_CHECKING:
    from workers.models.face_mesh import FaceMesher
    from workers.models.pose import PoseEstimator
    from workers.models.selfie import SelfieSegmenter


def load() -> Runner:
    """Load the pose nets, face mesh, person mask and MTCNN once; return the runner."""
    from workers.models.learned import (
        face_mesh_from_settings,
        pose_from_settings,
        selfie_from_settings,
    )

    return make_runner(pose_from_settings(), face_mesh_from_settings(), selfie_from_settings())


def make_runner(pose: PoseEstimator, mesher: FaceMesher, segmenter: SelfieSegmenter) -> Runner:
    """The runner around already loaded models (the tests pass theirs)."""
    import cv2

    from workers.models.face_mesh import face_from_pose
    from workers.models.parsing import (
        LABELS,
        PALETTE,
        SOURCES,
        Person,
        merge,
        palette_png,
        person_labels,
    )

    legend = [
        {
            "id": i,
            "name": name,
            "color": "#{:02x}{:02x}{:02x}".format(*PALETTE[i]),
            "source": SOURCES[name],
        }
        for i, name in enumerate(LABELS)
    ]

    def run(image: np.ndarray, params: Mapping[str, Any]) -> dict[str, Any]:
        height, width = image.shape[:2]
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        poses = pose.estimate(rgb, max_people=int(params["max_people"]))
        selfie = segmenter.probability(image) > 0.5 if poses else None
        labels = np.zeros((height, width), np.uint8)
        people = []
        for body in poses:
            mesh = None
            face = face_from_pose(body.landmarks)
            if face is not None:
                found = mesher.mesh(rgb, *face)
                mesh = found if found.presence >= 0.5 else None
            mask = (body.mask > 0.5) | (selfie & (body.mask > 0.1))  # type: ignore[operator]
            own = person_labels((height, width), Person(body, mesh), mask)
            merge(labels, own)
            ys, xs = np.nonzero(mask)
            box = (
                [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
                if xs.size
                else None
            )
            people.append(
                {"box": box, "score": round(body.region.score, 3), "face_mesh": mesh is not None}
            )
        if params["output"] == "overlay":
            colours = np.array(PALETTE, np.uint8)[labels]
            blend = cv2.addWeighted(rgb, 0.5, colours, 0.5, 0.0)
            blend[labels == 0] = rgb[labels == 0]
            ok, encoded = cv2.imencode(".png", cv2.cvtColor(blend, cv2.COLOR_RGB2BGR))
            png = encoded.tobytes() if ok else b""
        else:
            png = palette_png(labels)
        return {
            "width": width,
            "height": height,
            "format": "png_palette" if params["output"] == "labels" else "png_rgb",
            "png_base64": base64.b64encode(png).decode("ascii"),
            "legend": legend,
            "people": people,
        }

    return run
