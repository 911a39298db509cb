"""What the DPO's pages read from a request: the access log's filter, and the plain text
of forms, each value checked before it reaches a query (a bad one is a 400, never a 500).

The rules are the API's (accountability/selectors.py: `log_actor`, `subject_criteria`;
fieldsync/parsing.py for ids and dates); what is added here is what a page needs besides:
bounded lengths and no control characters in typed text (the test client and any WSGI
server other than fieldsync/wsgi.py would pass a NUL on to PostgreSQL)."""
from __future__ import annotations

from dataclasses import dataclass

from django.http import QueryDict

from fieldsync import parsing
from fieldsync.errors import invalid
from warden_app.accountability.selectors import RECORD_MODELS, LogFilter, log_actor
from warden_app.models import AccessAction

# Record types the log names: the records', and the log's own (the DPO's reads of it).
LOG_RECORD_TYPES = (*RECORD_MODELS, "access_log")
RECORD_TYPE_LABELS = {"observation": "Observation", "street_audit": "Street audit", "audit_item": "Audit item",
                      "access_log": "Access log (reads of it)"}
MAX_FILTER_CHARS = 200
MAX_REASON_CHARS = 2000


def text(name: str, raw, *, max_chars: int = MAX_FILTER_CHARS, multiline: bool = False) -> str:
    """Typed text, stripped; refused if longer than `max_chars` or holding a control
    character (newlines and tabs allowed in `multiline` text)."""
    value = (raw or "").strip()
    if len(value) > max_chars:
        raise invalid(name, "too_long", f"at most {max_chars} characters")
    checked = value.replace("\r", "").replace("\n", "").replace("\t", "") if multiline else value
    if parsing.has_control(checked):
        raise invalid(name, "invalid_character", "contains a control character")
    return value


@dataclass(frozen=True)
class LogQuery:
    filter: LogFilter
    before: int | None
    # What the form shows back, as typed (normalised).
    form: dict[str, str]

    @property
    def filtered(self) -> bool:
        return any(self.form.values())


def log_query(q: QueryDict) -> LogQuery:
    form = {name: text(name, q.get(name)) for name in ("actor", "record", "action", "record_type", "from", "to",
                                                       "purpose")}
    actor = log_actor(form["actor"]) if form["actor"] else None
    action = parsing.choice("action", form["action"], AccessAction.values)
    record_type = parsing.choice("record_type", form["record_type"], LOG_RECORD_TYPES)
    since = parsing.when("from", form["from"])
    until = parsing.when("to", form["to"], end=True)
    if since and until and since >= until:
        raise invalid("from", "out_of_order", "must come before to")
    flt = LogFilter(actor=actor, record_id=parsing.uuid_value("record", form["record"]), action=action,
                    record_type=record_type, since=since, until=until, purpose_contains=form["purpose"] or None)
    before = parsing.integer("before", text("before", q.get("before")), minimum=1)
    return LogQuery(filter=flt, before=before, form=form)
