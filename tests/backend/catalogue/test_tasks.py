"""The tasks on offer: each one's schema is valid, closed and fully defaulted."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from backend.catalogue import CATALOGUE, get_spec

SPECS = sorted(CATALOGUE)


def test_the_catalogue_lists_the_tasks_in_the_order_the_api_shows() -> None:
    assert list(CATALOGUE) == [
        "anonymize",
        "face_crop",
        "cartoonize",
        "detect",
        "background",
        "stylize",
        "face_verify",
        "parse",
    ]
    assert get_spec("detect") is CATALOGUE["detect"]
    assert get_spec("teleport") is None


@pytest.mark.parametrize("name", SPECS)
def test_every_schema_is_valid_and_refuses_unknown_params(name: str) -> None:
    schema = CATALOGUE[name].params_schema
    Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("name", SPECS)
def test_every_param_has_a_default_that_its_own_schema_accepts(name: str) -> None:
    spec = CATALOGUE[name]
    defaults = spec.validate_params({})
    assert set(defaults) == set(spec.params_schema["properties"])
    assert spec.validate_params(defaults) == defaults


def test_only_the_analysis_tasks_answer_json() -> None:
    json_tasks = {name for name, spec in CATALOGUE.items() if spec.output == "json"}
    assert json_tasks == {"detect", "face_verify", "parse"}
