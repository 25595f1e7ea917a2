"""API key authentication: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""

from __future__ import annotations

from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from backend.clients.models import ApiClient, ApiKey
from backend.clients.services import api_key_authenticate


def presented_key(request: Request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.META.get("HTTP_X_API_KEY") or None


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
