"""The web page at ``/`` and its hashed assets. The page talks to API v1 itself."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from backend.ephemeral.store import record_ttl
from backend.web import assets
from backend.web.headers import page_headers


@require_safe
@page_headers
def index(request: HttpRequest) -> HttpResponse:
    response = render(
        request,
        "web/index.html",
        {
            "hpke_url": assets.url("hpke.js"),
            "script_url": assets.url("app.js"),
            "style_url": assets.url("app.css"),
            "icon_url": assets.url("favicon.svg"),
            "input_minutes": _minutes(settings.EPHEMERA_INPUT_TTL),
            "result_minutes": _minutes(settings.EPHEMERA_RESULT_TTL),
            "record_minutes": _minutes(record_ttl()),
        },
    )
    response["Cache-Control"] = "no-cache"
    return response


@require_safe
@page_headers
def asset(request: HttpRequest, name: str) -> HttpResponse:
    found = assets.by_hashed_name().get(name)
    if found is None:
        raise Http404
    response = HttpResponse(found.data, content_type=found.content_type)
    # The name changes with the content, so the file never goes stale.
    response["Cache-Control"] = "public, max-age=31536000, immutable"
    return response


def _minutes(seconds: int) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return f"{seconds} seconds"
    return "1 minute" if minutes == 1 else f"{minutes} minutes"
