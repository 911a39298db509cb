"""manage.py create_api_token <username>: print a new personal API token (shown only once)."""
from django.core.management.base import BaseCommand, CommandError

from ...models import User
from ...services.api_tokens import api_token_create


class Command(BaseCommand):
    help = (
        "Create a personal API token for a user and print it once (it expires after API_TOKEN_LIFETIME_DAYS). "
        "Desktop tools send it as "
        "'Authorization: Bearer <token>' (GDAL: --config GDAL_HTTP_HEADERS \"Authorization: Bearer <token>\")."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="what the token is for, e.g. 'QGIS laptop'")

    def handle(self, *args, username: str, name: str, **options) -> None:
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        if not user.is_active:
            raise CommandError(f"{username} is not active")
        row, token = api_token_create(user=user, name=name)
        self.stdout.write(token)
        # On stderr, so `$(manage.py create_api_token …)` still captures the token alone.
        self.stderr.write(f"expires {row.expires_at:%Y-%m-%d %H:%M} UTC; list and revoke at /review/tokens/")
