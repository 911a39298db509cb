"""The aggregate tests' partnership (tests/aggregates/support.py), seen through the dashboard."""
from tests.aggregates.conftest import partnership, q3  # noqa: F401  (fixtures)
