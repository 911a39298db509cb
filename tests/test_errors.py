"""The one error vocabulary (fieldsync/errors.py): every `fields` leaves as lists of
field_error(code, message), whatever built it."""
from rest_framework import serializers

from fieldsync.errors import ApiError, exception_handler, field_error, invalid
from tests.error_shape import field_errors_ok


def test_invalid_names_the_field_with_one_field_error():
    error = invalid("limit", "out_of_range", "1 to 500")
    assert (error.code, error.message, error.status_code) == ("invalid", "limit: 1 to 500", 400)
    assert error.fields == {"limit": [field_error("out_of_range", "1 to 500")]}
    assert invalid("note", "required", "say why", summary="Say why.").message == "Say why."


def test_a_bare_text_problem_is_kept_in_the_one_shape():
    # A call site still writing the old shape cannot put a second one on the wire.
    error = ApiError("invalid", "x", fields={"a": ["too short"], "b": [{"code": "required"}], "c": "once"})
    assert error.fields == {"a": [field_error("invalid", "too short")], "b": [field_error("required", "required")],
                            "c": [field_error("invalid", "once")]}
    assert field_errors_ok(error.fields)


class _Point(serializers.Serializer):
    lon = serializers.FloatField()


class _Body(serializers.Serializer):
    name = serializers.CharField(max_length=3)
    at = _Point()
    stops = _Point(many=True)


def test_drf_validation_errors_leave_as_field_errors_with_their_codes():
    form = _Body(data={"name": "toolong", "at": {}, "stops": [{"lon": 1}, {"lon": "x"}]})
    assert not form.is_valid()
    response = exception_handler(serializers.ValidationError(form.errors), {})
    assert response.status_code == 400
    fields = response.data["fields"]
    assert response.data["code"] == "invalid" and field_errors_ok(fields)
    assert [p["code"] for p in fields["name"]] == ["max_length"]
    assert [p["code"] for p in fields["at.lon"]] == ["required"]
    assert [p["code"] for p in fields["stops.1.lon"]] == ["invalid"]
