"""A handheld that sends a whole push and hangs up before the answer (the app was closed, the
signal went): the server finishes the push, and the resend is answered `duplicate`, once each.
"""
from __future__ import annotations

import json
import socket

import psycopg
import pytest

from tests.deploy.stack import child_database_url

from .support import HttpHandheld, creates_only, stored, wait_until

# A hang fails in two minutes, not the suite's ten; pytest-timeout (SIGALRM) fails the test where it
# stands, so the fixtures still stop every process.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def raw_push(port: int, token: str, mutations: list[dict]) -> bytes:
    body = json.dumps({"mutations": mutations}).encode()
    head = (
        "POST /api/v1/sync/push HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        "\r\n"
    )
    return head.encode() + body


def test_push_abandoned_by_its_client_is_kept_and_the_resend_is_duplicate(world, stack, check_db):
    stack.start_gunicorn(workers=2)
    handheld = HttpHandheld.enrol(stack.base_url, "warden", "Handheld 1")
    mutations, records = creates_only("dropped")
    mutation_ids = [m["mutation_id"] for m in mutations]

    # The receipts' table is held for writing, so the push cannot answer before the client has
    # gone: the hang-up is certain to come first, not a race the server might win.
    holder = psycopg.connect(child_database_url("faults-lock-holder"))
    try:
        holder.execute("LOCK TABLE sync_receipt IN EXCLUSIVE MODE")
        with socket.create_connection(("127.0.0.1", stack.app_port), timeout=10) as sock:
            sock.sendall(raw_push(stack.app_port, handheld.token, mutations))
        # Closed without reading a byte. The server has the push in hand, mid-transaction.
        wait_until(lambda: check_db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'fieldsync-app' AND wait_event_type = 'Lock' AND query LIKE %s",
            ["COPY sync_receipt%"]).fetchone()[0] == 1,
            "the push waiting for the receipts' table", 20, lambda: stack.processes.log("gunicorn")[-3000:])
    finally:
        holder.rollback()
        holder.close()

    # Nobody is listening any more, yet the push commits.
    wait_until(lambda: stored(check_db, mutation_ids, records)["receipts"] == dict.fromkeys(mutation_ids, 1),
               "the abandoned push committing", 15, lambda: stack.processes.log("gunicorn")[-3000:])

    resend = handheld.push(mutations)
    assert resend.status_code == 200, resend.text
    results = resend.json()["results"]
    assert [r["mutation_id"] for r in results] == mutation_ids
    assert [r["status"] for r in results] == ["duplicate"] * len(mutations), results
    # Each duplicate carries what the first, unheard, answer said.
    assert all(r["original"]["status"] == "applied" and r["version"] == 1 for r in results), results

    found = stored(check_db, mutation_ids, records)
    assert found["receipts"] == dict.fromkeys(mutation_ids, 1)
    assert found["versions"] == dict.fromkeys(mutation_ids, 1)
    assert found["records"] == dict.fromkeys(records, 1)  # one record per mutation, no more
    assert all(found["feed"][record] >= 1 for record in records), found["feed"]
    # The handheld's next pull brings every record back, as applied once.
    page = handheld.pull_page()
    assert page.status_code == 200, page.text
    handheld.apply_page(page.json())
    assert {record: handheld.store[record]["version"] for record in records} == dict.fromkeys(records, 1)
    handheld.close()
