"""manage.py seed_demo: create or restore the demo partnership of product.md."""
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ...services.demo import DEMO_PASSWORD, demo_seed


class Command(BaseCommand):
    help = (
        "Create, or bring back to its documented state, the demo partnership: organisations, "
        "the Leigh and Wigan town centre areas and teams, one user per role, default forms. "
        "Safe to run again; every demo user's password is reset to --password."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--password",
            default=DEMO_PASSWORD,
            help=f"password for every demo user (default: {DEMO_PASSWORD})",
        )

    def handle(self, *args, password: str, **options) -> None:
        if not password:
            raise CommandError("--password must not be empty")
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
        self.stdout.write(self.style.SUCCESS("Demo partnership ready."))
