from __future__ import annotations

from tests.integration.live_stack import live_stack

__all__ = ["live_stack"]
