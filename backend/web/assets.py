"""The page's own scripts and styles, served under names that carry their hash.

A hashed name (``app.3f2a9c01d4e5.js``) can be cached for ever and never goes
stale. The files are read and hashed once, when the module loads, from this
package: no collectstatic step, no writable directory, nothing fetched from
another origin.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ASSET_DIR = Path(__file__).resolve().parent / "assets"
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Asset:
    #: The name it is served under, such as ``app.3f2a9c01d4e5.js``.
    hashed_name: str
    content_type: str
    data: bytes


@cache
def manifest() -> dict[str, Asset]:
    """Every asset by its plain name (``app.js``)."""
    found: dict[str, Asset] = {}
    for path in sorted(ASSET_DIR.iterdir()):
        if path.suffix not in CONTENT_TYPES:
            continue
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()[:12]
        found[path.name] = Asset(
            hashed_name=f"{path.stem}.{digest}{path.suffix}",
            content_type=CONTENT_TYPES[path.suffix],
            data=data,
        )
    return found


@cache
def by_hashed_name() -> dict[str, Asset]:
    return {asset.hashed_name: asset for asset in manifest().values()}


def url(name: str) -> str:
    """The URL of an asset by its plain name; a KeyError names a missing file."""
    return f"/assets/{manifest()[name].hashed_name}"
