"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

A secret is ``whsec_`` + base64(32 random bytes). A message is signed as
``v1,`` + base64(HMAC-SHA256(secret, "{webhook-id}.{webhook-timestamp}.{body}")),
and ``webhook-signature`` lists one such signature per valid secret, separated
by spaces: during a rotation both the new and the previous secret sign, so a
receiver that knows either one accepts the message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's public prefix, not a secret)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)


def sign(*, msg_id: str, timestamp: int, body: bytes, secret: str) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(*, msg_id: str, timestamp: int, body: bytes, secrets_: Sequence[str]) -> dict[str, str]:
    """The three Standard Webhooks headers, signed with every secret given."""
    if not secrets_:
        raise ValueError("at least one secret signs a webhook")
    signatures = " ".join(
        sign(msg_id=msg_id, timestamp=timestamp, body=body, secret=s) for s in secrets_
    )
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
    }
