"""Security headers of the web page and its assets.

The Content-Security-Policy allows this origin's own scripts, styles and API
only: no inline script or style (``unsafe-inline``), no eval, no third-party
host, no plugin, no framing, no form posting anywhere (the page's JavaScript
sends the photo itself, so a form that fell back to a native submit could not
put the API key in a URL). Trusted Types make string-to-HTML sinks throw, so a
result or an error message can only ever be shown as text.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec

from django.http import HttpResponse

P = ParamSpec("P")

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        # blob: is the result, shown from page memory after its one download.
        "img-src 'self' blob:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    ]
)
PERMISSIONS_POLICY = (
    "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()"
)


def page_headers(view: Callable[P, HttpResponse]) -> Callable[P, HttpResponse]:
    """Add the page's CSP and companions to every answer of ``view``."""

    @wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> HttpResponse:
        response = view(*args, **kwargs)
        response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response["Permissions-Policy"] = PERMISSIONS_POLICY
        response["Cross-Origin-Resource-Policy"] = "same-origin"
        return response

    return wrapped
