"""What the service would refuse, found before an upload.

A refused upload counts towards the client's temporary block (the service's
``EPHEMERA_BLOCK_AFTER`` rejections in a row block the key and the IP), so a
folder with a few HEIC photos from a phone could lock its owner out for an
hour; and a photo the service cannot use has no reason to leave the machine.
The task's catalogue entry says what it accepts; the file's first bytes say
what it is.
"""

from __future__ import annotations

from ephemera_client.models import Task

#: A format's media type, by the bytes it starts with (and, for WebP, bytes 8-12).
_MAGIC: tuple[tuple[str, bytes], ...] = (
    ("image/jpeg", b"\xff\xd8\xff"),
    ("image/png", b"\x89PNG\r\n\x1a\n"),
)


def media_type(data: bytes) -> str | None:
    """The photo format ``data`` is in, as a media type; None when it is none of ours."""
    for kind, magic in _MAGIC:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def refusal(data: bytes, task: Task) -> tuple[str, str] | None:
    """The code and message the service would answer ``data`` with; None if it may pass."""
    if len(data) > task.max_bytes:
        return (
            "payload_too_large",
            f"{len(data)} bytes; {task.name} takes at most {task.max_bytes}",
        )
    if media_type(data) not in task.accepted_formats:
        accepted = ", ".join(kind.removeprefix("image/").upper() for kind in task.accepted_formats)
        return "unsupported_media_type", f"not a photo {task.name} takes ({accepted})"
    return None
