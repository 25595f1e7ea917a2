"""Pseudonyms: stable, keyed, and never comparable across purposes."""

from __future__ import annotations

import os
import subprocess
import sys

from backend.pseudonyms import hashed_id, owner_hash, pseudonym, subject_hash
from tests.conftest import REPO


def test_a_pseudonym_is_stable_and_hides_its_value() -> None:
    first = pseudonym("owner", "client:7")
    assert first == pseudonym("owner", "client:7")
    assert len(first) == 64 and first != pseudonym("owner", "client:8")


def test_the_same_value_gets_unrelated_names_under_different_purposes() -> None:
    names = {pseudonym(purpose, "x") for purpose in ("owner", "abuse", "log-id")}
    assert len(names) == 3


def test_an_ip_and_a_client_with_the_same_text_are_different_subjects() -> None:
    assert subject_hash("ip", "7") != subject_hash("client", "7")
    assert len(subject_hash("ip", "198.51.100.7")) == 32


def test_an_owner_is_named_by_its_client_id_whatever_its_type() -> None:
    assert owner_hash(7) == owner_hash("7") != owner_hash(8)


def test_a_log_hash_is_the_same_in_another_process() -> None:
    """Web and worker logs name a job alike, so an operator can follow it across them."""
    probe = (
        "import django; django.setup(); "
        "from backend.pseudonyms import hashed_id; print(hashed_id('job'))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "backend.settings", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == hashed_id("job")
    assert len(hashed_id("job")) == 16
