"""Resource ceilings of a worker child, applied right after it forks."""

from __future__ import annotations

import logging
import resource

from django.conf import settings

logger = logging.getLogger(__name__)


def apply_child_limits() -> None:
    """Cap the child's address space (RLIMIT_AS) at ``EPHEMERA_WORKER_MEMORY_MB``.

    The ceiling is on address space, not resident memory: allocations past it
    fail at once with an error the pipeline turns into ``out_of_memory``, while
    the parent and the node stay unharmed. The parent (which holds the models)
    is not limited; each child inherits the models' pages and adds its own.
    """
    megabytes = settings.EPHEMERA_WORKER_MEMORY_MB
    if megabytes <= 0:
        return
    limit = megabytes * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    logger.info("child_limits_applied", extra={"address_space_mb": limit // (1024 * 1024)})
