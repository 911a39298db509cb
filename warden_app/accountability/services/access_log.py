"""Sealing the access log onto its hash chain, and logging the DPO's reads of it."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC

from django.conf import settings
from django.db import connection, transaction

from fieldsync.sync.api import committed_horizon

from ...models import AccessAction, AccessLogEntry, AccessLogSeal
from ...services.access_log import access_log_records
from ..anchors import Anchor, anchor_store
from ..chain import CONTENT_FIELDS, GENESIS, link_hash

log = logging.getLogger(__name__)

# pg_advisory_xact_lock key of the sealing step ("FSLOGSEA" as an int8): one sealer at a time.
SEAL_LOCK_KEY = 0x46534C4F47534541

_SEAL_SQL = f"""
UPDATE {AccessLogEntry._meta.db_table} AS t SET seq = v.seq, prev_hash = v.prev_hash, hash = v.hash
FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[]) AS v(id, seq, prev_hash, hash)
WHERE t.id = v.id AND t.seq IS NULL
"""


@dataclass(frozen=True)
class Sealed:
    rows: int
    head_seq: int
    head_hash: str


def access_log_seal(*, batch: int | None = None) -> Sealed:
    """Put every committed, unsealed row below the horizon on the chain.

    Logging never waits for this: rows are inserted unsealed, and the seal is a later
    UPDATE of their three chain columns (the trigger allows that and nothing else, and
    they are all the application's role may UPDATE). The
    horizon is the sync pull's (fieldsync.sync.api.committed_horizon): the oldest transaction
    still running in this database. Every row below it is committed (or rolled back, and
    so invisible), and no row can later appear with a smaller xid, so chaining in
    (xid, id) order never has to put a row in front of one already sealed. A transaction
    that runs long only holds sealing back; it never reorders the chain.
    """
    batch = batch or settings.ACCESS_LOG_SEAL_BATCH
    total = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            # Transaction-level: released at commit, also if the worker dies mid-way.
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SEAL_LOCK_KEY])
            horizon, _own = committed_horizon(cursor)
            head = (
                AccessLogEntry.objects.filter(seq__isnull=False).order_by("-seq").values_list("seq", "hash").first()
            )
            seq, prev = head if head else (0, GENESIS)
            rows = list(
                AccessLogEntry.objects.filter(seq__isnull=True, xid__lt=horizon)
                .order_by("xid", "id").values(*CONTENT_FIELDS)[:batch]
            )
            if rows:
                ids, seqs, prevs, hashes = [], [], [], []
                for row in rows:
                    seq += 1
                    digest = link_hash(prev, row, seq)
                    ids.append(row["id"])
                    seqs.append(seq)
                    prevs.append(prev)
                    hashes.append(digest)
                    prev = digest
                cursor.execute(_SEAL_SQL, [ids, seqs, prevs, hashes])
                if cursor.rowcount != len(rows):
                    raise RuntimeError("access log rows changed while being sealed")
                _record_head(seq=seq, log_id=ids[-1], digest=prev, rows=len(rows))
        total += len(rows)
        if len(rows) < batch:
            break
    if total:
        log.info("access log sealed through seq %s (hash %s), %s rows", seq, prev, total)
    return Sealed(rows=total, head_seq=seq, head_hash=prev)


def _record_head(*, seq: int, log_id: int, digest: str, rows: int) -> None:
    seal = AccessLogSeal.objects.create(head_seq=seq, head_id=log_id, head_hash=digest, rows=rows)
    store = anchor_store()
    if store is not None:
        store.append(Anchor(seal=seal.pk, seq=seq, log_id=log_id, hash=digest,
                            at=seal.at.astimezone(UTC).isoformat(timespec="microseconds")))


def access_log_consulted(*, user, entry_ids: list[int], query: dict, via: str, purpose: str = "") -> AccessLogEntry:
    """The DPO's read of the log is itself a consultation: the log says who looked at which
    records, so reading it is processing of personal data (s.62). record_ids stay empty
    (log rows are not records); the rows shown and the filter are in details."""
    return access_log_records(
        user=user, action=AccessAction.CONSULTATION, record_type="access_log", record_ids=[],
        purpose=purpose, details={"via": via, "entries": entry_ids, "filter": query},
    )
