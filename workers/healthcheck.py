"""Probe entry point: ``python -m workers.healthcheck --ready|--alive``; exit 0 or 1."""

from __future__ import annotations

import argparse
import sys

from workers import health


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--ready", action="store_true", help="models are loaded")
    group.add_argument("--alive", action="store_true", help="the heartbeat is fresh")
    args = parser.parse_args()
    ok = health.is_ready() if args.ready else health.is_alive()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
