"""The application's database role cannot get rid of the access log: logged in as that role on
the real test database, after `manage.py migrate` ran as the owner and granted it its
privileges, every statement an attacker holding the application's credentials would send
against the log (TRUNCATE, UPDATE, DELETE, switching or dropping its triggers, replacing the
trigger function, taking the table over) is refused, while the application's own logging
and the seal still work as that role.

The suite runs as the superuser `postgres`, which stands in for the owner role here. The
application's role is named after the test database (roles are cluster-wide and shared),
made for each test and dropped with what it was granted afterwards."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from fieldsync.sync.models import Device
from warden_app.accountability.selectors import access_log_verify
from warden_app.accountability.services.access_log import access_log_seal
from warden_app.db_roles import RoleError, apply_grants, log_privilege_problems
from warden_app.models import AccessLogEntry, AccessLogSeal, User
from warden_app.services.access_log import access_log_records, access_log_records_matching, access_log_synced

LOG, SEALS = "warden_app_accesslogentry", "warden_app_accesslogseal"
PASSWORD = "app-role-test-only"  # ignored where the test cluster trusts local logins


@pytest.fixture
def app_role(transactional_db) -> Iterator[str]:
    name = f"{connection.settings_dict['NAME']}_app"
    quoted = connection.ops.quote_name(name)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name])
        if cursor.fetchone() is None:  # a run that died before its teardown may have left it
            cursor.execute(f"CREATE ROLE {quoted} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{PASSWORD}'")
    try:
        yield name
    finally:
        connection.close()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [name])
            cursor.execute(f"DROP OWNED BY {quoted}")  # its grants in this database
            cursor.execute(f"DROP ROLE {quoted}")


@contextmanager
def django_connected_as(user: str) -> Iterator[None]:
    """Django's own connection logged in as `user` (what DATABASE_URL says in production)."""
    saved = connection.settings_dict["USER"], connection.settings_dict["PASSWORD"]
    connection.close()
    connection.settings_dict["USER"], connection.settings_dict["PASSWORD"] = user, PASSWORD
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["USER"], connection.settings_dict["PASSWORD"] = saved


def login(user: str) -> psycopg.Connection:
    s = connection.settings_dict
    return psycopg.connect(dbname=s["NAME"], user=user, password=PASSWORD, host=s["HOST"] or None,
                           port=s["PORT"] or None, autocommit=True)


def owner_settings() -> dict:
    """DATABASE_OWNER_URL's entry: the suite's superuser, on this test database."""
    s = connection.settings_dict
    return {"NAME": s["NAME"], "USER": s["USER"], "PASSWORD": s["PASSWORD"], "HOST": s["HOST"],
            "PORT": s["PORT"], "OPTIONS": dict(s["OPTIONS"])}


def migrate_as_owner(role: str) -> None:
    """`manage.py migrate` with DATABASE_URL the application's role and DATABASE_OWNER_URL set."""
    with override_settings(DATABASE_OWNER=owner_settings(), DATABASE_APP_ROLE=role), django_connected_as(role):
        call_command("migrate", verbosity=0)
        with connection.cursor() as cursor:  # back on the application's role afterwards
            cursor.execute("SELECT current_user")
            assert cursor.fetchone()[0] == role


# (what the attacker tries, the statement, what PostgreSQL answers)
ATTACKS = [
    ("empty the log", f"TRUNCATE {LOG}", "permission denied for table"),
    ("empty the log and what refers to it", f"TRUNCATE {LOG} CASCADE", "permission denied for table"),
    ("empty the seals", f"TRUNCATE {SEALS}", "permission denied for table"),
    ("edit a row", f"UPDATE {LOG} SET purpose = 'routine' WHERE id = {{row}}", "permission denied for table"),
    ("edit every row", f"UPDATE {LOG} SET details = '{{}}'", "permission denied for table"),
    # The seal columns are the role's to set, once, from NULL; a sealed row is refused by the trigger.
    ("re-seal a sealed row", f"UPDATE {LOG} SET seq = 999, prev_hash = repeat('0', 64), hash = repeat('1', 64) "
                             f"WHERE id = {{row}}", "append-only"),
    ("delete a row", f"DELETE FROM {LOG} WHERE id = {{row}}", "permission denied for table"),
    ("delete every row", f"DELETE FROM {LOG}", "permission denied for table"),
    ("edit a seal", f"UPDATE {SEALS} SET head_hash = repeat('2', 64)", "permission denied for table"),
    ("delete the seals", f"DELETE FROM {SEALS}", "permission denied for table"),
    ("switch the log's trigger off", f"ALTER TABLE {LOG} DISABLE TRIGGER access_log_append_only", "must be owner"),
    ("switch every trigger off", f"ALTER TABLE {LOG} DISABLE TRIGGER ALL", "must be owner"),
    ("switch the seals' trigger off", f"ALTER TABLE {SEALS} DISABLE TRIGGER access_log_seal_append_only",
     "must be owner"),
    ("drop the trigger", f"DROP TRIGGER access_log_append_only ON {LOG}", "must be owner"),
    ("drop the xid stamp", f"DROP TRIGGER access_log_stamp ON {LOG}", "must be owner"),
    ("replace the trigger function", "CREATE OR REPLACE FUNCTION warden_access_log_append_only() RETURNS trigger "
                                     "LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
     "must be owner|permission denied for schema"),
    ("a function of its own", "CREATE FUNCTION public.fs_let_through() RETURNS trigger LANGUAGE plpgsql "
                              "AS $$ BEGIN RETURN NULL; END $$", "permission denied for schema public"),
    ("a trigger of its own", f"CREATE TRIGGER fs_swallow BEFORE DELETE ON {LOG} FOR EACH ROW "
                             "EXECUTE FUNCTION warden_append_only()", "permission denied for table"),
    ("take the table over", f"ALTER TABLE {LOG} OWNER TO CURRENT_USER", "must be owner"),
    ("drop the table", f"DROP TABLE {LOG} CASCADE", "must be owner"),
    ("rename it away", f"ALTER TABLE {LOG} RENAME TO old_log", "must be owner"),
    ("skip every trigger for the session", "SET session_replication_role = replica", "permission denied"),
    ("move the id sequence", f"SELECT setval(pg_get_serial_sequence('{LOG}', 'id'), 1)",
     "permission denied for sequence"),
]


def test_the_app_role_cannot_get_rid_of_the_log_but_logs_and_seals(app_role, tmp_path):
    # Before the owner's grants the role can do nothing at all with the log.
    attacker = login(app_role)
    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            attacker.execute(f"INSERT INTO {LOG} (at, action, record_type, record_ids, recipient, purpose, details) "
                             "VALUES (now(), 'consultation', 'observation', '{}', '', '', '{}')")
    finally:
        attacker.close()

    migrate_as_owner(app_role)

    analyst = User.objects.create(username="analyst-r")
    anchor = tmp_path / "anchors.log"
    with django_connected_as(app_role), override_settings(ACCESS_LOG_ANCHOR=f"file://{anchor}"):
        # The application's own writes, each of the log's write paths, as that role.
        first = access_log_records(user=analyst, action="consultation", record_type="observation",
                                   record_ids=[uuid.uuid4()], purpose="review")
        synced = access_log_synced(user=analyst, action="collection", record_type="observation",
                                   record_ids=[uuid.uuid4(), uuid.uuid4()])
        # Ordinary tables, the engine's too: ordinary DML.
        User.objects.filter(pk=analyst.pk).update(first_name="Ana")
        Device.objects.create(user=analyst, label="handheld", token_hash="0" * 64)
        assert access_log_records_matching(user=analyst, action="consultation", record_type="device",
                                           ids=Device.objects.values_list("id", flat=True))
        assert access_log_seal().rows == 3
        assert AccessLogSeal.objects.count() == 1 and len(anchor.read_text().splitlines()) == 1
        assert access_log_verify().ok
        assert log_privilege_problems() == []
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user")
            assert cursor.fetchone()[0] == app_role

    attacker = login(app_role)
    try:
        for what, sql, answer in ATTACKS:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match=answer):
                attacker.execute(sql.replace("{row}", str(first.pk)))
                pytest.fail(f"{what}: not refused")
    finally:
        attacker.close()

    # Nothing changed: three rows sealed in turn, one seal, every trigger on, owner unchanged.
    assert list(AccessLogEntry.objects.order_by("seq").values_list("id", "seq"))[:2] == [(first.pk, 1), (synced, 2)]
    assert AccessLogEntry.objects.count() == 3 and AccessLogSeal.objects.count() == 1
    assert access_log_verify(store=None).ok
    with connection.cursor() as cursor:
        cursor.execute("SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid IN (%s::regclass, %s::regclass) "
                       "AND NOT tgisinternal ORDER BY 1", [LOG, SEALS])
        assert cursor.fetchall() == [("access_log_append_only", "O"), ("access_log_seal_append_only", "O"),
                                     ("access_log_stamp", "O")]
        cursor.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE n.nspname = 'public' AND pg_get_userbyid(c.relowner) = %s", [app_role])
        assert cursor.fetchone()[0] == 0  # it owns nothing


@pytest.fixture
def later_table(app_role) -> Iterator[str]:
    try:
        yield "fs_later_table"
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS fs_later_table")


def test_tables_added_later_get_the_grants_and_an_owning_app_role_is_refused(app_role, later_table):
    migrate_as_owner(app_role)
    quoted = connection.ops.quote_name(app_role)
    with connection.cursor() as cursor:
        # A later migration's table, created by the owner: covered by its default privileges.
        cursor.execute("CREATE TABLE fs_later_table (id int)")
    attacker = login(app_role)
    try:
        attacker.execute("INSERT INTO fs_later_table VALUES (1)")
        assert attacker.execute("SELECT count(*) FROM fs_later_table").fetchone()[0] == 1
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            attacker.execute("TRUNCATE fs_later_table")
        # The grants cannot be applied by the application's role itself…
        with django_connected_as(app_role), pytest.raises(RoleError, match="application's own role"):
            apply_grants(app_role)
    finally:
        attacker.close()
    # …nor to a role that owns a table (it could switch that table's triggers off).
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE fs_later_table OWNER TO {quoted}")
    with pytest.raises(RoleError, match="owns fs_later_table"):
        migrate_as_owner(app_role)
    # The superuser the suite runs as is named for what it is in verify_access_log's report.
    assert log_privilege_problems() == [f"connected as {connection.settings_dict['USER']}, a superuser: it can "
                                        "switch the log's trigger off"]
