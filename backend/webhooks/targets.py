"""Where a webhook may go: https only, and never to an address inside our network.

A URL is resolved once; every address it resolves to must be public, and the
POST then connects to that very address (``Target.address``) with the URL's
host as the Host header and the TLS server name. A DNS answer that changes
between the check and the connection (DNS rebinding) cannot redirect it.

Hosts on ``EPHEMERA_WEBHOOK_ALLOW_HTTP_HOSTS`` may use http and any address:
that is for receivers on the operator's own network (and the tests' loopback).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from backend.errors import CodedError

MAX_URL_LENGTH = 2048

#: Cloud metadata services that are not all caught by "not global" (the AWS IPv6
#: one is in fd00::/8, Alibaba's in 100.64/10), listed so the intent is explicit.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookRefused(CodedError):
    """A webhook URL that will not be called; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_webhook", message, status=400)


class WebhookUnresolvable(WebhookRefused):
    """The host has no address now; at delivery time this may pass, so it is retried."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    #: Path and query, as sent in the request line.
    path: str
    #: The one address the check passed, and the one the POST connects to.
    address: str


def allow_listed(host: str) -> bool:
    return host.lower() in {h.lower() for h in settings.EPHEMERA_WEBHOOK_ALLOW_HTTP_HOSTS}


def forbidden(address: IpAddress) -> bool:
    """Loopback, private, link-local, multicast, reserved, shared and metadata addresses."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address in METADATA_ADDRESSES
        or not address.is_global
        or address.is_multicast
        or address.is_reserved
        or address.is_loopback
        or address.is_link_local
        or address.is_private
    )


def check_url(url: str) -> Target:
    """The checked target of ``url``, or ``WebhookRefused`` saying what is wrong."""
    if len(url) > MAX_URL_LENGTH:
        raise WebhookRefused(f"webhook: a URL of at most {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookRefused("webhook: not a valid URL.") from None
    host = parts.hostname or ""
    if parts.scheme not in {"https", "http"} or not host:
        raise WebhookRefused("webhook: an absolute https:// URL is required.")
    if parts.username is not None or parts.password is not None:
        raise WebhookRefused("webhook: credentials in the URL are not accepted.")
    listed = allow_listed(host)
    if parts.scheme == "http" and not listed:
        raise WebhookRefused("webhook: use https; plain http is only for allow-listed hosts.")
    port = port or (443 if parts.scheme == "https" else 80)
    address = _resolve(host, port, listed=listed)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme=parts.scheme, host=host, port=port, path=path, address=address)


def _resolve(host: str, port: int, *, listed: bool) -> str:
    try:
        literal: IpAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        # A literal address is checked without asking any resolver.
        addresses = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise WebhookUnresolvable("webhook: the host does not resolve.") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        if not addresses:
            raise WebhookUnresolvable("webhook: the host does not resolve.")
    # Every address must pass: a host that also resolves to an internal address
    # could be steered there by whoever controls its DNS.
    if not listed and any(forbidden(a) for a in addresses):
        raise WebhookRefused(
            "webhook: the host resolves to a private, loopback, link-local or other "
            "non-public address; use a publicly reachable https URL."
        )
    return str(addresses[0])
