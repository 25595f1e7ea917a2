"""dlib's ResNet in torch with face-api's TF.js weights: the port against TF.js, the framing."""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path

import numpy as np
import pytest

from workers.model_files import ModelFileError, seal_file
from workers.models.align import ARCFACE_112, similarity
from workers.models.face_embed import (
    MANIFEST_FILE,
    SIZE,
    WEIGHTS_FILE,
    FaceEmbedder,
    chip_points,
    dequantize,
    load_face_embedder,
)
from workers.models.faces import FaceDetector

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def embedder(model_dir: Path, face_detector: FaceDetector) -> FaceEmbedder:
    # face_detector pins torch and OpenCV to one thread, as a worker runs.
    return load_face_embedder(model_dir=model_dir, key=None)


def reference_input() -> np.ndarray:
    raw = (DATA / "face_embed_input.rgb").read_bytes()
    return np.frombuffer(raw, np.uint8).reshape(SIZE, SIZE, 3)


def test_the_port_matches_face_api_on_tfjs(embedder: FaceEmbedder) -> None:
    # Written by scripts/references/face_api_reference.mjs (TF.js CPU backend).
    expected = np.array(json.loads((DATA / "face_embed_reference.json").read_text())["descriptor"])

    descriptor = embedder.embed(reference_input())

    assert descriptor.shape == (128,)
    np.testing.assert_allclose(descriptor, expected, atol=2e-5)


def test_a_batch_gives_each_crop_its_own_descriptor(embedder: FaceEmbedder) -> None:
    crop = reference_input()
    batch = np.stack([crop, crop[:, ::-1]])

    descriptors = embedder.embed(np.ascontiguousarray(batch))

    np.testing.assert_allclose(descriptors[0], embedder.embed(crop), atol=1e-5)
    assert 0 < np.linalg.norm(descriptors[0] - descriptors[1]) < 0.6  # mirrored: same person


def test_a_truncated_weights_file_is_refused(model_dir: Path) -> None:
    manifest = json.loads((model_dir / MANIFEST_FILE).read_text())
    data = (model_dir / WEIGHTS_FILE).read_bytes()

    with pytest.raises(ValueError, match="bytes"):
        dequantize(manifest, data + b"\0")


def test_the_chip_follows_face_api_s_dlib_framing() -> None:
    points = chip_points(150)
    eyes, mouth = points[:2], points[3:].mean(axis=0)

    assert np.linalg.norm(eyes - mouth, axis=1).mean() == pytest.approx(0.45 * 150)
    np.testing.assert_allclose(np.vstack([eyes, mouth]).mean(axis=0), [75, 0.43 * 150])
    # Still the canonical face: a similarity of the ArcFace template.
    matrix = similarity(ARCFACE_112, points)
    np.testing.assert_allclose(ARCFACE_112 @ matrix[:, :2].T + matrix[:, 2], points, atol=1e-9)


def test_it_loads_from_sealed_files_only(model_dir: Path, tmp_path: Path) -> None:
    key = secrets.token_bytes(32)
    for name in (WEIGHTS_FILE, MANIFEST_FILE):
        shutil.copyfile(model_dir / name, tmp_path / name)
        seal_file(tmp_path / name, key=key, remove_plaintext=True)

    sealed = load_face_embedder(model_dir=tmp_path, key=key)

    np.testing.assert_allclose(
        sealed.embed(reference_input()),
        load_face_embedder(model_dir=model_dir, key=None).embed(reference_input()),
    )
    with pytest.raises(ModelFileError):
        load_face_embedder(model_dir=tmp_path, key=None)
