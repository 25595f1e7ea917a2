"""Result tokens: single-use capabilities for one download.

A token is ``rt_`` + base64url(job id bytes + 256 random bits): the job id lets
the server find the record, the random part is the secret. Redis keeps only
its SHA-256 (the result's key) and a sealed copy for the owner's poll.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid

from backend.ephemeral import crypto

PREFIX = "rt_"
_LENGTH = 67


def new_token(job_id: str) -> str:
    raw = uuid.UUID(job_id).bytes + secrets.token_bytes(32)
    return PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def job_id_from_token(token: str) -> str | None:
    if not token.startswith(PREFIX) or len(token) != _LENGTH:
        return None
    try:
        raw = base64.urlsafe_b64decode(token[len(PREFIX) :] + "=")
    except ValueError:
        return None
    return str(uuid.UUID(bytes=raw[:16])) if len(raw) == 48 else None


def seal_token(token: str, *, job_id: str) -> str:
    """The token sealed for the job record (base64 text, a hash field)."""
    blob = crypto.seal(token.encode(), keyring=crypto.keyring(), purpose="tok", subject=job_id)
    return base64.b64encode(blob).decode()


def open_token(sealed: str, *, job_id: str) -> str:
    blob = base64.b64decode(sealed)
    return crypto.open_sealed(
        blob, keyring=crypto.keyring(), purpose="tok", subject=job_id
    ).decode()
