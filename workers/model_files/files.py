"""Reading model files: the bytes a worker loads are checked against their pin, every time.

Workers check the pins on the exact bytes they are about to load, never on a
claim cached at fetch time: a file replaced after ``fetch_models`` ran still
stops the worker.

A model file may be stored sealed as ``<name>.sealed``: the same envelope as
every payload in Redis (``backend.ephemeral.crypto``, AES-256-GCM), under
``EPHEMERA_MODEL_KEY`` and bound to the file's name, so a sealed file cannot
stand in for another model. The worker decrypts it in memory only and checks
the hash of the plaintext; the plaintext never touches the disk.

This module imports neither torch nor OpenCV.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

from backend.ephemeral import crypto
from workers.model_files.errors import (
    FETCH_HINT,
    ModelFileError,
    ModelFileMissingError,
    ModelIntegrityError,
    ModelKeyError,
)
from workers.model_files.pins import MODEL_FILES, ModelFile

logger = logging.getLogger(__name__)

SEALED_SUFFIX = ".sealed"
KEY_BYTES = crypto.KEY_BYTES
_KID = "model"
_PURPOSE = "model"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pin(name: str) -> ModelFile:
    try:
        return MODEL_FILES[name]
    except KeyError:
        known = ", ".join(MODEL_FILES)
        raise ModelFileError(f"{name} is not a pinned model file (known: {known})") from None


def verify(name: str, data: bytes, *, source: str) -> None:
    """Raise ``ModelIntegrityError`` unless ``data`` hashes to the pin for ``name``."""
    expected = pin(name).sha256
    actual = sha256_hex(data)
    if actual != expected:
        raise ModelIntegrityError(
            f"{source}: SHA-256 is {actual}, but {name} is pinned to {expected}. The file is "
            f"corrupt or was replaced. Delete it and run `python manage.py fetch_models`."
        )


def _keyring(key: bytes) -> crypto.Keyring:
    if len(key) != KEY_BYTES:
        raise ModelKeyError(
            f"EPHEMERA_MODEL_KEY must be {KEY_BYTES} bytes (base64 of 32 random bytes), "
            f"got {len(key)}"
        )
    return crypto.Keyring(active=_KID, keys={_KID: key})


def seal(data: bytes, *, name: str, key: bytes) -> bytes:
    """Encrypt ``data`` (the model file called ``name``), bound to that name."""
    return crypto.seal(data, keyring=_keyring(key), purpose=_PURPOSE, subject=name)


def unseal(blob: bytes, *, name: str, key: bytes, source: str) -> bytes:
    """Decrypt a sealed model file in memory; raise ``ModelKeyError`` if that fails."""
    try:
        return crypto.open_sealed(blob, keyring=_keyring(key), purpose=_PURPOSE, subject=name)
    except crypto.DecryptionError:
        raise ModelKeyError(
            f"{source} does not decrypt with EPHEMERA_MODEL_KEY: the key is not the one it "
            f"was sealed with, the file was altered, or it is not a sealed model file. Seal "
            f"the file again with `python manage.py seal_model`."
        ) from None


def read_model(name: str, *, model_dir: Path, key: bytes | None) -> bytes:
    """The verified bytes of a model file, decrypted in memory if it is sealed.

    With a key, a sealed copy wins over a plaintext one (the operator sealed it
    for a reason); without a key only the plaintext can be read.
    """
    pin(name)
    plain = model_dir / name
    sealed = model_dir / (name + SEALED_SUFFIX)
    if key is not None and sealed.is_file():
        data = unseal(sealed.read_bytes(), name=name, key=key, source=str(sealed))
        verify(name, data, source=f"{sealed} (decrypted)")
        return data
    if plain.is_file():
        data = plain.read_bytes()
        verify(name, data, source=str(plain))
        return data
    if sealed.is_file():
        raise ModelKeyError(
            f"{sealed} is sealed but EPHEMERA_MODEL_KEY is not set: set it to the key the "
            f"file was sealed with (base64 of 32 bytes)."
        )
    raise ModelFileMissingError(f"{plain} is missing. {FETCH_HINT}")


def is_present(model: ModelFile, *, model_dir: Path, key: bytes | None) -> bool:
    """Whether a usable copy exists; raises if a copy exists but is wrong."""
    plain = model_dir / model.name
    sealed = model_dir / (model.name + SEALED_SUFFIX)
    found = False
    if plain.is_file():
        verify(model.name, plain.read_bytes(), source=str(plain))
        found = True
    if sealed.is_file():
        if key is None:
            if found:
                # Workers without a key load the verified plaintext; the sealed
                # copy is checked wherever the key is set.
                logger.warning("%s not verified: EPHEMERA_MODEL_KEY is not set", sealed)
                return True
            raise ModelKeyError(
                f"{sealed} exists but EPHEMERA_MODEL_KEY is not set, so it cannot be "
                f"verified: set the key it was sealed with, or delete the sealed file."
            )
        data = unseal(sealed.read_bytes(), name=model.name, key=key, source=str(sealed))
        verify(model.name, data, source=f"{sealed} (decrypted)")
        found = True
    return found


def atomic_write(path: Path, data: bytes) -> None:
    # Write beside the target and rename: readers see the old file or the whole
    # new one, never a partial write.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # Weights and sealed copies are not secret (the key is): readable by the
        # worker's user even when a root build step fetched them.
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def seal_file(path: Path, *, key: bytes, remove_plaintext: bool = False) -> Path:
    """Write ``<path>.sealed``, an encrypted copy of a pinned model file.

    The plaintext is verified first so that a bad file is never sealed (the
    worker would only find out at its next start).
    """
    _keyring(key)
    name = path.name
    pin(name)
    if not path.is_file():
        raise ModelFileMissingError(f"{path} is missing. {FETCH_HINT}")
    data = path.read_bytes()
    verify(name, data, source=str(path))
    target = path.with_name(name + SEALED_SUFFIX)
    atomic_write(target, seal(data, name=name, key=key))
    # Check the round trip before the plaintext may go.
    verify(name, unseal(target.read_bytes(), name=name, key=key, source=str(target)), source=name)
    if remove_plaintext:
        path.unlink()
    return target
