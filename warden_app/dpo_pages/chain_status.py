"""Each access log entry's place on the hash chain, as the DPO's pages show it, without
walking the whole chain on every page view.

Two sources, both cheap per page:

- the last full verification (accountability/verification.py, run by the worker): it says
  up to which seq the chain held, or where it broke;
- the entry's own link, checked now with the chain's own hash (chain.link_hash): its content
  must still give its hash, and its prev_hash must be the hash of the row at seq - 1. One
  query for the page's rows and the rows before them, so a row edited since the last full
  verification shows as broken on the very next page view.

States: `unsealed` (awaiting seal, at most about a minute), `verified` (sealed, its link
holds, and a full verification covered it), `sealed` (its link holds; no full verification
has reached it yet), `broken` (its link fails, or the last full verification broke at or
before it).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from fieldsync import parsing
from warden_app.accountability.chain import CONTENT_FIELDS, GENESIS, link_hash
from warden_app.models import AccessLogEntry

LABELS = {
    "unsealed": "Awaiting seal",
    "sealed": "Sealed, link checked",
    "verified": "Sealed and verified",
    "broken": "Broken",
}


@dataclass(frozen=True)
class ChainStatus:
    state: str
    note: str

    @property
    def label(self) -> str:
        return LABELS[self.state]


def own_links(seqs: list[int]) -> dict[int, str]:
    """For each seq, "" if its row's link holds, else what is wrong with it."""
    if not seqs:
        return {}
    wanted = set(seqs) | {s - 1 for s in seqs if s > 1}
    rows = {
        row["seq"]: row
        for row in AccessLogEntry.objects.filter(seq__in=wanted).values(*CONTENT_FIELDS, "seq", "prev_hash", "hash")
    }
    problems = {}
    for seq in seqs:
        row = rows.get(seq)
        if row is None:  # gone between the page's read and this one
            problems[seq] = "this row is no longer on the chain"
        elif link_hash(row["prev_hash"], row, seq) != row["hash"]:
            problems[seq] = "its content no longer gives its hash: the row was altered"
        elif seq == 1 and row["prev_hash"] != GENESIS:
            problems[seq] = "the first row does not start from the genesis hash"
        elif seq > 1 and (seq - 1) not in rows:
            problems[seq] = f"seq {seq - 1} is missing: a sealed row was deleted"
        elif seq > 1 and rows[seq - 1]["hash"] != row["prev_hash"]:
            problems[seq] = f"it does not follow on from seq {seq - 1}"
        else:
            problems[seq] = ""
    return problems


def chain_statuses(rows: list[dict], verification: dict[str, Any] | None) -> dict[int, ChainStatus]:
    """The status of each row (access_log_page's dicts, with `seq`), by row id."""
    links = own_links([r["seq"] for r in rows if r["seq"] is not None])
    statuses = {}
    for row in rows:
        statuses[row["id"]] = _status(row, links.get(row["seq"], ""), verification)
    return statuses


def _status(row: dict, link_problem: str, verification: dict[str, Any] | None) -> ChainStatus:
    seq = row["seq"]
    if seq is None:
        return ChainStatus("unsealed", "written, not yet chained: the sealing step runs every minute")
    if link_problem:
        return ChainStatus("broken", link_problem)
    when = _when(verification)
    if verification and verification.get("ok") is False:
        broken_seq = verification.get("broken_seq")
        if verification.get("broken_id") == row["id"] or (broken_seq is not None and seq >= broken_seq):
            return ChainStatus("broken", f"the full verification of {when} found the chain broken at seq "
                                         f"{broken_seq}: nothing from there on can be trusted")
        if broken_seq is not None:
            return ChainStatus("verified", f"seq {seq}: verified {when}, before the break at seq {broken_seq}")
    if verification and verification.get("ok") and seq <= verification.get("head_seq", 0):
        return ChainStatus("verified", f"seq {seq}: the full verification of {when} held through seq "
                                       f"{verification['head_seq']}")
    return ChainStatus("sealed", f"seq {seq}: its own link holds; sealed after the last full verification"
                       if verification and verification.get("ok") else
                       f"seq {seq}: its own link holds; no full verification has covered it")


def _when(verification: dict[str, Any] | None) -> str:
    finished = verification and verification.get("finished_at")
    at: datetime | None = parsing.stored_instant(finished)
    if at is None:
        return "(never run)"
    return timezone.localtime(at).strftime("%d %b %Y %H:%M")
