"""A task's params: validated against its schema, defaults filled in, errors that name the field."""

from __future__ import annotations

import pytest

from backend.catalogue.spec import InvalidParams, TaskSpec

SPEC = TaskSpec(
    name="example",
    description="An example.",
    params_schema={
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "size": {"type": "integer", "minimum": 1, "default": 8},
            "mode": {"enum": ["a", "b"], "default": "a"},
            "sizes": {"type": "array", "default": [1, 2]},
        },
    },
)


def test_it_fills_in_the_defaults_of_what_was_not_given() -> None:
    assert SPEC.validate_params({"size": 3}) == {"size": 3, "mode": "a", "sizes": [1, 2]}


@pytest.mark.parametrize("params", [None, [], "size=3"])
def test_it_refuses_params_that_are_not_an_object(params: object) -> None:
    with pytest.raises(InvalidParams, match="params must be a JSON object"):
        SPEC.validate_params(params)


def test_it_names_the_field_that_is_wrong() -> None:
    with pytest.raises(InvalidParams, match=r"^params\.size: 0 is less than the minimum of 1$"):
        SPEC.validate_params({"size": 0})


def test_it_points_an_unknown_param_at_the_task_list() -> None:
    with pytest.raises(InvalidParams, match=r"'colour' was unexpected.*GET /api/v1/tasks"):
        SPEC.validate_params({"colour": "red"})


def test_of_several_errors_it_reports_the_first_field_by_name() -> None:
    with pytest.raises(InvalidParams, match=r"^params\.mode: 5 is not one of"):
        SPEC.validate_params({"size": 0, "mode": 5})


def test_the_defaults_it_hands_out_are_the_callers_own() -> None:
    SPEC.validate_params({})["sizes"].append(3)
    assert SPEC.validate_params({})["sizes"] == [1, 2]
