"""One task's public description, and the validation of its params."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from backend.imaging import UnsupportedMediaType

ACCEPTED_FORMATS: tuple[str, ...] = ("image/jpeg", "image/png", "image/webp")


class InvalidParams(ValueError):
    """Params that do not match the task's schema; the message names the field."""


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    #: JSON Schema (draft 2020-12) of the params object. Use
    #: ``"additionalProperties": False`` and give every property a ``default``.
    params_schema: Mapping[str, Any]
    output: Literal["image", "json"] = "image"
    accepted_formats: tuple[str, ...] = field(default=ACCEPTED_FORMATS)
    #: Whether the pipeline downscales the photo to ``EPHEMERA_MAX_SIDE`` before
    #: the runner. Tasks that must answer in the input's own size or coordinates
    #: (anonymize, detect) say False and downscale their detector input themselves.
    downscale_input: bool = True
    #: The uploads a job takes, by form field: ``("image",)``, or
    #: ``("image", "reference")`` for a task that compares two photos. The web
    #: requires exactly these; the worker passes each, decoded, to the runner.
    inputs: tuple[str, ...] = ("image",)
    #: A biometric comparison: the operator must enable it per client, and each
    #: job must carry ``consent=true`` (the web refuses it otherwise).
    biometric: bool = False

    @cached_property
    def _validator(self) -> Draft202012Validator:
        return Draft202012Validator(dict(self.params_schema))

    def validate_params(self, params: object) -> dict[str, Any]:
        """Return the params with defaults filled in, or raise ``InvalidParams``."""
        if not isinstance(params, dict):
            raise InvalidParams("params must be a JSON object")
        error = next(iter(sorted(self._validator.iter_errors(params), key=_error_order)), None)
        if error is not None:
            raise InvalidParams(_describe(error))
        # Copies: a runner that changes its params must not change the schema's defaults.
        defaults = {
            key: copy.deepcopy(prop["default"])
            for key, prop in self.params_schema.get("properties", {}).items()
            if "default" in prop
        }
        return {**defaults, **params}

    def accept(self, content_type: str) -> None:
        """Refuse an upload format this task does not take (``unsupported_media_type``)."""
        if content_type not in self.accepted_formats:
            raise UnsupportedMediaType(f"{self.name} accepts {self.accepted_formats}.")


def _error_order(error: ValidationError) -> tuple[str, ...]:
    return tuple(str(part) for part in error.absolute_path)


def _describe(error: ValidationError) -> str:
    where = ".".join(str(part) for part in error.absolute_path)
    if error.validator == "additionalProperties":
        return f"params: {error.message}; see GET /api/v1/tasks for the accepted params"
    return f"params.{where}: {error.message}" if where else f"params: {error.message}"
