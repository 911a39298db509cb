# fieldsync: the two commands are `make run` (local demo) and `make test` (the suite).
# Both install what is missing (Debian packages, .venv), pick or start a PostGIS
# database and Redis (deploy/local/ensure-db.sh writes var/env), then do their job.
# Everything is idempotent: a second run is fast and does not need the network.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
# Steps depend on each other's side effects (var/env, the database); keep them in order.
.NOTPARALLEL:

VENV        := .venv
PY          := $(VENV)/bin/python
# pip install re-runs only when pyproject.toml is newer than this stamp.
VENV_STAMP  := $(VENV)/.fieldsync-installed
PYTEST_ARGS ?=

# Each recipe is its own shell, so each one loads var/env first.
LOAD_ENV    := source var/env
# make run is a local http demo; make test must not inherit a developer's DEBUG.
# make run connects as the app role and migrates as the owner role (ensure-db.sh made both;
# docs/accountability.md; the server and worker never see the owner's URL), and anchors the
# access log's seals in var/; make test stays the superuser, which creates the test database.
RUN_ENV     := $(LOAD_ENV); export DEBUG=true FIELDSYNC_HTTPS=false; \
               if [ -n "$${RUN_DATABASE_URL:-}" ]; then \
                   export DATABASE_URL="$$RUN_DATABASE_URL" DATABASE_OWNER_URL="$$RUN_DATABASE_OWNER_URL"; fi; \
               export ACCESS_LOG_ANCHOR="$${ACCESS_LOG_ANCHOR:-file://$(CURDIR)/var/access-log-anchors.log}"
TEST_ENV    := $(LOAD_ENV); unset DEBUG; export FIELDSYNC_HTTPS=false

.PHONY: help run test lint migrate seed static bench bench-peers system venv db stop-db clean

help:
	@echo "make run      install what is missing, migrate, seed demo data, serve on 127.0.0.1:$${PORT:-8000} (front door at /)"
	@echo "make test     install what is missing, ruff, then the whole pytest suite (PYTEST_ARGS=...)"
	@echo "make lint     ruff check . and the import contracts (lint-imports)"
	@echo "make migrate  apply migrations        make seed   load the demo data"
	@echo "make bench    run bench/sync.py         make stop-db  stop the private PostgreSQL/Redis"
	@echo "make clean    stop-db, then remove var/ and generated files (keeps .venv)"

# --- set-up -----------------------------------------------------------------

system:
	@deploy/local/ensure-system.sh

venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml | system
	@deploy/local/ensure-venv.sh
	@touch $@

# Always re-run: it is cheap, and it notices a stopped cluster or a changed DATABASE_URL.
db: system
	@deploy/local/ensure-db.sh

# --- the two commands ---------------------------------------------------------

run: venv db
	$(RUN_ENV); $(PY) manage.py migrate --noinput
	$(RUN_ENV); $(PY) manage.py seed_demo
	$(RUN_ENV); $(PY) manage.py collectstatic --noinput
	@$(RUN_ENV); unset DATABASE_OWNER_URL; exec deploy/local/run-server.sh

# ruff first: findings fail the build before the slower suite starts.
# pytest's exit code 5 (no tests collected) is a failure too, said out loud.
test: venv lint db
	@$(TEST_ENV); $(PY) manage.py collectstatic --noinput -v 0
	@$(TEST_ENV); rc=0; $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests; that is a failure" >&2; fi; \
	exit $$rc

# --- handy targets --------------------------------------------------------------

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache --no-logo

migrate: venv db
	$(RUN_ENV); $(PY) manage.py migrate --noinput

seed: migrate
	$(RUN_ENV); $(PY) manage.py seed_demo

static: venv db
	$(RUN_ENV); $(PY) manage.py collectstatic --noinput

bench: venv db
	@$(TEST_ENV); $(PY) bench/sync.py $(BENCH_ARGS)

# The peer (PouchDB Server) comes from ../shared/peers; it needs node and npm on the PATH.
bench-peers: venv db
	@$(TEST_ENV); $(PY) bench/peers.py $(BENCH_ARGS)

stop-db:
	@deploy/local/stop-db.sh

# Stop the cluster first: its files may live in var/ (or /tmp, removed by --remove).
clean:
	@deploy/local/stop-db.sh --remove
	rm -rf var staticfiles media test-artifacts .pytest_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
