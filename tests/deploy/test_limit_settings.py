"""Limits that would break requests are refused when the server starts, not at the first
request they would break. Each case loads the settings afresh in a child process."""
from __future__ import annotations

import pytest

from .test_storage_settings import manage


@pytest.mark.parametrize("env", [
    {"HOTSPOT_CELL_M": "0"}, {"HOTSPOT_CELL_M": "nan"}, {"HOTSPOT_CELL_M": "-5"},
    {"HOTSPOT_CELL_M": "300", "HOTSPOT_BANDWIDTH_M": "250"}, {"HOTSPOT_BANDWIDTH_M": "1e9"},
    {"HOTSPOT_MIN_RECORDS": "0"}, {"DISCLOSURE_LOCATION_RADIUS_M": "0"},
    {"JSON_MAX_DEPTH": "10", "SYNC_MAX_MUTATION_DEPTH": "16"},
])
def test_a_limit_that_would_break_requests_stops_the_server_at_start(env):
    result = manage("check", **env)
    assert result.returncode != 0 and "ImproperlyConfigured" in result.stderr, (env, result.stderr[-500:])


def test_the_defaults_start():
    result = manage("check")
    assert result.returncode == 0, result.stderr[-500:]
