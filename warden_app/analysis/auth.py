"""How analysis clients authenticate: HTTP Basic, a personal API token, or the session."""
from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission

from fieldsync import parsing
from fieldsync.basic_auth import StrictBasicAuthentication

from .. import permissions
from ..services.api_tokens import TOKEN_PREFIX, api_token_user


class ApiTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer fsp_…`. Claims only `fsp_` tokens: device tokens (`fsd_`) and
    other bearer schemes are left alone (and so rejected here, where no other class takes them)."""

    def authenticate(self, request):
        header = parsing.authorization(request)
        if header is None or header[0] != "bearer":
            return None
        token = parsing.bearer_token(header[1])
        if not token.startswith(TOKEN_PREFIX):
            return None
        found = api_token_user(token)
        if found is None:
            raise AuthenticationFailed("Unknown, revoked or disabled API token.")
        return found

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="fieldsync"'


# Basic first: its challenge (401 + WWW-Authenticate: Basic) makes QGIS and GDAL ask for
# credentials. Session last: the browser (analyst map) with CSRF on unsafe methods.
ANALYSIS_AUTHENTICATION = [StrictBasicAuthentication, ApiTokenAuthentication, SessionAuthentication]


class CanReadRecords(BasePermission):
    """Analysts, supervisors and admins (permissions.can_read_records)."""

    message = "Only analysts, supervisors and admins read records here."

    def has_permission(self, request, view) -> bool:
        return permissions.can_read_records(request.user)


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """How drf-spectacular documents the personal token."""

    target_class = "warden_app.analysis.auth.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "Personal API token: fsp_… (create_api_token)"}

