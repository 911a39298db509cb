"""manage.py seed_demo: create or restore the demo partnership of product.md, and add fictional
records to look at (services/demo_records.py)."""
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ...services.demo import DEMO_PASSWORD, demo_seed
from ...services.demo_records import demo_records_seed

DEFAULT_RECORDS = 300


class Command(BaseCommand):
    help = (
        "Create, or bring back to its documented state, the demo partnership: organisations, "
        "the Leigh and Wigan town centre areas and teams, one user per role, default forms. "
        "Safe to run again; every demo user's password is reset to --password. Then --records "
        "fictional observations and street audits over the last six months (added once: a re-run "
        "adds only those missing)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--password",
            default=DEMO_PASSWORD,
            help=f"password for every demo user (default: {DEMO_PASSWORD})",
        )
        parser.add_argument(
            "--records", type=int, default=DEFAULT_RECORDS,
            help=f"fictional observations and street audits to have (default: {DEFAULT_RECORDS}; 0: none)",
        )

    def handle(self, *args, password: str, records: int, **options) -> None:
        if not password:
            raise CommandError("--password must not be empty")
        if not 0 <= records <= 20_000:
            raise CommandError("--records must be between 0 and 20000")
        if not settings.DEBUG and password == DEMO_PASSWORD:
            # Not refused (a staging site may want the demo), but never unnoticed.
            self.stderr.write(
                self.style.WARNING(
                    "DEBUG is off and the demo users get the published default password; "
                    "pass --password to choose another."
                )
            )
        demo = demo_seed(password=password)
        for area in demo.areas.values():
            self.stdout.write(f"Area {area.code} {area.name} ({demo.boundary_set.name})")
        for team in demo.teams.values():
            self.stdout.write(f"Team {team.name}: {', '.join(a.code for a in team.areas.all())}")
        for username, user in demo.users.items():
            roles = sorted(g.name for g in user.groups.all())
            self.stdout.write(f"User {username} ({user.organisation}): {', '.join(roles)}")
        if records:
            started = time.monotonic()
            seeded = demo_records_seed(demo, count=records, password=password)
            self.stdout.write(
                f"Records: {seeded.observations} observations, {seeded.street_audits} street audits "
                f"({seeded.audit_items} items), {seeded.reviewed} reviewed; {seeded.added} new "
                f"in {time.monotonic() - started:.1f} s")
        self.stdout.write(self.style.SUCCESS("Demo partnership ready."))
