"""Server-side request forgery: which webhook URLs are refused, before any connection."""

from __future__ import annotations

import pytest

from backend.webhooks.targets import WebhookRefused, check_url


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/latest/meta-data/",  # cloud metadata
        "https://[fd00:ec2::254]/",  # AWS metadata over IPv6
        "https://100.100.100.200/",  # Alibaba metadata (shared address space)
        "https://10.1.2.3/hook",
        "https://172.16.0.1/hook",
        "https://192.168.1.1/hook",
        "https://127.0.0.2/hook",  # loopback, but not the allow-listed host
        "https://localhost/hook",  # resolves to loopback; the name is not allow-listed
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",  # loopback dressed as IPv6
        "https://0.0.0.0/hook",
        "https://224.0.0.1/hook",  # multicast
        "https://240.0.0.1/hook",  # reserved
        "https://169.254.1.1/hook",  # link-local
    ],
)
def test_it_refuses_internal_addresses(url: str) -> None:
    with pytest.raises(WebhookRefused) as refused:
        check_url(url)
    assert refused.value.code == "invalid_webhook"
    assert "non-public address" in refused.value.message


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://93.184.215.14/hook", "use https"),
        ("ftp://93.184.215.14/hook", "https:// URL is required"),
        ("/relative/hook", "https:// URL is required"),
        ("https://user:pw@93.184.215.14/hook", "credentials"),
        ("https://93.184.215.14:99999/hook", "not a valid URL"),
    ],
)
def test_it_refuses_what_is_not_a_plain_https_url(url: str, says: str) -> None:
    with pytest.raises(WebhookRefused) as refused:
        check_url(url)
    assert says in refused.value.message


def test_it_accepts_a_public_https_address_and_keeps_the_checked_one() -> None:
    # A literal address: checked without any resolver, nothing is contacted.
    target = check_url("https://93.184.215.14/hooks/ephemera?client=7")
    assert (target.scheme, target.address, target.port) == ("https", "93.184.215.14", 443)
    assert target.path == "/hooks/ephemera?client=7"


def test_an_allow_listed_host_may_use_http_and_loopback() -> None:
    # The session allow-lists 127.0.0.1 (tests/services.py).
    target = check_url("http://127.0.0.1:8123/hook")
    assert (target.scheme, target.address, target.port) == ("http", "127.0.0.1", 8123)


def test_the_allow_list_is_a_setting(settings: object) -> None:
    settings.EPHEMERA_WEBHOOK_ALLOW_HTTP_HOSTS = []  # type: ignore[attr-defined]
    with pytest.raises(WebhookRefused):
        check_url("http://127.0.0.1:8123/hook")
