"""The task catalogue: what each task is called, what it takes and how it loads.

A task is one module under ``workers/`` that defines ``SPEC = TaskSpec(...)``.
The module must import cheaply: torch and model weights are loaded only by
``SPEC.load()``, which the worker calls once per process. The web reads the same
``SPEC`` objects for the catalogue and for params validation, and so never loads
torch. Adding a task means adding its module to ``TASK_MODULES``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

import numpy as np
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

TASK_MODULES: tuple[str, ...] = (
    "workers.anonymize",
    "workers.face_crop",
    "workers.cartoonize",
    "workers.detect",
)

#: What a runner gets: a decoded BGR ``uint8`` array of shape (H, W, 3) and the
#: validated params with their defaults filled in.
#: What it returns: a BGR ``uint8`` image for ``output="image"`` tasks, or a
#: JSON-serialisable ``dict`` for ``output="json"`` tasks.
Runner = Callable[[np.ndarray, Mapping[str, Any]], "np.ndarray | dict[str, Any]"]

ACCEPTED_FORMATS: tuple[str, ...] = ("image/jpeg", "image/png", "image/webp")


class InvalidParams(ValueError):
    """Params that do not match the task's schema; the message names the field."""


class TaskFailed(Exception):
    """A task could not produce a result for a reason the client should see.

    ``code`` is a snake_case error code that ends up in the job's ``error``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    #: JSON Schema (draft 2020-12) of the params object. Use
    #: ``"additionalProperties": False`` and give every property a ``default``.
    params_schema: Mapping[str, Any]
    #: Imports the model code, loads weights once and returns the runner.
    load: Callable[[], Runner]
    output: Literal["image", "json"] = "image"
    accepted_formats: tuple[str, ...] = field(default=ACCEPTED_FORMATS)
    #: Whether the pipeline downscales the photo to ``EPHEMERA_MAX_SIDE`` before
    #: the runner. Tasks that must answer in the input's own size or coordinates
    #: (anonymize, detect) say False and downscale their detector input themselves.
    downscale_input: bool = True

    def validate_params(self, params: object) -> dict[str, Any]:
        """Return the params with defaults filled in, or raise ``InvalidParams``."""
        if not isinstance(params, dict):
            raise InvalidParams("params must be a JSON object")
        validator = Draft202012Validator(dict(self.params_schema))
        error = next(iter(sorted(validator.iter_errors(params), key=_error_order)), None)
        if error is not None:
            raise InvalidParams(_describe(error))
        defaults = {
            key: prop["default"]
            for key, prop in self.params_schema.get("properties", {}).items()
            if "default" in prop
        }
        return {**defaults, **params}


def _error_order(error: ValidationError) -> tuple[str, ...]:
    return tuple(str(part) for part in error.absolute_path)


def _describe(error: ValidationError) -> str:
    where = ".".join(str(part) for part in error.absolute_path)
    if error.validator == "additionalProperties":
        return f"params: {error.message}; see GET /api/v1/tasks for the accepted params"
    return f"params.{where}: {error.message}" if where else f"params: {error.message}"


@cache
def all_specs() -> dict[str, TaskSpec]:
    """The catalogue, by task name, in the order of ``TASK_MODULES``."""
    specs: dict[str, TaskSpec] = {}
    for module_name in TASK_MODULES:
        spec = importlib.import_module(module_name).SPEC
        if not isinstance(spec, TaskSpec):
            raise TypeError(f"{module_name}.SPEC must be a TaskSpec")
        specs[spec.name] = spec
    return specs


def get_spec(name: str) -> TaskSpec | None:
    return all_specs().get(name)
