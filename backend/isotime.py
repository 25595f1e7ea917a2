"""Instants as the API writes them: ISO-8601 in UTC with a ``Z``, one format everywhere."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(timestamp: float | None) -> str | None:
    """``2026-12-01T03:00:00.123456Z`` for epoch seconds; None stays None."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat().replace("+00:00", "Z")
