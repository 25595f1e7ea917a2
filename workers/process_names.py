"""What job isolation names its processes (``/proc/<pid>/comm``, ``ps``).

A module without imports, so that operators' tools and the test harness can
tell the processes apart without loading Django or the models.
"""

from __future__ import annotations

#: The node's fork server, which forks every job process.
FORK_SERVER_NAME = "ephemera-forks"
#: A job process: a spare until its job arrives, then that job's alone.
JOB_PROCESS_NAME = "ephemera-job"
