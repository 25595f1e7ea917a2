"""Probe entry point: ``python -m workers.healthcheck --ready|--alive [--role R]``; exit 0 or 1."""

from __future__ import annotations

import argparse
import sys

from workers import health


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--ready", action="store_true", help="the role can work")
    group.add_argument("--alive", action="store_true", help="the heartbeat is fresh")
    parser.add_argument("--role", choices=health.ROLES, default="worker")
    args = parser.parse_args(argv)
    ok = health.is_ready(args.role) if args.ready else health.is_alive(args.role)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
