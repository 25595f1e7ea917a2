from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from backend.api import health

urlpatterns = [
    path("api/v1/", include("backend.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    # The web page at / and its hashed assets.
    path("", include("backend.web.urls")),
]

handler400 = "backend.api.errors.bad_request"
handler403 = "backend.api.errors.permission_denied"
handler404 = "backend.api.errors.not_found"
handler500 = "backend.api.errors.server_error"
