"""``manage.py privacy_audit``: audit the running system; exit 1 on any finding.

Prints one JSON line per finding, then one summary line, on standard output,
so a cron job, CI step or probe can both read and count them.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from backend.audit.privacy import run_privacy_audit


class Command(BaseCommand):
    help = "Measure the privacy guarantees on the running system; exit 1 on any finding."

    def handle(self, *args: Any, **options: Any) -> None:
        report = run_privacy_audit()
        for finding in report.findings:
            self.stdout.write(json.dumps(finding.as_dict()))
        failed = {check: n for check, n in report.counts().items() if n}
        summary = {
            "summary": {
                "findings": sum(failed.values()),
                "failed_checks": failed,
                "redis_reachable": report.redis.reachable,
                "redis_persistence_off": report.redis.persistence_off,
                "keys_scanned": report.redis.keys_scanned,
                "max_ttl_seen": report.redis.max_ttl_seen,
                "active_key_age_seconds": report.active_key_age_seconds,
            }
        }
        self.stdout.write(json.dumps(summary))
        if not report.ok:
            raise CommandError(
                f"privacy audit: {len(failed)} check(s) failed; see the lines above",
                returncode=1,
            )
