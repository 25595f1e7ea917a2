"""The one format of instants in API answers, webhook bodies and the key list."""

from __future__ import annotations

from datetime import datetime

from backend.isotime import iso_utc


def test_an_instant_is_utc_with_a_z_and_reads_back() -> None:
    text = iso_utc(1893456000.25)
    assert text == "2030-01-01T00:00:00.250000Z"
    assert datetime.fromisoformat(text).timestamp() == 1893456000.25


def test_no_instant_stays_none() -> None:
    assert iso_utc(None) is None
