"""``manage.py privacy_audit``: each finding made real on the session's Redis and settings."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from django.conf import settings as django_settings
from pytest_django.fixtures import Settings

from backend.ephemeral import crypto, keys
from ephemera_client import envelope
from ephemera_client.envelope import KeyPair
from tests.backend.audit.helpers import AuditRun, checks, queued_job, succeeded_job
from tests.services import REPO

Audit = Callable[[], AuditRun]


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def sealed(job_id: str) -> bytes:
    return crypto.seal(b"photo", keyring=crypto.keyring(), purpose="in", subject=job_id)


def test_a_clean_system_exits_zero(healthy: redis.Redis, privacy_audit: Audit) -> None:
    queued_job()
    succeeded_job()

    code, lines = privacy_audit()

    assert code == 0, lines
    assert lines == [lines[-1]]
    summary = lines[-1]["summary"]
    assert summary["findings"] == 0
    assert summary["keys_scanned"] == 6
    assert summary["redis_persistence_off"] is True


@pytest.fixture
def snapshots_on(healthy: redis.Redis) -> Iterator[None]:
    healthy.config_set("save", "3600 1")
    try:
        yield
    finally:
        healthy.config_set("save", "")


@pytest.mark.usefixtures("snapshots_on")
def test_it_finds_redis_snapshots_on(privacy_audit: Audit) -> None:
    code, lines = privacy_audit()
    assert code == 1
    assert checks(lines) == {"redis_persistence_on"}
    assert lines[-1]["summary"]["redis_persistence_off"] is False


@pytest.fixture
def config_refused(healthy: redis.Redis) -> Iterator[None]:
    """Forbid CONFIG to the connection's user, as managed Redis services do."""
    # Raw ACL SETUSER: redis-py's helper would also switch the user "off".
    healthy.execute_command("ACL", "SETUSER", "default", "-config")
    try:
        yield
    finally:
        healthy.execute_command("ACL", "SETUSER", "default", "+config")


@pytest.mark.usefixtures("config_refused")
def test_it_says_when_redis_refuses_config(privacy_audit: Audit) -> None:
    code, lines = privacy_audit()
    assert code == 1
    assert checks(lines) == {"redis_config_unverifiable"}
    assert lines[-1]["summary"]["redis_persistence_off"] is None


def test_it_finds_a_key_without_ttl(healthy: redis.Redis, privacy_audit: Audit) -> None:
    job_id = queued_job()
    healthy.persist(keys.job_key(job_id))

    code, lines = privacy_audit()

    assert code == 1
    assert checks(lines) == {"redis_key_without_ttl"}
    assert "eph:job:" in lines[0]["detail"]
    assert job_id not in str(lines)


def test_it_finds_a_ttl_beyond_the_configured_maximum(
    healthy: redis.Redis, privacy_audit: Audit
) -> None:
    job_id = str(uuid.uuid4())
    healthy.set(keys.input_key(job_id), sealed(job_id), ex=django_settings.EPHEMERA_INPUT_TTL + 60)

    code, lines = privacy_audit()

    assert code == 1
    assert checks(lines) == {"redis_ttl_too_long"}
    assert lines[-1]["summary"]["max_ttl_seen"]["in"] > django_settings.EPHEMERA_INPUT_TTL


def test_it_finds_a_plaintext_photo_under_eph_in(
    healthy: redis.Redis, privacy_audit: Audit
) -> None:
    job_id = str(uuid.uuid4())
    healthy.set(keys.input_key(job_id), b"\xff\xd8\xff\xe0\x00\x10JFIF holiday", ex=60)

    code, lines = privacy_audit()

    assert code == 1
    assert checks(lines) == {"redis_value_format"}
    assert "not sealed" in lines[0]["detail"]
    assert job_id not in str(lines) and "JFIF" not in str(lines)


def test_an_end_to_end_upload_is_ciphertext_and_a_fake_envelope_is_not(
    healthy: redis.Redis, privacy_audit: Audit
) -> None:
    worker, reply = KeyPair.generate(), KeyPair.generate()
    sealed_upload = envelope.seal_upload(
        b"\xff\xd8\xff holiday", key_id="w1", public_key=worker.public,
        reply_key=reply.public, service="ephemera", task="cartoonize",
    )  # fmt: skip
    healthy.set(keys.input_key(str(uuid.uuid4())), sealed_upload, ex=60)
    code, lines = privacy_audit()
    assert (code, checks(lines)) == (0, set())

    # The magic alone does not make plaintext pass for an envelope.
    healthy.set(keys.reference_key(str(uuid.uuid4())), b"EPHK holiday photo", ex=60)
    code, lines = privacy_audit()
    assert (code, checks(lines)) == (1, {"redis_value_format"})
    assert "holiday" not in str(lines)


def test_it_finds_an_unknown_field_in_a_job_record(
    healthy: redis.Redis, privacy_audit: Audit
) -> None:
    job_id = queued_job()
    healthy.hset(keys.job_key(job_id), "filename", "holiday-with-bob.jpg")

    code, lines = privacy_audit()

    assert code == 1
    assert checks(lines) == {"redis_value_format"}
    assert "holiday" not in str(lines) and "filename" not in str(lines)


def test_it_finds_a_stream_entry_that_is_not_a_status(
    healthy: redis.Redis, privacy_audit: Audit
) -> None:
    job_id = queued_job()
    healthy.xadd(keys.events_key(job_id), {"status": "running", "note": "bob's photo"})

    code, lines = privacy_audit()

    assert code == 1
    assert checks(lines) == {"redis_value_format"}


def test_it_finds_a_key_whose_name_is_not_ours(healthy: redis.Redis, privacy_audit: Audit) -> None:
    healthy.set("eph:in:holiday-with-bob.jpg", sealed("x"), ex=60)
    healthy.set("eph:cache:thumbnail", b"x", ex=60)

    code, lines = privacy_audit()

    assert code == 1
    assert checks(lines) == {"redis_unknown_key"}
    assert sum(line["count"] for line in lines[:-1]) == 2
    assert "holiday" not in str(lines) and "thumbnail" not in str(lines)


def test_it_finds_debug_on(healthy: redis.Redis, settings: Settings, privacy_audit: Audit) -> None:
    settings.DEBUG = True
    code, lines = privacy_audit()
    assert code == 1
    assert checks(lines) == {"debug_on"}


@pytest.mark.parametrize(
    "secret_key",
    ["django-insecure-" + secrets.token_urlsafe(40), "too-short", "ab" * 40],
)
def test_it_finds_a_weak_secret_key(
    healthy: redis.Redis, settings: Settings, privacy_audit: Audit, secret_key: str
) -> None:
    settings.SECRET_KEY = secret_key

    code, lines = privacy_audit()

    assert code == 1
    assert checks(lines) == {"secret_key_weak"}
    assert secret_key not in str(lines)


def weak_settings() -> list[tuple[str, str, str]]:
    """One weak value per Ephemera deploy check (``test_checks.py`` has every case)."""
    return [
        ("FLOWER_BASIC_AUTH", "s3cret-without-a-user", "flower_auth_missing"),
        ("FLOWER_BASIC_AUTH", "ops:changeme-changeme-2024", "flower_auth_weak"),
        ("EPHEMERA_KEYS", f"k1:{b64(bytes(range(32)))}", "keyring_weak"),
    ]


@pytest.mark.parametrize(("name", "value", "check"), weak_settings())
def test_it_reports_ephemeras_deploy_checks_without_their_values(
    healthy: redis.Redis,
    settings: Settings,
    privacy_audit: Audit,
    name: str,
    value: str,
    check: str,
) -> None:
    setattr(settings, name, value)

    code, lines = privacy_audit()

    assert code == 1
    assert checks(lines) == {check}
    assert value.rpartition(":")[2] not in str(lines)


def test_it_finds_blobs_no_key_of_the_keyring_can_open(
    healthy: redis.Redis, settings: Settings, privacy_audit: Audit
) -> None:
    queued_job()  # sealed under the session's key
    settings.EPHEMERA_KEYS = f"other:{b64(secrets.token_bytes(32))}"

    code, lines = privacy_audit()

    assert code == 1
    assert checks(lines) == {"redis_value_format"}
    assert "key id missing" in lines[0]["detail"]


def test_the_shell_command_exits_non_zero_and_names_the_check(
    healthy: redis.Redis, tmp_path: os.PathLike[str]
) -> None:
    job_id = str(uuid.uuid4())
    canary = f"canary-{uuid.uuid4().hex}"
    healthy.set(keys.input_key(job_id), canary.encode(), ex=60)
    env = {
        **os.environ,
        "FLOWER_BASIC_AUTH": f"ops:{secrets.token_urlsafe(24)}",
        "DJANGO_DEBUG": "false",
        # A database without tables: the key age is then unknown, not a failure.
        "DATABASE_URL": f"sqlite:///{tmp_path}/empty.sqlite3",
    }

    done = subprocess.run(
        [sys.executable, "manage.py", "privacy_audit"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 1, done.stderr
    assert '"check": "redis_value_format"' in done.stdout
    assert canary not in done.stdout + done.stderr
    assert job_id not in done.stdout + done.stderr
