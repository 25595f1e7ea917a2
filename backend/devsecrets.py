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
