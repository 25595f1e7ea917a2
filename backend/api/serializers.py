"""The shapes of the API: request validation and the job body of DESIGN.md section 2."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from rest_framework import serializers

from backend.ephemeral.keys import STATUSES
from backend.ephemeral.store import JobRecord
from backend.isotime import iso_utc


class JobSubmitSerializer(serializers.Serializer):
    # Empty files reach the byte sniffer, which refuses them like any non-image (415).
    image = serializers.FileField(
        allow_empty_file=True, help_text="JPEG, PNG or WebP; the type is read from the bytes."
    )
    task = serializers.CharField(max_length=64, help_text="A task name from GET /api/v1/tasks.")
    params = serializers.CharField(
        required=False, allow_blank=True, max_length=4096, help_text="A JSON object as a string."
    )
    reference = serializers.FileField(
        required=False,
        allow_empty_file=True,
        help_text=(
            "The second photo of a two-image task (face_verify), checked like image; "
            "refused by the other tasks. Both uploads together stay within max_bytes."
        ),
    )
    consent = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=16,
        help_text=(
            "For face_verify: exactly `true`, stating that the people in both photos agreed "
            "to the comparison."
        ),
    )
    # Checked by the service (scheme, address): a refusal is `invalid_webhook`, not a form error.
    webhook = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=2048,
        help_text="An https URL that gets a signed POST (Standard Webhooks) when the job ends.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # A field sent twice is ambiguous (which photo? which task?): the form
        # parser keeps the last value, and the other photo would be dropped
        # without a word. Refused instead of guessed.
        values = getattr(self.initial_data, "getlist", None)
        repeated = [str(name) for name in self.fields if values and len(values(name)) > 1]
        if repeated:
            raise serializers.ValidationError({repeated[0]: "Send this field once."})
        return attrs


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class ResultSerializer(serializers.Serializer):
    url = serializers.CharField()
    content_type = serializers.CharField()
    expires_at = serializers.DateTimeField()


class MetricsSerializer(serializers.Serializer):
    queued_ms = serializers.IntegerField(allow_null=True)
    run_ms = serializers.IntegerField(allow_null=True)


class JobSerializer(serializers.Serializer):
    """Read-only: renders a ``JobRecord``; the result URL appears once it exists."""

    id = serializers.UUIDField()
    task = serializers.CharField()
    status = serializers.ChoiceField(choices=list(STATUSES))
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    error = ErrorSerializer(allow_null=True)
    result = ResultSerializer(allow_null=True)
    metrics = MetricsSerializer()
    e2e = serializers.BooleanField(
        help_text="The uploads were end-to-end envelopes; the result downloads as one."
    )

    def to_representation(self, instance: Any) -> dict[str, Any]:
        record: JobRecord = instance
        token: str | None = self.context.get("token")
        result = None
        if record.status == "succeeded" and token is not None:
            result = {
                "url": reverse("result", kwargs={"token": token}),
                "content_type": record.result_content_type,
                "expires_at": iso_utc(record.result_expires_at),
            }
        error = None
        if record.status in {"failed", "expired"} and record.error_code:
            error = {"code": record.error_code, "message": record.error_message or ""}
        return {
            "id": record.id,
            "task": record.task,
            "status": record.status,
            "created_at": iso_utc(record.created_at),
            "expires_at": iso_utc(record.expires_at),
            "error": error,
            "result": result,
            "metrics": {"queued_ms": record.queued_ms, "run_ms": record.run_ms},
            "e2e": record.e2e,
        }
