"""Development secrets: generated once into ``var/`` so ``make run`` needs no set-up.

Production never reaches this module: settings refuse to start there without the
real secrets in the environment.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path


def dev_secret(var_dir: Path, name: str, *, nbytes: int = 32) -> str:
    """Read ``var/secrets/<name>``, creating it (mode 0600) on first use."""
    path = var_dir / "secrets" / name
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    value = base64.b64encode(secrets.token_bytes(nbytes)).decode("ascii")
    # O_EXCL: two processes starting together must not overwrite each other's key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    return value


#: The development pair of end-to-end keys: workers read the private file, the web the public.
DEV_E2E_KID = "dev1"


def dev_e2e_public_keys(var_dir: Path) -> str:
    """``EPHEMERA_E2E_PUBLIC_KEYS`` for development, from ``var/secrets/``."""
    return _dev_e2e_line(var_dir, "EPHEMERA_E2E_PUBLIC_KEYS")


def dev_e2e_private_keys(var_dir: Path) -> str:
    """``EPHEMERA_E2E_PRIVATE_KEYS`` for development workers, from ``var/secrets/``."""
    return _dev_e2e_line(var_dir, "EPHEMERA_E2E_PRIVATE_KEYS")


def _dev_e2e_line(var_dir: Path, name: str) -> str:
    """Read one half of the pair; the first process to need either makes both."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    path = var_dir / "secrets" / name
    if not path.exists():
        private = base64.b64decode(dev_secret(var_dir, "EPHEMERA_E2E_DEV_PRIVATE"))
        public = X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()
        for half, raw in (("PRIVATE", private), ("PUBLIC", public)):
            line = f"{DEV_E2E_KID}:{base64.b64encode(raw).decode('ascii')}\n"
            target = var_dir / "secrets" / f"EPHEMERA_E2E_{half}_KEYS"
            staging = target.with_suffix(f".{os.getpid()}")
            fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(line)
            os.replace(staging, target)
    return path.read_text(encoding="utf-8").strip()
