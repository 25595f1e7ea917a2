"""The OpenAPI document itself: what backend/api/schema.py adds to what the views say."""

from __future__ import annotations

from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator

from backend.catalogue import CATALOGUE


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return SchemaGenerator().get_schema(request=None, public=True)


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, methods in schema["paths"].items()
        if path.startswith("/api/v1/")
        for method, operation in methods.items()
    ]


def codes(response: dict[str, Any]) -> list[str]:
    body = response["content"]["application/json"]["schema"]
    return list(body["properties"]["error"]["properties"]["code"]["enum"])


def test_the_task_enum_is_the_catalogue(schema: dict[str, Any]) -> None:
    assert schema["components"]["schemas"]["TaskName"]["enum"] == list(CATALOGUE)
    variants = schema["components"]["schemas"]["JobSubmit"]["oneOf"]
    assert [variant["properties"]["task"]["enum"] for variant in variants] == [
        [name] for name in CATALOGUE
    ]
    anonymize = variants[list(CATALOGUE).index("anonymize")]["properties"]["params"]
    assert anonymize["properties"]["mode"]["enum"] == ["blur", "pixelate", "box"]


def test_every_operation_documents_its_errors_with_the_shared_body(
    schema: dict[str, Any],
) -> None:
    for path, method, operation in operations(schema):
        responses = operation["responses"]
        assert {"401", "429", "503"} <= set(responses), (path, method)
        for status, response in responses.items():
            if int(status) < 400:
                continue
            assert codes(response), (path, method, status)
            assert response["content"]["application/json"]["schema"]["required"] == ["error"]
        assert responses["429"]["headers"]["Retry-After"]["required"] is True
        assert operation["security"] == [{"bearer": []}, {"apiKey": []}]


def test_submit_is_a_multipart_upload_with_prefer_and_links(schema: dict[str, Any]) -> None:
    submit = schema["paths"]["/api/v1/jobs"]["post"]
    form = submit["requestBody"]["content"]["multipart/form-data"]
    image = schema["components"]["schemas"]["JobSubmit"]["properties"]["image"]

    assert image == {**image, "type": "string", "format": "binary"}
    assert form["encoding"]["params"]["contentType"] == "application/json"
    assert "Prefer" in [parameter["name"] for parameter in submit["parameters"]]
    assert {"400", "413", "415", "422"} <= set(submit["responses"])
    assert "unknown_task" in codes(submit["responses"]["400"])
    assert set(submit["responses"]["201"]["links"]) == {"GetJob", "DeleteJob", "DownloadResult"}
    poll = schema["paths"]["/api/v1/jobs/{job_id}"]["get"]
    assert set(poll["responses"]["200"]["links"]) == {"DeleteJob", "DownloadResult"}
    download = schema["paths"]["/api/v1/results/{token}"]["get"]["responses"]
    assert "410" in download and "image/png" in download["200"]["content"]
