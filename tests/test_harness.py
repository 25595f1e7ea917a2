"""The process harness, shared by the tests and the benchmarks.

``bench/chaos.py`` drives it from a process that never configures Django, so
telling a worker node's processes apart must not load Django or the models.
"""

from __future__ import annotations

import os

from tests.harness import python_probe

PROBE = """
import subprocess, sys
from pathlib import Path
from tests.harness import Process

child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
try:
    process = Process(name="probe", proc=child, log_path=Path("/dev/null"))
    assert process.children() == []
    assert process.fork_servers() == []
    assert process.job_processes(busy=False) == []
finally:
    child.kill()
"""


def test_it_tells_a_nodes_processes_apart_without_django() -> None:
    env = {name: value for name, value in os.environ.items() if name != "DJANGO_SETTINGS_MODULE"}
    python_probe(PROBE, env=env)
