"""The privacy report as the API shows it: measured facts and a count, no details.

Finding details stay out of the API on purpose: they tell an attacker which
defence is down (a weak Flower password, Redis snapshots). Clients get the
count; operators get the details from ``manage.py privacy_audit`` and the logs.
"""

from __future__ import annotations

from rest_framework import serializers


class MaxTtlSeenSerializer(serializers.Serializer[object]):
    input = serializers.IntegerField(source="redis.max_ttl_seen.in", allow_null=True)
    result = serializers.IntegerField(source="redis.max_ttl_seen.res", allow_null=True)
    record = serializers.IntegerField(source="redis.max_ttl_seen.job", allow_null=True)
    events = serializers.IntegerField(source="redis.max_ttl_seen.evt", allow_null=True)


class TtlSerializer(serializers.Serializer[object]):
    input_seconds = serializers.IntegerField(source="input_ttl")
    result_seconds = serializers.IntegerField(source="result_ttl")
    record_seconds = serializers.IntegerField(source="record_ttl")
    max_seen_seconds = MaxTtlSeenSerializer(
        source="*", help_text="The longest TTL on any key of ours right now (null: no such key)"
    )


class KeyRotationSerializer(serializers.Serializer[object]):
    active_since = serializers.DateTimeField(source="active_key_since", allow_null=True)
    age_seconds = serializers.IntegerField(source="active_key_age_seconds", allow_null=True)


class PrivacySerializer(serializers.Serializer[object]):
    measured_at = serializers.DateTimeField()
    ttl = TtlSerializer(source="*")
    redis_reachable = serializers.BooleanField(source="redis.reachable")
    redis_persistence_off = serializers.BooleanField(
        source="redis.persistence_off",
        allow_null=True,
        help_text="Measured with CONFIG GET; null when Redis refuses it",
    )
    job_isolation = serializers.BooleanField(
        source="isolate_jobs", help_text="A fresh worker process for every job"
    )
    key_rotation = KeyRotationSerializer(source="*")
    findings = serializers.IntegerField(source="finding_count")
