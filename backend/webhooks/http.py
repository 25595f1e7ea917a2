"""One POST to a checked target: its address, no redirects, small timeouts, a short read."""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Mapping

from backend.webhooks.targets import Target

CONNECT_TIMEOUT = 3.0
TOTAL_TIMEOUT = 10.0
#: The answer's body is not ours to read: a few bytes drain a short reply.
MAX_READ = 64


class DeliveryFailed(Exception):
    """The POST did not complete (refused, timed out, TLS failed)."""


def post(target: Target, *, body: bytes, headers: Mapping[str, str]) -> int:
    """POST ``body`` to ``target.address``; the answer's status code.

    The connection goes to the address the target was checked with, never to a
    new DNS answer; TLS still verifies the certificate for ``target.host``
    (server name and Host header are the URL's). A redirect is only a status
    code here: nothing follows it.
    """
    deadline = time.monotonic() + TOTAL_TIMEOUT
    try:
        sock = socket.create_connection((target.address, target.port), timeout=CONNECT_TIMEOUT)
    except OSError as exc:
        raise DeliveryFailed(type(exc).__name__) from None
    try:
        if target.scheme == "https":
            context = ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=target.host)
        connection = http.client.HTTPConnection(target.host, target.port)
        connection.sock = sock
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        connection.request("POST", target.path, body=body, headers=dict(headers))
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        response = connection.getresponse()
        response.read(MAX_READ)
        return response.status
    except (OSError, http.client.HTTPException) as exc:
        raise DeliveryFailed(type(exc).__name__) from None
    finally:
        sock.close()
