"""Recompute the access log's hash chain and report the first broken link (exit code 1)."""
from __future__ import annotations

import re

from django.core.management.base import BaseCommand, CommandError, CommandParser

from warden_app.accountability.selectors import access_log_verify
from warden_app.accountability.services.access_log import access_log_seal


class Command(BaseCommand):
    help = (
        "Verify the s.62 access log: every sealed row in turn, none missing, none altered. "
        "Prints the head (seq and hash) to keep outside the database; pass earlier heads "
        "as --anchor SEQ:HASH to catch a chain rewritten or cut short since."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--anchor", action="append", default=[], metavar="SEQ:HASH",
                            help="a head printed by an earlier run (repeatable)")
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
        result = access_log_verify(anchors=anchors)
        if not result.ok:
            self.stderr.write(f"BROKEN after {result.checked} good rows: {result.problem}")
            # SystemExit rather than CommandError: the report above is the message.
            raise SystemExit(1)
        self.stdout.write(
            f"OK: {result.checked} sealed rows chain correctly; head seq {result.head_seq} "
            f"hash {result.head_hash}; {result.unsealed} rows not sealed yet"
            + (f"; anchors matched: {', '.join(map(str, result.anchors_checked))}" if result.anchors_checked else "")
        )
