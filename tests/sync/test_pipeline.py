"""The engine's pipeline blocks (db.pipeline): only inside a transaction, and a statement's
error inside one reaches the caller."""
import psycopg
import pytest
from django.db import transaction

from fieldsync import db

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_pipeline_outside_a_transaction_is_refused():
    # Outside a transaction each sync would end an implicit one, and a lock taken inside
    # (the push's per-user lock) would be gone before the reads it guards.
    with pytest.raises(RuntimeError, match=r"inside transaction\.atomic"), db.pipeline():
        pass


def test_an_error_inside_a_pipeline_reaches_the_caller_and_the_transaction_rolls_back():
    with pytest.raises(psycopg.errors.DivisionByZero), transaction.atomic(), db.pipeline():
        with db.cursor() as cursor:
            cursor.execute("SELECT 1 / 0")
        with db.cursor() as cursor:
            cursor.execute("SELECT 2")
    # The connection is usable again, out of pipeline mode.
    with transaction.atomic(), db.cursor() as cursor:
        cursor.execute("SELECT 3")
        assert cursor.fetchone() == (3,)
