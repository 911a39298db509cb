-- The two database roles of a fieldsync database (docs/accountability.md, deploy/README.md).
-- Run as a superuser, connected to the database, with psql variables: owner, app (role
-- names), owner_pw, app_pw (their passwords), db (the database). Idempotent. Used by
-- deploy/local/ensure-db.sh (make run) and deploy/postgres/init-roles.sh (compose).
--
-- The owner owns the database, its schema and every table, and runs `manage.py migrate`
-- (DATABASE_OWNER_URL); the application's role (DATABASE_URL: web, worker, beat) owns
-- nothing, and the grants it holds are given by the owner after every migrate
-- (warden_app/db_roles.py): no TRUNCATE, UPDATE or DELETE of the access log, no triggers.
SELECT format('CREATE ROLE %I LOGIN', :'owner') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'owner')
\gexec
SELECT format('CREATE ROLE %I LOGIN', :'app') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app')
\gexec
ALTER ROLE :"owner" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'owner_pw';
ALTER ROLE :"app" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'app_pw';
-- The sync pull and the seal tell autovacuum's transactions apart by pg_stat_activity's
-- backend_type, which a role sees for its own sessions only without this.
GRANT pg_read_all_stats TO :"app";
ALTER DATABASE :"db" OWNER TO :"owner";
ALTER SCHEMA public OWNER TO :"owner";
REVOKE CREATE ON SCHEMA public FROM PUBLIC;  -- PostgreSQL before 15 grants it
-- Tables, views, sequences and functions made before the owner existed (by a superuser, or by
-- the application's role when one role did both) go to the owner; PostGIS's stay where they are.
SELECT format('ALTER %s %s OWNER TO %I',
              CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                             ELSE 'TABLE' END, c.oid::regclass, :'owner')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
  AND pg_get_userbyid(c.relowner) <> :'owner'
  AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.deptype IN ('e', 'a', 'i'))
\gexec
SELECT format('ALTER ROUTINE %s OWNER TO %I', p.oid::regprocedure, :'owner')
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> :'owner'
  AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                  AND d.deptype = 'e')
\gexec
-- Migrate refuses an application role that still owns anything (warden_app/db_roles.py).
