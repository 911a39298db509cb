"""The project's one error type and its JSON shape, {"code", "message", "fields"}, for every
API: the sync protocol's and the domain's alike (docs/sync.md, Errors)."""
from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class ApiError(exceptions.APIException):
    """An error with a machine-readable code; raise it from services, selectors and views
    alike: DRF turns it into the error body (exception_handler, settings.REST_FRAMEWORK)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status_code: int = status.HTTP_400_BAD_REQUEST,
        fields: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.fields = fields or {}
        self.extra = extra or {}
        self.headers = headers or {}


# DRF's own exceptions mapped to protocol codes.
_CODES = {
    exceptions.ParseError: "malformed_json",
    exceptions.AuthenticationFailed: "not_authenticated",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ValidationError: "invalid",
}


def error_body(code: str, message: str, fields: dict | None = None, **extra: Any) -> dict:
    return {"code": code, "message": message, "fields": fields or {}, **extra}


def _flatten(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten(value) for value in detail]
    return str(detail)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF hook: every API error leaves in the protocol's shape."""
    if isinstance(exc, ApiError):
        body = error_body(exc.code, exc.message, exc.fields, **exc.extra)
        headers = dict(exc.headers)
        if getattr(exc, "auth_header", None):  # set by DRF on a 401 (parsing.CredentialsRefused)
            headers["WWW-Authenticate"] = exc.auth_header
        return Response(body, status=exc.status_code, headers=headers)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code = next((c for cls, c in _CODES.items() if isinstance(exc, cls)), "error")
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail) if isinstance(exc.detail, dict) else {}
        message = "The request is not valid."
        if isinstance(exc.detail, list):
            message = "; ".join(str(item) for item in exc.detail)
    else:
        fields = {}
        message = str(getattr(exc, "detail", exc))
    response.data = error_body(code, message, fields)
    return response
