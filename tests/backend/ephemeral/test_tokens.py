"""Result tokens: they name their job, keep a 256-bit secret, and open only where sealed."""

from __future__ import annotations

import uuid

import pytest

from backend.ephemeral import keys, tokens
from backend.ephemeral.crypto import DecryptionError

JOB = str(uuid.uuid4())


def test_a_token_names_its_job_and_is_never_issued_twice() -> None:
    first, second = tokens.new_token(JOB), tokens.new_token(JOB)
    assert first != second
    assert first.startswith("rt_") and len(first) == 67
    assert tokens.job_id_from_token(first) == tokens.job_id_from_token(second) == JOB


@pytest.mark.parametrize(
    "token",
    [
        "",
        "rt_nonsense",
        "xx_" + "A" * 64,
        "rt_" + "!" * 64,
        "rt_" + "A" * 65,
        "rt_" + "A" * 64 + "!",  # base64 decoding alone would skip the stray character
    ],
)
def test_it_names_no_job_for_what_is_not_a_token(token: str) -> None:
    assert tokens.job_id_from_token(token) is None


def test_a_token_hash_is_stable_and_fits_the_result_namespace() -> None:
    token = tokens.new_token(JOB)
    assert tokens.token_hash(token) == tokens.token_hash(token)
    assert keys.RESULT.suffix.match(tokens.token_hash(token))


def test_a_sealed_token_opens_for_its_job_only() -> None:
    token = tokens.new_token(JOB)
    sealed = tokens.seal_token(token, job_id=JOB)
    assert token not in sealed
    assert tokens.open_token(sealed, job_id=JOB) == token
    with pytest.raises(DecryptionError):
        tokens.open_token(sealed, job_id=str(uuid.uuid4()))
