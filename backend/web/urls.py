from __future__ import annotations

from django.urls import path

from backend.web import views

urlpatterns = [
    path("", views.index, name="index"),
    path("assets/<str:name>", views.asset, name="asset"),
]
