"""The OpenAPI contract, completed after drf-spectacular has read the views.

drf-spectacular infers the shapes of the success answers from the serializers.
This hook adds what it cannot see: every error status each operation answers,
with the shared error body and the codes it may carry; the ``task`` enum and
the params of each task, from the catalogue; the multipart ``image`` as a
binary file; the ``Prefer``, ``Retry-After`` and ``Location`` headers; the API
key schemes; and the links that let a client (or a stateful tester) follow
submit -> poll -> download -> delete.

It lives apart from the views so the views stay short and the contract's
error table lives in one place. A status or code the server can answer and
this table lacks is a bug that the Schemathesis test finds.
"""

from __future__ import annotations

import copy
from typing import Any

from django.conf import settings

from backend.catalogue import CATALOGUE
from ephemera_client import envelope

API_PREFIX = "/api/v1/"
JOBS = "/api/v1/jobs"
JOB = "/api/v1/jobs/{job_id}"
RESULT = "/api/v1/results/{token}"
TASKS = "/api/v1/tasks"
KEYS = "/api/v1/keys"

#: What any authenticated operation may answer, whatever it does.
COMMON_ERRORS: dict[int, tuple[str, list[str]]] = {
    401: ("No API key, or one that is invalid, expired or revoked.",
          ["not_authenticated", "authentication_failed"]),
    406: ("The client does not accept application/json.", ["not_acceptable"]),
    429: ("Too many requests from this client or address, or the client is blocked "
          "after repeated rejected uploads; retry after Retry-After seconds.",
          ["rate_limited", "temporarily_blocked"]),
    503: (
        "Redis, the queue or the database is unreachable; retry shortly.",
        ["backend_unavailable"],
    ),
}  # fmt: skip

#: What each operation answers besides the common errors, by (path, method).
OPERATION_ERRORS: dict[tuple[str, str], dict[int, tuple[str, list[str]]]] = {
    (JOBS, "post"): {
        400: ("The form is incomplete or malformed, the task is unknown, the params do "
              "not match the task's schema (the message names the field), a reference "
              "photo is missing (face_verify) or sent to a one-photo task, or the webhook "
              "URL is refused.",
              ["invalid_request", "malformed_request", "unknown_task", "invalid_params",
               "reference_required", "reference_not_accepted", "invalid_webhook",
               "invalid_envelope"]),
        403: ("face_verify without the operator's leave for this client, or without "
              "consent=true.", ["face_verify_not_enabled", "consent_required"]),
        413: ("The upload is over the byte limit (max_bytes in GET /api/v1/tasks).",
              ["payload_too_large"]),
        415: ("The request is not multipart/form-data, or the image is not a JPEG, PNG or "
              "WebP (read from its bytes, not its name).", ["unsupported_media_type"]),
        422: ("The image is damaged, or has more pixels than max_pixels; or an end-to-end "
              "envelope names a key that is not published or is retired (docs/e2e.md).",
              ["undecodable_image", "image_too_large", "invalid_image", "unknown_key",
               "key_retired"]),
        429: ("Too many submits a minute or jobs in flight for this client's tier, too many "
              "requests from this address, or the client is blocked after repeated "
              "rejected uploads; retry after Retry-After seconds.",
              ["rate_limited", "temporarily_blocked"]),
    },
    (JOB, "get"): {
        404: ("No such job for this API key (another client's job answers the same).",
              ["job_not_found", "not_found"]),
    },
    (JOB, "delete"): {
        404: ("No such job for this API key (another client's job answers the same).",
              ["job_not_found", "not_found"]),
    },
    (RESULT, "get"): {
        404: ("No result for this token and API key: a leaked URL alone is useless.",
              ["result_not_found", "not_found"]),
        410: ("The result was downloaded already (a result downloads once) or expired.",
              ["result_gone"]),
    },
}  # fmt: skip

RETRY_AFTER = {
    "description": "Seconds to wait before retrying.",
    "schema": {"type": "integer", "minimum": 1},
}
#: What an answer to ``Prefer: wait=N`` says of the wait (``backend.api.prefer``).
WAIT_HEADERS = {
    "Preference-Applied": {
        "description": "wait=N, when Prefer: wait=N was honoured.",
        "schema": {"type": "string"},
    },
    "Retry-After": {
        **RETRY_AFTER,
        "description": (
            "Sent instead of Preference-Applied when the service was too busy to hold "
            "the wait (every wait slot of the web process taken): poll again after it."
        ),
    },
}
RESULT_TYPES = ("image/png", "image/jpeg", "image/webp")
E2E_TYPE = envelope.CONTENT_TYPE
KEYS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["suite", "service", "content_type", "keys"],
    "properties": {
        "suite": {"type": "object", "description": "RFC 9180 mode and algorithm ids."},
        "service": {"type": "string", "description": "Bound into every envelope's info."},
        "content_type": {"type": "string", "enum": [E2E_TYPE]},
        "keys": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "public_key", "not_after", "active"],
                "properties": {
                    "id": {"type": "string"},
                    "public_key": {"type": "string", "format": "byte"},
                    "not_after": {"type": ["string", "null"], "format": "date-time"},
                    "active": {"type": "boolean"},
                },
            },
        },
    },
}


def complete_contract(
    result: dict[str, Any], generator: object, request: object, public: bool
) -> dict[str, Any]:
    """drf-spectacular postprocessing hook (``SPECTACULAR_SETTINGS``)."""
    components = result.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(
        {
            "bearer": {"type": "http", "scheme": "bearer", "description": "Your API key."},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
    )
    schemas = components.setdefault("schemas", {})
    schemas.update(_catalogue_schemas())
    schemas["Job"]["properties"]["task"] = {"$ref": "#/components/schemas/TaskName"}

    for path, operations in result.get("paths", {}).items():
        if not path.startswith(API_PREFIX):
            continue
        for method, operation in operations.items():
            operation["security"] = [{"bearer": []}, {"apiKey": []}]
            responses = operation.setdefault("responses", {})
            errors = {**COMMON_ERRORS, **OPERATION_ERRORS.get((path, method), {})}
            for status, (description, codes) in sorted(errors.items()):
                responses[str(status)] = _error_response(status, description, codes)

    paths = result["paths"]
    _submit(paths[JOBS]["post"])
    _poll(paths[JOB]["get"])
    _download(paths[RESULT]["get"])
    paths[KEYS]["get"]["responses"]["200"] = {
        "description": "The workers' public HPKE keys for end-to-end encrypted jobs.",
        "content": {"application/json": {"schema": KEYS_SCHEMA}},
    }
    paths[TASKS]["get"]["responses"]["200"] = {
        "description": "The task catalogue.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Catalogue"}}},
    }
    return result


def _error_response(status: int, description: str, codes: list[str]) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string", "enum": codes},
                                "message": {"type": "string"},
                            },
                        }
                    },
                },
                "example": {"error": {"code": codes[0], "message": description}},
            }
        },
    }
    if status == 429:
        response["headers"] = {"Retry-After": {**RETRY_AFTER, "required": True}}
    elif status == 503:
        response["headers"] = {"Retry-After": RETRY_AFTER}
    return response


def _catalogue_schemas() -> dict[str, Any]:
    specs = CATALOGUE
    formats = sorted({fmt for spec in specs.values() for fmt in spec.accepted_formats})
    # The fields are declared once (multipart encoders read them from here); each
    # variant pins a task and the params schema that task accepts.
    variants = []
    for spec in specs.values():
        params = _openapi_schema(spec.params_schema)
        params["description"] = f"The params of {spec.name}, a JSON object."
        variant: dict[str, Any] = {
            "title": spec.name,
            "description": spec.description,
            "properties": {"task": {"type": "string", "enum": [spec.name]}, "params": params},
        }
        if "reference" in spec.inputs:
            variant["required"] = ["reference", *(["consent"] if spec.biometric else [])]
        variants.append(variant)
    submit = {
        "type": "object",
        "required": ["image", "task"],
        "properties": {
            "image": {
                "type": "string",
                "format": "binary",
                "description": "The photo: "
                + ", ".join(formats)
                + "; the type is read from its bytes, not its name.",
            },
            "reference": {
                "type": "string",
                "format": "binary",
                "description": "The second photo of a task whose inputs include reference "
                "(face_verify), checked like image; required there, refused (400 "
                "reference_not_accepted) by the other tasks.",
            },
            "consent": {
                "type": "string",
                "maxLength": 16,
                # Form fields are text: NUL is refused (400 invalid_request).
                "pattern": "^[^\\x00]*$",
                "description": "Required as exactly `true` by tasks with consent_required "
                "(face_verify): the people in both photos agreed to the comparison.",
            },
            "task": {"$ref": "#/components/schemas/TaskName"},
            "params": {
                "type": "object",
                "description": "The task's params as a JSON object (see GET /api/v1/tasks); "
                "omitted params take their defaults.",
            },
            "webhook": {
                "type": "string",
                "format": "uri",
                "description": "Optional: an https URL (at most 2048 characters) that gets "
                "a POST signed per Standard Webhooks ({id, status, error, expires_at}) when "
                "the job ends. Refused "
                "(400 invalid_webhook) when it is not https, resolves to a private, loopback "
                "or link-local address, or the client has no webhook secret.",
            },
        },
        "oneOf": variants,
    }
    return {
        "TaskName": {"type": "string", "enum": list(specs)},
        "JobSubmit": submit,
        "Task": {
            "type": "object",
            "required": ["name", "description", "params_schema", "output", "accepted_formats"],
            "properties": {
                "name": {"$ref": "#/components/schemas/TaskName"},
                "description": {"type": "string"},
                "params_schema": {"type": "object", "description": "JSON Schema of the params."},
                "output": {"type": "string", "enum": ["image", "application/json"]},
                "accepted_formats": {"type": "array", "items": {"type": "string"}},
                "inputs": {
                    "type": "array",
                    "items": {"type": "string", "enum": ["image", "reference"]},
                    "description": "The uploads a job takes, by form field.",
                },
                "consent_required": {
                    "type": "boolean",
                    "description": "A biometric task: the client must be enabled for it by "
                    "the operator, and each job must send consent=true.",
                },
                "max_bytes": {"type": "integer", "example": settings.EPHEMERA_MAX_UPLOAD_BYTES},
                "max_pixels": {"type": "integer"},
                "max_side": {"type": "integer"},
            },
        },
        "Catalogue": {
            "type": "object",
            "required": ["tasks"],
            "properties": {
                "tasks": {"type": "array", "items": {"$ref": "#/components/schemas/Task"}}
            },
        },
    }


def _openapi_schema(schema: Any) -> dict[str, Any]:
    """A task's JSON Schema as an OpenAPI 3.0 schema object (``enum`` needs a ``type``)."""
    converted = copy.deepcopy(dict(schema))
    for prop in converted.get("properties", {}).values():
        if "enum" in prop and "type" not in prop:
            prop["type"] = "string"
    return converted


def _prefer(description: str) -> dict[str, Any]:
    return {
        "in": "header",
        "name": "Prefer",
        "required": False,
        # RFC 7240: a preference is a hint, and one the server does not know is
        # ignored, not refused; so any value is valid, and only wait=N does something.
        "description": description,
        "schema": {"type": "string"},
        "example": "wait=30",
    }


def _replace_prefer(operation: dict[str, Any], description: str) -> None:
    parameters = [p for p in operation.get("parameters", []) if p.get("name") != "Prefer"]
    operation["parameters"] = [*parameters, _prefer(description)]


def _links(source: str) -> dict[str, Any]:
    job_id = f"$response.body#/{source}"
    return {
        "GetJob": {"operationId": "v1_jobs_retrieve", "parameters": {"job_id": job_id}},
        "DeleteJob": {"operationId": "v1_jobs_destroy", "parameters": {"job_id": job_id}},
        "DownloadResult": {
            "operationId": "v1_results_retrieve",
            "description": "Once the job succeeded: the token is the last segment of result.url.",
            # A regex extractor on a runtime expression (Schemathesis' extension): the
            # token is the last path segment of result.url.
            "parameters": {"token": "{$response.body#/result/url}#regex:/results/([^/]+)$"},
        },
    }


def _submit(operation: dict[str, Any]) -> None:
    operation["requestBody"] = {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"$ref": "#/components/schemas/JobSubmit"},
                "encoding": {
                    "image": {"contentType": f"image/jpeg, image/png, image/webp, {E2E_TYPE}"},
                    "reference": {"contentType": f"image/jpeg, image/png, image/webp, {E2E_TYPE}"},
                    "params": {"contentType": "application/json"},
                },
            }
        },
    }
    _replace_prefer(
        operation, "wait=N (N <= 60): answer when the job ends (201) or after N seconds (202)."
    )
    headers = {
        "Location": {
            "description": "The job's URL, to poll.",
            "required": True,
            "schema": {"type": "string"},
        },
        **WAIT_HEADERS,
    }
    responses = operation["responses"]
    responses["201"].update(
        description="The job ended within the wait: succeeded, failed or expired.",
        headers=headers,
        links=_links("id"),
    )
    # Queued or running: there is no result to download yet.
    responses["202"].update(
        description="The job is queued or running; poll its Location.",
        headers=headers,
        links={name: link for name, link in _links("id").items() if name != "DownloadResult"},
    )


def _poll(operation: dict[str, Any]) -> None:
    _replace_prefer(operation, "wait=N (N <= 60): answer when the job ends or after N seconds.")
    response = operation["responses"]["200"]
    response["description"] = "The job; result.url appears once it succeeded."
    response["headers"] = {**response.get("headers", {}), **WAIT_HEADERS}
    response["links"] = {name: link for name, link in _links("id").items() if name != "GetJob"}


def _download(operation: dict[str, Any]) -> None:
    binary = {"schema": {"type": "string", "format": "binary"}}
    operation["responses"]["200"] = {
        "description": "The result, once: the service deletes it as it answers.",
        "headers": {
            "Cache-Control": {"schema": {"type": "string", "enum": ["no-store"]}},
            "Content-Disposition": {"schema": {"type": "string"}},
        },
        "content": {
            **dict.fromkeys((*RESULT_TYPES, E2E_TYPE), binary),
            "application/json": {
                "schema": {"type": "object", "description": "detect: faces and landmarks."}
            },
        },
    }
