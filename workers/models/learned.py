"""The learned models of the new tasks, each loaded once per process and shared.

Like ``faces.load_face_detector``: cached on (model dir, key), so that every
task that needs the person mask (``background``, ``stylize``, ``parse``) uses
one copy of the weights, and nothing runs a forward pass at load time (the
Celery parent loads before it forks; a thread pool started there would be
inherited broken by the children).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from workers.model_files import ModelFileError

if TYPE_CHECKING:
    from workers.models.face_embed import FaceEmbedder
    from workers.models.face_mesh import FaceMesher
    from workers.models.pose import PoseEstimator
    from workers.models.selfie import SelfieSegmenter
    from workers.models.style import StyleNet

logger = logging.getLogger(__name__)

T = TypeVar("T")


def _settings() -> tuple[Path, bytes | None]:
    from django.conf import settings

    return Path(settings.EPHEMERA_MODEL_DIR), settings.EPHEMERA_MODEL_KEY


def _loaded(what: str, loader: Callable[..., T], model_dir: Path, key: bytes | None) -> T:
    """``loader``'s model; a file that fails its check is logged as critical, then raised."""
    try:
        return loader(model_dir=model_dir, key=key)
    except ModelFileError as exc:
        logger.critical("%s not loaded: %s", what, exc)
        raise


@cache
def selfie(model_dir: Path, key: bytes | None) -> SelfieSegmenter:
    from workers.models.selfie import load_selfie

    return _loaded("selfie segmentation", load_selfie, model_dir, key)


@cache
def style(model_dir: Path, key: bytes | None) -> StyleNet:
    from workers.models.style import load_style

    return _loaded("style network", load_style, model_dir, key)


@cache
def face_embedder(model_dir: Path, key: bytes | None) -> FaceEmbedder:
    from workers.models.face_embed import load_face_embedder

    return _loaded("face embedding", load_face_embedder, model_dir, key)


@cache
def pose(model_dir: Path, key: bytes | None) -> PoseEstimator:
    from workers.models.pose import load_pose

    return _loaded("pose models", load_pose, model_dir, key)


@cache
def face_mesh(model_dir: Path, key: bytes | None) -> FaceMesher:
    from workers.models.face_mesh import load_face_mesh

    return _loaded("face mesh", load_face_mesh, model_dir, key)


def pose_from_settings() -> PoseEstimator:
    return pose(*_settings())


def face_mesh_from_settings() -> FaceMesher:
    return face_mesh(*_settings())


def selfie_from_settings() -> SelfieSegmenter:
    return selfie(*_settings())


def style_from_settings() -> StyleNet:
    return style(*_settings())


def face_embedder_from_settings() -> FaceEmbedder:
    return face_embedder(*_settings())
