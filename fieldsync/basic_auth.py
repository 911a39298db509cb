"""DRF's HTTP Basic, with the credentials read by fieldsync.parsing: strict base64 of UTF-8,
a colon, no control characters, bounded lengths. Anything else is 401 before a username
reaches the database (a NUL in one was a 500). The default of every API view
(settings.REST_FRAMEWORK) and the analysis APIs' first scheme."""
from __future__ import annotations

from rest_framework.authentication import BasicAuthentication


class StrictBasicAuthentication(BasicAuthentication):
    # The challenge names the service (DRF's default realm is "api"); the same realm as the
    # bearer schemes', so a client that keeps one password per realm asks once.
    www_authenticate_realm = "fieldsync"

    def authenticate(self, request):
        # Imported here: DRF imports this class (its default authentication) while
        # fieldsync.errors, which the parsers raise, is still being imported.
        from fieldsync import parsing

        header = parsing.authorization(request)
        if header is None or header[0] != "basic":
            return None
        username, password = parsing.basic_credentials(header[1])
        return self.authenticate_credentials(username, password, request)
