"""The contract test's own hooks: a negative form body is dropped only when the
server, reading text, would rightly take it as valid."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from schemathesis.transport.serialization import Binary

from tests.backend.api.schemathesis_hooks import _valid_as_sent

PHOTO = Binary(b"\xff\xd8\xff")


@pytest.fixture(scope="module")
def submit() -> Any:
    document = SchemaGenerator().get_schema(request=None, public=True)
    return schemathesis.openapi.from_dict(document)["/api/v1/jobs"]["POST"]


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({"task": "detect", "consent": True, "image": PHOTO}, True),  # "true" on the wire
        ({"task": "detect", "consent": 12, "image": PHOTO}, True),  # "12"
        ({"task": "detect", "params": {}, "image": PHOTO}, True),  # JSON text of an object
        ({"task": "detect", "consent": "x" * 17, "image": PHOTO}, False),  # maxLength 16
        ({"task": "detect", "consent": "a\x00", "image": PHOTO}, False),  # NUL
        ({"task": "nope", "image": PHOTO}, False),
        ({"task": "detect", "params": "not json", "image": PHOTO}, False),
        ({"task": "detect", "params": 5, "image": PHOTO}, False),
        ({"task": "detect"}, False),  # no image
    ],
)
def test_a_negative_body_is_dropped_only_when_valid_as_sent(
    submit: Any, body: dict[str, Any], valid: bool
) -> None:
    case = submit.Case(body=body, media_type="multipart/form-data")
    assert _valid_as_sent(case) is valid
