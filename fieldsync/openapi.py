"""OpenAPI description of every API's cross-cutting parts: HTTP Basic, the one error shape,
and the error statuses every operation can answer (docs/sync.md, Errors)."""
from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers
from rest_framework.permissions import AllowAny


class StrictBasicScheme(OpenApiAuthenticationExtension):
    """HTTP Basic as DRF's, parsed strictly (fieldsync/basic_auth.py): the same scheme to a
    client, under the name drf-spectacular gives DRF's own."""

    target_class = "fieldsync.basic_auth.StrictBasicAuthentication"
    name = "basicAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "basic"}


class FieldErrorSerializer(serializers.Serializer):
    """One problem with one field or parameter (fieldsync.errors.field_error)."""

    code = serializers.CharField(help_text="machine-readable, e.g. required, out_of_range, not_in_choices")
    message = serializers.CharField()

    class Meta:
        ref_name = "FieldError"


class ErrorSerializer(serializers.Serializer):
    """`{"code", "message", "fields"}`: every failure, everywhere (fieldsync.errors).
    Some codes add keys (`device_revoked` adds `"wipe": true`), so others may follow."""

    code = serializers.CharField(help_text="machine-readable, e.g. invalid, not_found, throttled")
    message = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=FieldErrorSerializer()),
                                   help_text="per field: what is wrong with it (empty when no field is to blame)")

    class Meta:
        ref_name = "Error"


class ErrorResponsesSchema(AutoSchema):
    """Adds the error responses an operation can give because of how its view is built,
    unless the operation already documents that status:

    - 400 always: parameters and bodies are validated, and every query string is checked
      for NUL (fieldsync.api_views.ProtocolView), even where the operation declares no parameter;
    - 401 when its first authentication class challenges (DRF answers 401 only then, else 403);
    - 403 when a permission class may refuse;
    - 404 when its path has parameters (unknown ids, and paths the URL converters refuse);
    - 415 when it takes a body (other media types are refused);
    - 429 when it is throttled.

    Explicit `responses=` in extend_schema stay as they are; this only fills the gaps, so
    the schema says what the server really answers (tests/schema fuzzes it to check).
    """

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        responses = operation["responses"]
        for status in self._implied_error_statuses(operation):
            # Errors are JSON whatever the view renders on success (fieldsync.errors.exception_handler).
            responses.setdefault(str(status), self._get_response_for_code(ErrorSerializer, str(status),
                                                                          media_types=["application/json"]))
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _implied_error_statuses(self, operation: dict) -> list[int]:
        where = {parameter["in"] for parameter in operation.get("parameters", [])}
        has_body = "requestBody" in operation
        statuses = [400]
        if not all(isinstance(permission, AllowAny) for permission in self.view.get_permissions()):
            authenticators = self.view.get_authenticators()
            if authenticators and authenticators[0].authenticate_header(self.view.request):
                statuses.append(401)
            statuses.append(403)
        if "path" in where:
            statuses.append(404)
        if has_body:
            statuses.append(415)
        if self.view.get_throttles():
            statuses.append(429)
        return statuses
