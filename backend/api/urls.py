from __future__ import annotations

from django.urls import path

from backend.api import views
from backend.audit.views import PrivacyView

urlpatterns = [
    path("jobs", views.JobCreateView.as_view(), name="jobs"),
    path("jobs/<str:job_id>", views.JobDetailView.as_view(), name="job"),
    path("results/<str:token>", views.ResultView.as_view(), name="result"),
    path("tasks", views.TaskCatalogueView.as_view(), name="tasks"),
    path("keys", views.KeysView.as_view(), name="keys"),
    path("privacy", PrivacyView.as_view(), name="privacy"),
]
