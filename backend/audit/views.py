"""``GET /api/v1/privacy``: the privacy guarantees as measured now, not as declared."""

from __future__ import annotations

from django.core.cache import cache
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.audit.privacy import PrivacyReport, run_privacy_audit
from backend.audit.serializers import PrivacySerializer

CACHE_KEY = "audit:privacy-report"
#: The audit scans every key of ours; one run per this many seconds serves all
#: callers, so an API client cannot make Redis scan in a loop.
CACHE_SECONDS = 10


def current_report() -> PrivacyReport:
    report = cache.get(CACHE_KEY)
    # isinstance also turns away an entry another release left in a shared cache.
    if not isinstance(report, PrivacyReport):
        report = run_privacy_audit()
        cache.set(CACHE_KEY, report, CACHE_SECONDS)
    return report


class PrivacyView(APIView):
    @extend_schema(
        responses={200: PrivacySerializer}, summary="Privacy guarantees as measured right now"
    )
    def get(self, request: Request) -> Response:
        report = current_report()
        return Response(PrivacySerializer(report).data, headers={"Cache-Control": "no-store"})
