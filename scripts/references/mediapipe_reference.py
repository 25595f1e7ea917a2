"""Reference pose landmarks and face mesh from MediaPipe's own pipeline (graphs and runtime).

Run by hand, in a throwaway environment (mediapipe is never a dependency of
Ephemera: it pins numpy<2 and protobuf<5; the worker runs the same .tflite
files with its own pre- and post-processing, workers/models/pose.py and
face_mesh.py):

    python3.11 -m venv /tmp/mpenv
    /tmp/mpenv/bin/pip install mediapipe==0.10.21 scikit-image
    /tmp/mpenv/bin/python scripts/references/mediapipe_reference.py

It writes ``tests/workers/models/data/pose_reference.json``: MediaPipe Pose
(``model_complexity=1``, i.e. ``pose_landmark_full.tflite`` after
``pose_detection.tflite``, static image mode) on scikit-image's astronaut:
the 33 landmarks in pixels (x, y), z, visibility and presence; and
``face_mesh_reference.json``: MediaPipe Face Mesh (468 points, no iris
refinement) on the same photo, in pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import mediapipe as mp
from skimage import data

OUT = Path(__file__).resolve().parents[2] / "tests" / "workers" / "models" / "data"


def main() -> None:
    image = data.astronaut()  # RGB, as MediaPipe wants it
    height, width = image.shape[:2]
    with mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1) as pose:
        found = pose.process(image).pose_landmarks
    landmarks = [
        [p.x * width, p.y * height, p.z * width, p.visibility, p.presence] for p in found.landmark
    ]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "pose_reference.json").write_text(
        json.dumps({"runtime": f"mediapipe {mp.__version__}", "landmarks": landmarks})
    )
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as mesh:
        faces = mesh.process(image).multi_face_landmarks
    points = [[p.x * width, p.y * height, p.z * width] for p in faces[0].landmark]
    (OUT / "face_mesh_reference.json").write_text(
        json.dumps({"runtime": f"mediapipe {mp.__version__}", "points": points})
    )
    print(f"pose: {len(landmarks)} landmarks, face mesh: {len(points)} points, written to {OUT}")


if __name__ == "__main__":
    main()
