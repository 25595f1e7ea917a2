"""The workers run exactly the tasks the catalogue offers."""

from __future__ import annotations

from backend.catalogue import CATALOGUE
from workers.registry import TASK_MODULES


def test_every_catalogue_task_has_a_runner_module_and_no_other() -> None:
    assert set(TASK_MODULES) == set(CATALOGUE)


def test_the_learned_tasks_are_offered() -> None:
    assert {"background", "stylize", "face_verify", "parse"} <= set(CATALOGUE)
    assert CATALOGUE["face_verify"].inputs == ("image", "reference")
    assert CATALOGUE["face_verify"].biometric
    assert not any(spec.biometric for name, spec in CATALOGUE.items() if name != "face_verify")
