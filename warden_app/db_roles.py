"""What the application's database role may do: the grants the owner role gives it.

Two roles (settings.DATABASE_OWNER / DATABASE_APP_ROLE, deploy/README.md): the owner runs
the migrations and owns every table, function and trigger; the application's role (web,
worker, beat) owns nothing, so it can neither ALTER nor DISABLE a trigger, nor TRUNCATE, DROP
or change an owner. It gets:

- SELECT, INSERT, UPDATE, DELETE on every table of the schema (no TRUNCATE, REFERENCES or
  TRIGGER), USAGE and SELECT on every sequence (no setval);
- on the append-only tables (APPEND_ONLY) SELECT and INSERT only; on the access log also
  UPDATE of its three chain columns, which the seal sets once from NULL (the table's trigger
  refuses any other change, so holding this lets the role seal rows, never alter one);
- no CREATE on the schema (a function or table of its own).

`apply_grants` runs after every `manage.py migrate` (post_migrate, as the owner) and is
idempotent. A table a later migration adds gets the ordinary grants twice over: from the
owner's default privileges (ALTER DEFAULT PRIVILEGES, set here) the moment it is created,
and from this function at the end of that migrate. An append-only table must be listed in
APPEND_ONLY, or it gets UPDATE and DELETE like any other.
"""
from __future__ import annotations

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper

# Tables the application may only add to (and read). The access log may also be sealed.
ACCESS_LOG = "warden_app_accesslogentry"
APPEND_ONLY = (ACCESS_LOG, "warden_app_accesslogseal")
SEAL_COLUMNS = ("seq", "prev_hash", "hash")


class RoleError(Exception):
    pass


def _ident(connection: BaseDatabaseWrapper, name: str) -> str:
    return connection.ops.quote_name(name)


def apply_grants(role: str, *, using: str = DEFAULT_DB_ALIAS) -> None:
    """Give `role` the application's privileges in schema public of `using`, as its owner."""
    connection = connections[using]
    app = _ident(connection, role)
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user, %s = current_user", [role])
        owner, same = cursor.fetchone()
        if same:
            raise RoleError(f"migrations run as {role}, the application's own role: set DATABASE_OWNER_URL")
        # The application's role must own nothing: an owner can switch any trigger off.
        cursor.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND pg_get_userbyid(c.relowner) = %s ORDER BY 1 LIMIT 5",
            [role],
        )
        owned = [name for (name,) in cursor.fetchall()]
        if owned:
            raise RoleError(
                f"{role} owns {', '.join(owned)}…: reassign them to the owner role first "
                f"(REASSIGN OWNED BY {role} TO {owner}, as a superuser; deploy/README.md)"
            )
        statements = [
            f"GRANT USAGE ON SCHEMA public TO {app}",
            f"REVOKE CREATE ON SCHEMA public FROM {app}",
            f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {app}",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {app}",
            f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {app}",
            f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {app}",
            # Tables and sequences the owner creates later (the next migrations).
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {app}",
        ]
        for table in APPEND_ONLY:
            # Revoking the table's UPDATE also drops any column grants: set them again below.
            statements.append(f"REVOKE UPDATE, DELETE ON {_ident(connection, table)} FROM {app}")
        columns = ", ".join(SEAL_COLUMNS)
        statements.append(f"GRANT UPDATE ({columns}) ON {_ident(connection, ACCESS_LOG)} TO {app}")
        for statement in statements:
            cursor.execute(statement)


def grant_after_migrate(*, using: str = DEFAULT_DB_ALIAS, **_kwargs) -> None:
    """post_migrate receiver (warden_app/apps.py): every migrate ends with the grants."""
    role = settings.DATABASE_APP_ROLE
    if role and using == DEFAULT_DB_ALIAS:
        apply_grants(role, using=using)


def log_privilege_problems(*, using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """What the role connected now could do to the access log that the application's role
    must not: shown by `verify_access_log`, so whoever reads its report sees whether the log
    is protected by privileges or by its trigger only."""
    connection = connections[using]
    problems = []
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")
        role, superuser = cursor.fetchone()
        if superuser:
            return [f"connected as {role}, a superuser: it can switch the log's trigger off"]
        for table in APPEND_ONLY:
            cursor.execute(
                # MEMBER: a role that may SET ROLE to the owner can do what the owner can.
                "SELECT pg_has_role(relowner, 'MEMBER'), has_table_privilege(oid, 'TRUNCATE'), "
                "has_table_privilege(oid, 'UPDATE'), has_table_privilege(oid, 'DELETE'), "
                "has_table_privilege(oid, 'TRIGGER') FROM pg_class WHERE oid = %s::regclass",
                [table],
            )
            owns, *held = cursor.fetchone()
            if owns:
                problems.append(f"{role} owns {table} (or may act as its owner): it can switch its trigger off")
            granted = [name for name, has in zip(("TRUNCATE", "UPDATE", "DELETE", "TRIGGER"), held, strict=True)
                       if has]
            if granted:
                problems.append(f"{role} holds {', '.join(granted)} on {table}")
    return problems
