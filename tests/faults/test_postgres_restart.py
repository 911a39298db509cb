"""PostgreSQL restarted in the middle of a sync round.

A private PostGIS cluster of this test's own (initdb as user postgres, a free port, PostGIS,
migrations, a small world), gunicorn on it, and two handhelds pushing and pulling as a
handheld does: after any failure, the same request again. Mid-round, with a push of each
handheld held inside its transaction, the cluster is stopped with `pg_ctl stop -m immediate`
(a crash: no checkpoint, every session cut, crash recovery on start) and started again a
couple of seconds later. A plain `pg_ctl restart` is over so
quickly that the app's connection health checks hide it; the pause makes sure requests meet
the outage.

While the database is away the handhelds may only see retryable failures: a 503 in the
protocol's error shape, or a broken connection. Afterwards every mutation must be stored
exactly once and answered exactly once (`applied`, or `duplicate` of an `applied` whose
answer was lost with the connection).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest

from .support import HttpHandheld, PrivateCluster, is_protocol_error, outbox_batch, seeded_stack, stored, wait_until

# A hang fails in two minutes, not the suite's ten; pytest-timeout (SIGALRM) fails the test where it
# stands, so the fixtures still stop every process.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

DATABASE = "fieldsync"
HANDHELDS = ("warden", "warden2")
BATCHES = 16  # pushes per handheld, 6 mutations each
PAUSE_S = 0.1  # between one push-and-pull and the next
OUTAGE_S = 2.0
RETRY_S = 0.2


@pytest.fixture
def cluster():
    private = PrivateCluster()
    try:
        private.init()
        private.start()
        private.create_database(DATABASE)
        yield private
    finally:
        private.destroy()


@pytest.fixture
def server(cluster, tmp_path):
    with seeded_stack(tmp_path, cluster.url(DATABASE), workers=2) as stack:
        yield stack


@dataclass
class Round:
    """One handheld's sync round, and everything it saw."""

    handheld: HttpHandheld
    outbox: list[list[dict]]
    records: list[str]
    answers: dict[str, list[dict]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # every failed attempt
    not_retryable: list[str] = field(default_factory=list)  # failures a handheld could not read as "try again"
    done: int = 0
    crashed: BaseException | None = None

    def until_ok(self, request) -> httpx.Response:
        """Send until the answer is a 200, as a handheld does: the same request again."""
        deadline = time.monotonic() + 40
        while True:
            try:
                response = request()
            except httpx.TransportError as exc:
                self.failures.append(type(exc).__name__)
            else:
                if response.status_code == 200:
                    return response
                described = (f"{response.status_code} {response.headers.get('content-type')} "
                             f"Retry-After={response.headers.get('retry-after')} {response.text[:300]}")
                self.failures.append(described)
                if not (response.status_code == 503 and is_protocol_error(response)):
                    self.not_retryable.append(described)
            assert time.monotonic() < deadline, f"no success within 40 s; last failures: {self.failures[-3:]}"
            time.sleep(RETRY_S)

    def pull_all(self) -> None:
        while self.handheld.apply_page(self.until_ok(self.handheld.pull_page).json()):
            pass

    def run(self) -> None:
        try:
            for batch in self.outbox:
                response = self.until_ok(lambda batch=batch: self.handheld.push(batch))
                for result in response.json()["results"]:
                    self.answers.setdefault(result["mutation_id"], []).append(result)
                self.pull_all()
                self.done += 1
                time.sleep(PAUSE_S)
        except BaseException as exc:  # handed to the test's thread, which fails with it
            self.crashed = exc


def test_postgres_restarted_mid_round_loses_and_duplicates_nothing(cluster, server):
    rounds = []
    for username in HANDHELDS:
        outbox, records = [], []
        for i in range(BATCHES):
            batch, made = outbox_batch(f"{username}-{i}")
            outbox.append(batch)
            records += made
        handheld = HttpHandheld.enrol(server.base_url, username, f"{username}'s handheld")
        rounds.append(Round(handheld, outbox, records))
    probe = HttpHandheld.enrol(server.base_url, "warden", "warden's second handheld")
    threads = [threading.Thread(target=r.run, daemon=True) for r in rounds]
    for thread in threads:
        thread.start()

    def detail() -> str:
        return f"handhelds crashed: {[r.crashed for r in rounds]}\n" + server.processes.log("gunicorn")[-3000:]

    wait_until(lambda: all(r.done >= 2 for r in rounds) or any(r.crashed for r in rounds),
               "two pushes each before the restart", 30, detail)
    # Crash with a push of each handheld in flight, not by luck: writes to the receipts' table
    # are held, so both pushes wait inside their transactions, records and versions written.
    holder = cluster.connect(DATABASE)
    holder.autocommit = False
    try:
        holder.execute("LOCK TABLE sync_receipt IN EXCLUSIVE MODE")
        with cluster.connect(DATABASE) as watcher:
            wait_until(lambda: watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fieldsync-app' "
                "AND wait_event_type = 'Lock' AND backend_xid IS NOT NULL AND query LIKE %s",
                ["COPY sync_receipt%"]).fetchone()[0] == len(rounds),
                "a push of each handheld waiting mid-transaction", 20, detail)
        done_at_stop = [r.done for r in rounds]
        cluster.stop("immediate")
    finally:
        holder.close()
    outage_began = time.monotonic()
    # The load balancer's probe follows the database...
    ready = httpx.get(f"{server.base_url}/readyz", timeout=10)
    assert ready.status_code == 503 and ready.json()["status"] == "unavailable", ready.text
    # ...and a pull meanwhile must be told to come back (checked at the end; a broken
    # connection, None here, would say so too).
    try:
        outage_pull = probe.pull_page()
    except httpx.TransportError:
        outage_pull = None
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_began)))
    cluster.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "the handhelds never finished their round"
    for r in rounds:
        if r.crashed:
            raise r.crashed

    # The restart came in the middle of the round, and both handhelds met it.
    assert all(done < BATCHES for done in done_at_stop), done_at_stop
    assert all(r.failures for r in rounds), [r.failures for r in rounds]
    assert httpx.get(f"{server.base_url}/readyz", timeout=10).status_code == 200

    # Every mutation answered once: applied, or duplicate of an applied one.
    everything, all_records = [], []
    for r in rounds:
        sent = [m["mutation_id"] for batch in r.outbox for m in batch]
        everything += sent
        all_records += r.records
        assert sorted(r.answers) == sorted(sent)
        assert all(len(answers) == 1 for answers in r.answers.values())
        for [answer] in r.answers.values():
            assert answer["status"] == "applied" or (
                answer["status"] == "duplicate" and answer["original"]["status"] == "applied"), answer
    # ...and stored once.
    with cluster.connect(DATABASE) as conn:
        found = stored(conn, everything, all_records)
        descriptions = {d for (d,) in conn.execute("SELECT description FROM warden_app_observation").fetchall()}
    assert found["receipts"] == dict.fromkeys(everything, 1)
    assert found["versions"] == dict.fromkeys(everything, 1)
    assert found["records"] == dict.fromkeys(all_records, 1)
    assert all(found["feed"][record] >= 1 for record in all_records)
    assert descriptions == {f"{u}-{i}/{j} edited" for u in HANDHELDS for i in range(BATCHES) for j in range(2)}
    # Each handheld, pulling on from its cursor, holds every record of both: none skipped
    # across the restart, every observation at its edited version.
    for r in rounds:
        r.pull_all()
        assert set(r.handheld.store) == set(all_records)
        assert {change["version"] for change in r.handheld.store.values() if change["type"] == "observation"} == {2}
        r.handheld.close()
    probe.close()

    # Only retryable failures: a 503 in the protocol's shape, or a broken connection. (Last, so
    # that a wrong status never hides whether anything was lost.)
    wrong = sorted({f for r in rounds for f in r.not_retryable})
    assert wrong == [], "\n".join(wrong)
    if outage_pull is not None:
        assert outage_pull.status_code == 503 and is_protocol_error(outage_pull), outage_pull.text
        assert outage_pull.headers.get("retry-after", "").isdigit(), outage_pull.headers
