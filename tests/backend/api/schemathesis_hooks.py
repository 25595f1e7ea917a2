"""Schemathesis hooks for the contract test (loaded through ``SCHEMATHESIS_HOOKS``).

``format: binary`` is what the contract says an upload is; a valid upload is a
real image. Left to itself the fuzzer draws random bytes for it, which the
service rightly refuses (415), so valid-data checks would blame the service for
the fuzzer's ignorance. Here "binary" draws real JPEG, PNG and WebP photos of
random sizes and colours; invalid data still comes from the negative phases.

The form's ``reference`` is declared once for every task (the fuzzer cannot
draw binary data under a ``oneOf`` variant, nor check a ``not`` over it), but
only a two-image task takes it: a one-photo task answers 400
reference_not_accepted, as its description says. The fuzzer does not read
descriptions, so a one-photo task's body loses a drawn reference here, just before
it is sent.

A form field is text on the wire, whatever type the fuzzer drew: a "negative"
body whose ``consent`` became the boolean ``true`` arrives as the valid string
"true". Schemathesis re-reads such a body as sent, but gives up (and blames the
service) when the form also carries a file. Here a negative body that is valid
as the server reads it (text, or JSON text for an object field, files as bytes)
is not sent: it is not invalid data.
"""

from __future__ import annotations

import json
from typing import Any

import cv2
import jsonschema_rs
import numpy as np
import schemathesis
from hypothesis import strategies as st
from schemathesis.core.parameters import ParameterLocation
from schemathesis.core.transforms import to_wire_text
from schemathesis.transport.serialization import Binary

from backend.catalogue import CATALOGUE

ENCODINGS = {"jpeg": ".jpg", "png": ".png", "webp": ".webp"}


@st.composite
def photos(draw: st.DrawFn) -> Binary:
    width = draw(st.integers(16, 96))
    height = draw(st.integers(16, 96))
    seed = draw(st.integers(0, 2**32 - 1))
    fmt = draw(st.sampled_from(sorted(ENCODINGS)))
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(ENCODINGS[fmt], pixels)
    assert ok
    return Binary(encoded.tobytes())


schemathesis.openapi.format("binary", photos())

# A valid webhook is one the service may call: left to itself the fuzzer draws
# URLs of hosts on the internet (a DNS lookup at submit, and a refusal for http).
# Here "uri" (used only by `webhook`) draws URLs of the allow-listed loopback
# host, on the discard port: deliveries fail and are retried, harmlessly.
schemathesis.openapi.format(
    "uri", st.integers(1, 10**6).map(lambda n: f"http://127.0.0.1:9/hook/{n}")
)

#: Tasks that take a second photo (catalogue ``inputs``).
PAIR_TASKS = {name for name, spec in CATALOGUE.items() if "reference" in spec.inputs}


def _readings(value: Any) -> list[Any]:
    """What the server may read from one form field: its text, or that text as JSON."""
    if isinstance(value, (Binary, bytes)):
        return [""]  # a file part: bytes, which `format: binary` takes as they come
    text = value if isinstance(value, str) else to_wire_text(value)
    try:
        return [text, json.loads(text)]
    except ValueError:
        return [text]


def _valid_as_sent(case: schemathesis.Case) -> bool:
    body = case.body
    schema = case.operation.get_body_for_media_type(case.media_type or "multipart/form-data")
    if not isinstance(body, dict) or schema is None:
        return False
    validator = jsonschema_rs.validator_for(schema.optimized_schema)
    sent: dict[str, Any] = {}
    for name, value in body.items():
        readings = _readings(value)
        fits = (r for r in readings if not _errors_at(validator, {**sent, name: r}, name))
        sent[name] = next(fits, readings[0])
    return validator.is_valid(sent)


def _errors_at(validator: jsonschema_rs.Validator, instance: dict[str, Any], name: str) -> bool:
    return any(error.instance_path[:1] == [name] for error in validator.iter_errors(instance))


@schemathesis.hook
def filter_case(context: schemathesis.HookContext, case: schemathesis.Case) -> bool:
    body = case.body
    if isinstance(body, dict) and "reference" in body and body.get("task") not in PAIR_TASKS:
        return False
    negative_body = case.meta is not None and case.meta.is_negative_at(ParameterLocation.BODY)
    return not (negative_body and _valid_as_sent(case))
