"""The two database roles as deployed: only the migrate job holds the owner's credentials
(compose and Kubernetes), the rest log in as the application's role, the worker keeps the
access log's anchor; and deploy/postgres/roles.sql, which `make run` and compose run, makes
both roles and hands every table to the owner, run for real with psql on the test database
inside a transaction that is rolled back."""
from __future__ import annotations

import shutil
import subprocess

import yaml
from django.db import connection

from .stack import DEPLOY
from .test_manifests import by_kind

ROLES_SQL = DEPLOY / "postgres" / "roles.sql"


def test_compose_gives_the_owner_role_to_the_migrate_job_only():
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    migrate = services["migrate"]["environment"]
    assert migrate["DATABASE_OWNER_URL"].startswith("postgres://fieldsync_owner:")
    for name in ("migrate", "app", "worker", "beat"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://fieldsync_app:"), name
        if name != "migrate":
            assert "DATABASE_OWNER_URL" not in env, name
    # The roles are made by the database's first start, from files in the repository.
    mounts = dict(v.split(":")[:2] for v in services["db"]["volumes"] if v.startswith("./"))
    assert mounts["./postgres/init-roles.sh"].startswith("/docker-entrypoint-initdb.d/")
    assert mounts["./postgres/roles.sql"] == "/fieldsync/roles.sql"
    assert all((DEPLOY / source).is_file() for source in mounts)
    # The worker seals, so the worker holds the anchor file's volume.
    anchor = services["worker"]["environment"]["ACCESS_LOG_ANCHOR"]
    assert "anchors:/var/lib/fieldsync/anchors" in services["worker"]["volumes"]
    assert anchor.endswith("file:///var/lib/fieldsync/anchors/access-log.log}")


def test_kubernetes_gives_the_owner_role_to_the_migrate_job_only():
    (job,) = by_kind("Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    refs = [ref["secretRef"]["name"] for ref in container["envFrom"] if "secretRef" in ref]
    assert refs == ["fieldsync-secrets", "fieldsync-migrate-secrets"]
    for deployment in by_kind("Deployment"):
        text = yaml.safe_dump(deployment)
        assert "fieldsync-migrate-secrets" not in text and "DATABASE_OWNER_URL" not in text
    (config,) = by_kind("ConfigMap")
    assert config["data"]["ACCESS_LOG_ANCHOR"].startswith("s3://")


def test_roles_sql_makes_both_roles_and_hands_the_tables_to_the_owner(transactional_db):
    # psql is installed by deploy/local/ensure-system.sh (make test); without it, a failure.
    assert shutil.which("psql"), "psql is missing: deploy/local/ensure-system.sh installs postgresql-client"
    # transactional_db: the test database, and no transaction of ours holding a lock psql waits for.
    s = connection.settings_dict
    name = s["NAME"]
    assert name.startswith("test_"), name  # never the developer's database
    owner, app = f"{name}_owner", f"{name}_app"
    script = "\n".join([
        # Everything in one transaction, rolled back: the roles and the ownership vanish again.
        "BEGIN;", f"\\i {ROLES_SQL}", f"\\i {ROLES_SQL}",  # twice: it is idempotent
        "SELECT (SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner <> :'owner'"
        "        AND tablename <> 'spatial_ref_sys'),"
        "       (SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = :'owner'),"
        "       pg_get_userbyid((SELECT datdba FROM pg_database WHERE datname = current_database())),"
        "       pg_has_role(:'app', 'pg_read_all_stats', 'USAGE'),"
        "       (SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles WHERE rolname = :'app'),"
        "       (SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE proname = 'warden_access_log_append_only');",
        "ROLLBACK;",
    ])
    done = subprocess.run(
        [*psql(s), "-q", "-v", "ON_ERROR_STOP=1", "-v", f"owner={owner}", "-v", f"app={app}", "-v", f"db={name}",
         "-v", "owner_pw=owner-test-only", "-v", "app_pw=app-test-only", "-f", "-"],
        input=script, capture_output=True, text=True, timeout=60, env=psql_env(s),
    )
    assert done.returncode == 0, done.stderr
    others, owned, database_owner, reads_stats, privileged, function_owner = done.stdout.strip().split("|")
    assert others == "0" and int(owned) > 30  # every table but PostGIS's, run twice over
    assert database_owner == owner and function_owner == owner
    assert reads_stats == "t" and privileged == "f"
    left = subprocess.run([*psql(s), "-c", f"SELECT count(*) FROM pg_roles WHERE rolname IN ('{owner}', '{app}')"],
                          capture_output=True, text=True, timeout=30, env=psql_env(s))
    assert left.stdout.strip() == "0"


def psql(s: dict) -> list[str]:
    return ["psql", "-X", "-At", "-h", s["HOST"] or "127.0.0.1", "-p", str(s["PORT"] or 5432), "-U", s["USER"],
            "-d", s["NAME"]]


def psql_env(s: dict) -> dict:
    return {"PGPASSWORD": s["PASSWORD"] or "", "PATH": "/usr/bin:/bin", "PGCONNECT_TIMEOUT": "10"}
