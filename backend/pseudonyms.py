"""Pseudonyms: stable, non-reversible names for ids, clients and addresses.

Every HMAC the service derives from ``SECRET_KEY`` comes from here, each under
its own purpose, so a pseudonym of one kind can never be matched against
another kind (a log's job hash says nothing about an owner hash).
"""

from __future__ import annotations

import hashlib
import hmac
from functools import cache
from typing import Literal

Purpose = Literal["owner", "abuse", "log-id"]


@cache
def _key(purpose: Purpose) -> bytes:
    from django.conf import settings

    return hmac.new(
        settings.SECRET_KEY.encode(), f"ephemera/{purpose}".encode(), hashlib.sha256
    ).digest()


def pseudonym(purpose: Purpose, value: str) -> str:
    """HMAC-SHA256 of ``value`` under the key of ``purpose``, as 64 hex digits."""
    return hmac.new(_key(purpose), value.encode(), hashlib.sha256).hexdigest()


def owner_hash(client_id: object) -> str:
    """The owner of a job as Redis and the job trace store it: never the client's id."""
    return pseudonym("owner", f"client:{client_id}")


def subject_hash(kind: str, value: str) -> str:
    """A client or an IP as the abuse controls count it."""
    return pseudonym("abuse", f"{kind}:{value}")[:32]


def client_subject(owner: str) -> str:
    """A client as the abuse controls count it, from its owner hash.

    Derived from the owner hash, so a worker (which knows a job's owner and not
    its client id) can count a rejected upload against the same client.
    """
    return subject_hash("client", owner)


def hashed_id(value: str) -> str:
    """A stable stand-in for an id in logs and Flower: the same in web and worker."""
    return pseudonym("log-id", value)[:16]
