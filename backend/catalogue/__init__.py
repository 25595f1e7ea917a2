"""The task catalogue: what each task is called, what it takes and what it answers.

Plain data, owned by the web: the API validates params and lists tasks from it
without importing the workers (no numpy, torch or OpenCV). Workers map each
name to the code that runs it (``workers.registry``).
"""

from backend.catalogue.spec import InvalidParams, TaskSpec
from backend.catalogue.tasks import CATALOGUE, get_spec

__all__ = ["CATALOGUE", "InvalidParams", "TaskSpec", "get_spec"]
