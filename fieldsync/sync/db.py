"""Raw psycopg cursors for the engine's set-based statements.

Django's psycopg backend binds parameters client-side (it quotes every value into the
SQL text in Python); for a push's column arrays of 500 values that quoting costs more
than the statement. These cursors share Django's connection and transaction but let
PostgreSQL bind the parameters.
"""
import psycopg
from django.db import connection
from psycopg.types.json import JsonbLoader, JsonLoader


def cursor() -> psycopg.Cursor:
    connection.ensure_connection()
    cur = psycopg.Cursor(connection.connection)
    # Django makes its connection load json as text (JSONField decodes it); the engine
    # wants values, so this cursor loads them itself.
    cur.adapters.register_loader("jsonb", JsonbLoader)
    cur.adapters.register_loader("json", JsonLoader)
    return cur
