"""Human parsing from learned masks and landmarks: one label per pixel, per person.

Which label comes from what (also in the task's description):

- learned masks: ``background`` versus person is the union of BlazePose's
  per-person mask and MediaPipe's selfie segmentation;
- learned landmarks, drawn as regions (geometry): ``face_skin`` (the face
  mesh's oval), ``brows``, ``eyes``, ``nose`` (hull of its points) and
  ``lips`` (face mesh); ``arms``, ``hands`` and ``legs`` (bands along the
  BlazePose limbs, clipped to the person mask);
- rules on the mask (geometry): ``hair`` is the person mask around and above
  the face oval within the head's reach; ``neck`` the person mask between the
  chin and the shoulder line, as wide as the jaw; ``upper_body`` every other
  person pixel (torso and clothes).

No learned hair, clothes or skin classifier is involved: a hat counts as
hair, a scarf as neck. The order of painting settles overlaps: later wins.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import cv2
import numpy as np

from workers.models.face_mesh import (
    FACE_OVAL,
    LEFT_BROW,
    LEFT_EYE,
    LIPS,
    NOSE,
    RIGHT_BROW,
    RIGHT_EYE,
    Mesh,
)
from workers.models.pose import Pose

LABELS: tuple[str, ...] = (
    "background",
    "hair",
    "face_skin",
    "brows",
    "eyes",
    "nose",
    "lips",
    "neck",
    "upper_body",
    "arms",
    "hands",
    "legs",
)
#: Where each label comes from, for the legend.
SOURCES: dict[str, str] = {
    "background": "learned person masks (BlazePose mask, selfie segmentation)",
    "hair": "person mask around the face oval (geometry)",
    "face_skin": "face mesh oval (learned landmarks)",
    "brows": "face mesh (learned landmarks)",
    "eyes": "face mesh (learned landmarks)",
    "nose": "face mesh (learned landmarks)",
    "lips": "face mesh (learned landmarks)",
    "neck": "person mask between chin and shoulders (geometry)",
    "upper_body": "remaining person mask (geometry)",
    "arms": "BlazePose arm landmarks, clipped to the person mask",
    "hands": "BlazePose hand landmarks, clipped to the person mask",
    "legs": "BlazePose leg landmarks, clipped to the person mask",
}
#: RGB colours of the palette, one per label.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),
    (128, 64, 0),
    (255, 200, 160),
    (90, 50, 20),
    (0, 160, 255),
    (255, 128, 0),
    (220, 0, 80),
    (200, 150, 110),
    (0, 140, 70),
    (240, 220, 0),
    (160, 0, 220),
    (0, 70, 200),
)
ID = {name: i for i, name in enumerate(LABELS)}
#: Which label wins where two people overlap: the more specific one (a face
#: in front of a neighbour's torso mask keeps its parts).
PRIORITY = np.array([0, 4, 6, 7, 7, 7, 7, 3, 1, 5, 6, 2], np.uint8)


def merge(labels: np.ndarray, person: np.ndarray) -> None:
    """Paint one person's labels over the map where they are more specific."""
    wins = PRIORITY[person] > PRIORITY[labels]
    labels[wins] = person[wins]


# BlazePose body landmark indices.
_SHOULDERS = (11, 12)
_HIPS = (23, 24)
_ARMS = ((11, 13, 15), (12, 14, 16))
_HANDS = ((15, 17, 19, 21), (16, 18, 20, 22))
_LEGS = ((23, 25, 27, 31), (24, 26, 28, 32))
_VISIBLE = 0.5


@dataclass(frozen=True)
class Person:
    """What the parser knows of one person: pose, face mesh (if a face was found)."""

    pose: Pose
    mesh: Mesh | None


def _poly(mask: np.ndarray, points: np.ndarray, value: int = 1) -> None:
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], value)


def _band(shape: tuple[int, int], points: np.ndarray, width: float) -> np.ndarray:
    band = np.zeros(shape, np.uint8)
    pts = np.round(points).astype(np.int32)
    thickness = max(1, round(width))
    for a, b in itertools.pairwise(pts):
        cv2.line(band, tuple(int(v) for v in a), tuple(int(v) for v in b), 1, thickness)
    for p in pts:
        cv2.circle(band, tuple(int(v) for v in p), thickness // 2, 1, -1)
    return band.astype(bool)


def person_labels(shape: tuple[int, int], person: Person, person_mask: np.ndarray) -> np.ndarray:
    """The label map of one person (0 outside them), painted in a fixed order.

    Only the person's bounding box (mask, landmarks and face) is painted: the
    cost follows the person's size, not the photo's.
    """
    height, width = shape
    labels = np.zeros(shape, np.uint8)
    ys, xs = np.nonzero(person_mask)
    if xs.size == 0:
        return labels
    points = person.pose.landmarks[:, :2]
    if person.mesh is not None:
        points = np.vstack([points, person.mesh.points[:, :2]])
    x1 = int(max(0, min(xs.min(), np.floor(points[:, 0].min()))))
    y1 = int(max(0, min(ys.min(), np.floor(points[:, 1].min()))))
    x2 = int(min(width, max(xs.max() + 1, np.ceil(points[:, 0].max()) + 1)))
    y2 = int(min(height, max(ys.max() + 1, np.ceil(points[:, 1].max()) + 1)))
    shift = np.array([x1, y1], np.float32)
    local = Person(
        dataclasses.replace(person.pose, landmarks=_shifted(person.pose.landmarks, shift)),
        None
        if person.mesh is None
        else dataclasses.replace(person.mesh, points=_shifted(person.mesh.points, shift)),
    )
    labels[y1:y2, x1:x2] = _paint((y2 - y1, x2 - x1), local, person_mask[y1:y2, x1:x2])
    return labels


def _shifted(points: np.ndarray, shift: np.ndarray) -> np.ndarray:
    moved = points.copy()
    moved[:, :2] -= shift
    return moved


def _paint(shape: tuple[int, int], person: Person, person_mask: np.ndarray) -> np.ndarray:
    """Body labels from the pose, then (with a mesh) the face's; coordinates are local."""
    labels = np.zeros(shape, np.uint8)
    marks = person.pose.landmarks
    visible = marks[:, 3] >= _VISIBLE
    labels[person_mask] = ID["upper_body"]
    shoulder_width = float(np.linalg.norm(marks[11, :2] - marks[12, :2]))
    hip_width = float(np.linalg.norm(marks[23, :2] - marks[24, :2]))
    scale = max(shoulder_width, 1.0)

    for leg in _LEGS:
        if visible[list(leg[:2])].all():
            idx = [i for i in leg if visible[i]]
            band = _band(shape, marks[idx, :2], max(0.45 * hip_width, 0.3 * scale))
            labels[band & person_mask] = ID["legs"]
    for arm in _ARMS:
        if visible[list(arm[:2])].all():
            idx = [i for i in arm if visible[i]]
            band = _band(shape, marks[idx, :2], 0.22 * scale)
            labels[band & person_mask] = ID["arms"]
    for hand in _HANDS:
        if visible[hand[0]]:
            hull = np.zeros(shape, np.uint8)
            pts = marks[list(hand), :2]
            centre = pts.mean(axis=0)
            # The hand's points are its wrist and three knuckles: grow the hull
            # to cover the fingers.
            grown = centre + (pts - centre) * 1.6
            _poly(hull, cv2.convexHull(np.round(grown).astype(np.int32))[:, 0, :])
            grown_hull = cv2.dilate(
                hull, np.ones((3, 3), np.uint8), iterations=max(1, round(0.04 * scale))
            )
            labels[grown_hull.astype(bool) & person_mask] = ID["hands"]

    if person.mesh is not None:
        _paint_face(labels, person, person_mask)
    return labels


def _paint_face(labels: np.ndarray, person: Person, person_mask: np.ndarray) -> None:
    """Neck, hair and the face's parts, from the face mesh and the shoulder line."""
    height, width = labels.shape
    shape = (height, width)
    marks = person.pose.landmarks
    visible = marks[:, 3] >= _VISIBLE
    mesh = person.mesh
    assert mesh is not None
    pts = mesh.points[:, :2]
    oval = np.zeros(shape, np.uint8)
    _poly(oval, pts[list(FACE_OVAL)])
    oval_b = oval.astype(bool)
    ys = pts[list(FACE_OVAL), 1]
    xs = pts[list(FACE_OVAL), 0]
    chin_y, top_y = float(ys.max()), float(ys.min())
    face_h = chin_y - top_y
    face_w = float(xs.max() - xs.min())
    cx = float(xs.mean())

    # Neck: between the chin and the shoulder line, as wide as the jaw.
    shoulder_y = (
        float(marks[list(_SHOULDERS), 1].mean())
        if visible[list(_SHOULDERS)].all()
        else chin_y + 0.6 * face_h
    )
    yy, xx = np.mgrid[0:height, 0:width]
    neck = (
        (yy >= chin_y - 0.1 * face_h)
        & (yy <= max(shoulder_y, chin_y + 0.15 * face_h))
        & (np.abs(xx - cx) <= 0.38 * face_w)
        & person_mask
        & ~oval_b
    )
    labels[neck] = ID["neck"]
    # Hair: person pixels in the head's reach (an ellipse around the oval,
    # grown more upwards) that are not face, down to the chin.
    head_cy = top_y + 0.35 * face_h
    head = (((xx - cx) / (0.85 * face_w)) ** 2 + ((yy - head_cy) / (0.85 * face_h)) ** 2) <= 1.0
    hair = head & person_mask & ~oval_b & (yy <= chin_y)
    labels[hair] = ID["hair"]
    labels[oval_b] = ID["face_skin"]
    for outline, name in (
        (RIGHT_BROW, "brows"), (LEFT_BROW, "brows"), (RIGHT_EYE, "eyes"), (LEFT_EYE, "eyes"),
        (LIPS, "lips"),
    ):  # fmt: skip
        part = np.zeros(shape, np.uint8)
        _poly(part, pts[list(outline)])
        labels[part.astype(bool)] = ID[name]
    nose = np.zeros(shape, np.uint8)
    _poly(nose, cv2.convexHull(np.round(pts[list(NOSE)]).astype(np.int32))[:, 0, :])
    labels[nose.astype(bool)] = ID["nose"]


def palette_png(labels: np.ndarray) -> bytes:
    """An 8-bit palette PNG of a label map (written here: OpenCV cannot write palettes)."""
    import struct
    import zlib

    height, width = labels.shape

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    palette = bytes(v for rgb in PALETTE for v in rgb)
    rows = np.hstack([np.zeros((height, 1), np.uint8), labels.astype(np.uint8)])
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", header),
            chunk(b"PLTE", palette),
            chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)),
            chunk(b"IEND", b""),
        ]
    )
