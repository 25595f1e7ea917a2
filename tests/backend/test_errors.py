"""Errors with a code: a job's end names its code and tells the client what to do."""

from __future__ import annotations

import pytest

from backend.errors import JOB_ERRORS, CodedError, job_error


def test_a_job_error_carries_the_services_message_for_its_code() -> None:
    error = job_error("time_limit")
    assert (error.code, error.message, error.status) == (
        "time_limit",
        "The job ran out of time; try a smaller photo.",
        422,
    )
    assert str(error) == error.message


def test_a_code_the_service_does_not_define_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        job_error("made_up")


def test_a_coded_error_may_carry_its_own_status() -> None:
    assert CodedError("busy", "Retry shortly.", status=503).status == 503
    assert CodedError("bad", "Fix it.").status == 422


@pytest.mark.parametrize("code", sorted(JOB_ERRORS))
def test_every_job_error_is_a_sentence_without_internals(code: str) -> None:
    message = JOB_ERRORS[code]
    assert message[0].isupper() and message.endswith(".")
    for leak in ("Traceback", ".py", "torch", "redis", "Redis "):
        assert leak not in message
