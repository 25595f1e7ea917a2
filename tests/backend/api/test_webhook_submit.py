"""A webhook that could never be delivered, or must never be, is refused at submit."""

from __future__ import annotations

import pytest

from backend.clients.models import ApiClient
from backend.clients.webhook_secrets import webhook_secret_issue
from tests.conftest import Persona, Upload
from tests.integration.helpers import submit


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("https://169.254.169.254/latest/meta-data/", "non-public address"),
        ("https://10.0.0.7/hook", "non-public address"),
        ("https://localhost/hook", "non-public address"),
        ("http://93.184.215.14/hook", "use https"),
        ("not a url", "https:// URL is required"),
        ("", "https:// URL is required"),
    ],
)
def test_it_refuses_a_forbidden_webhook(
    alice: Persona, canary_jpeg: Upload, url: str, says: str
) -> None:
    webhook_secret_issue(name="alice")
    response = submit(alice.api, canary_jpeg.data, form={"webhook": url})
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_webhook"
    assert says in error["message"]
    assert not url or url not in error["message"]


def test_it_refuses_a_webhook_without_a_signing_secret(alice: Persona, canary_jpeg: Upload) -> None:
    assert not ApiClient.objects.get(name="alice").webhook_secrets.exists()
    response = submit(alice.api, canary_jpeg.data, form={"webhook": "http://127.0.0.1:9/hook"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_webhook"
    assert "webhook_secret" in response.json()["error"]["message"]
