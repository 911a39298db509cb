"""The base of every API view, the sync protocol's and the domain's."""
from __future__ import annotations

from rest_framework.views import APIView

from .errors import ApiError, field_error
from .openapi import ErrorResponsesSchema, ErrorSerializer

# The one error shape (docs/sync.md), for `responses=` of every API view.
ERROR = ErrorSerializer


# Its schema also documents the error statuses its parameters, authentication, permissions
# and throttles can give (openapi.ErrorResponsesSchema), and it refuses query parameters
# carrying NUL. A comment, not a docstring: drf-spectacular would inherit a docstring as the
# description of every operation without one of its own.
class ProtocolView(APIView):
    schema = ErrorResponsesSchema()

    def get_authenticate_header(self, request):
        # Every scheme the view takes, Basic first (RFC 9110 11.6.1 allows a list): DRF sends
        # only the first class's, so a view taking a device token before Basic (revoke)
        # challenged Bearer alone and QGIS, GDAL and curl never asked for a password.
        challenges = [c for c in (a.authenticate_header(request) for a in self.get_authenticators()) if c]
        challenges.sort(key=lambda c: not c.lower().startswith("basic"))
        return ", ".join(dict.fromkeys(challenges)) or None

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        # PostgreSQL text cannot hold NUL, so no parameter may carry one: refused here, once,
        # rather than failing as a database error (500) wherever a parameter reaches a query.
        bad = sorted({key for key, values in request.query_params.lists()
                      if "\x00" in key or any("\x00" in value for value in values)})
        if bad:
            raise ApiError("invalid", "Query parameters cannot contain NUL characters.",
                           fields={key: [field_error("invalid_character", "contains NUL")] for key in bad})
