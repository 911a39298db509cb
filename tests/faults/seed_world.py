"""Migrate the database DATABASE_URL names and seed the sync tests' small world into it.

Run as a child process (`python -m tests.faults.seed_world`) against a private cluster: the
test process itself stays on pytest's test database. The passwords are hashed with the
production hashers, so the app servers can verify them at enrolment.
"""
import django


def main() -> None:
    django.setup()
    from django.core.management import call_command
    from django.db import transaction

    from tests.sync.conftest import build_world

    call_command("migrate", interactive=False, verbosity=0)
    with transaction.atomic():
        build_world()


if __name__ == "__main__":
    main()
