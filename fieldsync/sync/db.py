"""Raw psycopg cursors for the engine's set-based statements.

Django's psycopg backend binds parameters client-side (it quotes every value into the
SQL text in Python); for a push's column arrays of 500 values that quoting costs more
than the statement. These cursors share Django's connection and transaction but let
PostgreSQL bind the parameters.
"""
import psycopg
from django.db import connection


def cursor() -> psycopg.Cursor:
    connection.ensure_connection()
    return psycopg.Cursor(connection.connection)
