"""Every learned model loads from sealed files alone, decrypted in memory, and runs."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.workers.faces_fixtures import astronaut_bgr
from workers.model_files import LEARNED_MODEL_FILES, SEALED_SUFFIX, ModelKeyError, seal_file
from workers.models.face_mesh import load_face_mesh
from workers.models.faces import FaceDetector
from workers.models.pose import load_pose
from workers.models.selfie import load_selfie
from workers.models.style import load_style, style_weights


@pytest.fixture(scope="module")
def sealed(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    key = secrets.token_bytes(32)
    target = tmp_path_factory.mktemp("sealed")
    for name in LEARNED_MODEL_FILES:
        shutil.copyfile(model_dir / name, target / name)
        seal_file(target / name, key=key, remove_plaintext=True)
    return target, key


def test_only_sealed_copies_are_on_disk(sealed: tuple[Path, bytes]) -> None:
    directory, _ = sealed

    assert sorted(p.name for p in directory.iterdir()) == sorted(
        name + SEALED_SUFFIX for name in LEARNED_MODEL_FILES
    )


def test_the_learned_models_load_and_run_from_sealed_files(
    sealed: tuple[Path, bytes], face_detector: FaceDetector
) -> None:
    directory, key = sealed
    photo = astronaut_bgr()
    rgb = np.ascontiguousarray(photo[..., ::-1])

    assert load_selfie(model_dir=directory, key=key).probability(photo).max() > 0.9
    assert len(load_pose(model_dir=directory, key=key).estimate(rgb)) == 1
    load_face_mesh(model_dir=directory, key=key)
    styled = load_style(model_dir=directory, key=key).stylize(photo, style_weights("sepia-print"))
    assert styled.shape == photo.shape


def test_without_the_key_they_do_not_load(sealed: tuple[Path, bytes]) -> None:
    directory, _ = sealed

    with pytest.raises(ModelKeyError):
        load_selfie(model_dir=directory, key=None)
    with pytest.raises(ModelKeyError):
        load_pose(model_dir=directory, key=None)
