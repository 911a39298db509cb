"""The one error shape every API answers with (docs/sync.md, Errors; fieldsync/errors.py),
checked the same way by every suite."""
from __future__ import annotations

from typing import Any


def field_errors_ok(fields: Any) -> bool:
    """`fields`: each name to a non-empty list of `{"code", "message"}`, both non-empty text."""
    return isinstance(fields, dict) and all(
        isinstance(name, str) and isinstance(problems, list) and problems and all(
            isinstance(p, dict) and set(p) == {"code", "message"}
            and all(isinstance(p[k], str) and p[k] for k in ("code", "message"))
            for p in problems)
        for name, problems in fields.items())


def assert_error_body(body: Any, code: str | None = None) -> dict:
    assert isinstance(body, dict) and set(body) >= {"code", "message", "fields"}, body
    assert isinstance(body["code"], str) and isinstance(body["message"], str) and body["message"], body
    assert field_errors_ok(body["fields"]), body
    if code is not None:
        assert body["code"] == code, body
    return body
