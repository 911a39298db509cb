"""Recompute the access log's hash chain, hold it to every anchor, and report the first
broken link (exit code 1)."""
from __future__ import annotations

import re

from django.core.management.base import BaseCommand, CommandError, CommandParser

from warden_app.accountability.anchors import anchor_store
from warden_app.accountability.selectors import access_log_verify
from warden_app.accountability.services.access_log import access_log_seal
from warden_app.db_roles import log_privilege_problems


class Command(BaseCommand):
    help = (
        "Verify the s.62 access log: every sealed row in turn, none missing, none altered, and "
        "every head recorded outside the database (ACCESS_LOG_ANCHOR, or --anchor-url) reproduced "
        "and reached. Heads printed by earlier runs may be passed as --anchor SEQ:HASH too."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--anchor", action="append", default=[], metavar="SEQ:HASH",
                            help="a head printed by an earlier run (repeatable)")
        parser.add_argument("--anchor-url", metavar="URL",
                            help="read the anchors from this file:// or s3:// URL instead of ACCESS_LOG_ANCHOR "
                                 "(say, a copy the DPO keeps)")
        parser.add_argument("--seal", action="store_true",
                            help="seal committed rows first (as the every-minute job does)")

    def handle(self, *args, **options) -> None:
        anchors: dict[int, str] = {}
        for anchor in options["anchor"]:
            match = re.fullmatch(r"(\d+):([0-9a-f]{64})", anchor.strip())
            if not match:
                raise CommandError(f"--anchor {anchor!r}: expected SEQ:HASH (64 hex digits)")
            anchors[int(match[1])] = match[2]
        if options["seal"]:
            sealed = access_log_seal()
            self.stdout.write(f"sealed {sealed.rows} rows")
        store = anchor_store(options["anchor_url"]) if options["anchor_url"] else anchor_store()
        result = access_log_verify(anchors=anchors, store=store)
        for problem in log_privilege_problems():
            self.stderr.write(f"WARNING: {problem} (the log is then protected by its trigger only)")
        for warning in result.warnings:
            self.stderr.write(f"WARNING: {warning}")
        if not result.ok:
            self.stderr.write(f"BROKEN after {result.checked} good rows: {result.problem}")
            # SystemExit rather than CommandError: the report above is the message.
            raise SystemExit(1)
        self.stdout.write(
            f"OK: {result.checked} sealed rows chain correctly; head seq {result.head_seq} "
            f"hash {result.head_hash}; {result.unsealed} rows not sealed yet"
            + (f"; anchors matched: {', '.join(map(str, result.anchors_checked))}" if result.anchors_checked else "")
        )
        if result.anchor_url and not result.anchored:
            self.stdout.write(f"anchor {result.anchor_url}: no heads yet (nothing sealed)")
        elif result.anchor_url:
            self.stdout.write(
                f"anchor {result.anchor_url}: {result.anchored} heads, every one reproduced, the last at seq "
                f"{result.last_anchored_seq}; {result.seals} seals in the database, every one anchored"
            )
