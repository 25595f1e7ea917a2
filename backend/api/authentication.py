"""API key authentication: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""

from __future__ import annotations

from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from backend.api.errors import ApiError
from backend.clients.models import ApiClient, ApiKey
from backend.clients.services import api_key_authenticate


def presented_key(request: Request) -> str | None:
    """The request's API key, from either header; two different keys are refused.

    Taking one of two silently would make the key a request runs under depend
    on header order in this code (a proxy that adds its own key, a client that
    sends an old one beside the new): the caller could not know which was used.
    """
    scheme, _, credentials = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    bearer = credentials.strip() if scheme.lower() == "bearer" else ""
    header = request.META.get("HTTP_X_API_KEY", "").strip()
    if bearer and header and bearer != header:
        raise ApiError(
            400,
            "invalid_request",
            "Send one API key, as 'Authorization: Bearer <key>' or 'X-API-Key: <key>', not two.",
        )
    return bearer or header or None


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[ApiClient, ApiKey] | None:
        key = presented_key(request)
        if key is None:
            return None
        found = api_key_authenticate(presented=key)
        if found is None:
            raise AuthenticationFailed()
        return found

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="ephemera"'
