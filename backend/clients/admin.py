from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from backend.clients.models import ApiClient, ApiKey, WebhookSecret


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    fields = ("prefix", "label", "created_at", "last_used_at", "expires_at", "revoked_at")
    readonly_fields = ("prefix", "created_at", "last_used_at")
    can_delete = False


class WebhookSecretInline(admin.TabularInline):
    """Secrets are issued with ``webhook_secret``: the admin shows when, never what."""

    model = WebhookSecret
    extra = 0
    fields = ("created_at",)
    readonly_fields = ("created_at",)

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ApiClient)
class ApiClientAdmin(admin.ModelAdmin):
    list_display = ("name", "tier", "is_active", "face_verify_enabled", "created_at")
    list_filter = ("tier", "is_active", "face_verify_enabled")
    search_fields = ("name",)
    inlines = [ApiKeyInline, WebhookSecretInline]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are issued with ``create_api_key``: the admin never sees a secret."""

    list_display = ("prefix", "client", "label", "created_at", "last_used_at", "revoked_at")
    list_filter = ("client__tier",)
    search_fields = ("prefix", "client__name", "label")
    readonly_fields = ("prefix", "secret_hash", "created_at", "last_used_at", "client")
    actions = ["revoke"]

    def has_add_permission(self, request: object) -> bool:
        return False

    @admin.action(description="Revoke the selected keys now")
    def revoke(self, request: object, queryset: object) -> None:
        for key in queryset:  # type: ignore[attr-defined]
            key.revoke()
