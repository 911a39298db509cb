"""The project's one error type and its JSON shape, for every API, the sync protocol's and the
domain's alike (docs/sync.md, Errors):

    {"code": "invalid", "message": "limit: 1 to 500",
     "fields": {"limit": [{"code": "out_of_range", "message": "1 to 500"}]}}

`fields` names each field or parameter to blame with a list of `field_error(code, message)`,
the shape a rejected mutation's `errors` has too; it is `{}` when no field is to blame."""
from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def field_error(code: str, message: str) -> dict[str, str]:
    """One problem with one field or parameter: a machine-readable code (`required`,
    `out_of_range`, ...) and words for a person."""
    return {"code": code, "message": message}


def invalid(name: str, code: str, message: str, *, summary: str | None = None) -> ApiError:
    """The 400 `invalid` for one field or parameter; its message is `name: message` unless
    a `summary` says it better."""
    return ApiError("invalid", summary or f"{name}: {message}", fields={name: [field_error(code, message)]})


def _problems(problems: Any) -> list[dict[str, str]]:
    """A field's problems in the one shape. Callers build them with field_error; a bare
    text (the shape some APIs had) is kept as its message under the code `invalid`, so no
    older call site can put a second shape on the wire."""
    out = []
    for problem in problems if isinstance(problems, list | tuple) else [problems]:
        if isinstance(problem, dict) and "code" in problem:
            code = str(problem["code"])
            out.append(field_error(code, str(problem.get("message") or code)))
        else:
            out.append(field_error("invalid", str(problem)))
    return out


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
        self.fields = {str(name): _problems(problems) for name, problems in (fields or {}).items()}
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
    """The body itself, for answers DRF does not write (the project's 404/500 handlers)."""
    return {"code": code, "message": message, "fields": fields or {}, **extra}


def _validation_fields(detail: dict, prefix: str = "") -> dict[str, list[dict[str, str]]]:
    """DRF's validation errors (nested by serializer) as `fields`: nested names joined with
    dots, each ErrorDetail as a field_error with its code."""
    fields: dict[str, list[dict[str, str]]] = {}
    for key, value in detail.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            fields.update(_validation_fields(value, f"{name}."))
            continue
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            if isinstance(item, dict):  # a list serializer: one dict per element
                fields.update(_validation_fields(item, f"{name}.{index}."))
            else:
                fields.setdefault(name, []).append(field_error(str(getattr(item, "code", "invalid")), str(item)))
    return fields


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
        fields = _validation_fields(exc.detail) if isinstance(exc.detail, dict) else {}
        message = "The request is not valid."
        if isinstance(exc.detail, list):
            message = "; ".join(str(item) for item in exc.detail)
    else:
        fields = {}
        message = str(getattr(exc, "detail", exc))
    response.data = error_body(code, message, fields)
    return response
