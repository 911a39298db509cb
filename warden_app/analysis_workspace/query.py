"""The workspace's query string, read by the records API's own parser.

The map's form uses the API's parameter names, so `record_filter_parse` validates it exactly
as it validates an API call (a bad value or an unknown parameter is a 400 page naming it),
and the same filter goes on to downloads and exports unchanged. Only `type` (the path
segment of the API) and `after` (the page) are the workspace's own."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.http import QueryDict
from django.utils.http import urlencode

from fieldsync.errors import ApiError

from ..analysis.filters import RECORD_TYPES, TYPE_FILTERS, RecordFilter, record_filter_parse

CONTROL = frozenset({"type", "after"})
TYPE_LABELS = {"observation": "ASB observations", "street_audit": "Street audits", "audit_item": "Street audit issues"}


class Invalid(Exception):
    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class WorkspaceQuery:
    record_type: str
    filter: RecordFilter
    after: uuid.UUID | None

    def params(self) -> dict[str, str]:
        """The filter as the API's parameters (downloads, exports, the next page)."""
        return self.filter.as_params()

    def encoded(self, **extra: str) -> str:
        return urlencode({"type": self.record_type, **self.params(), **extra})

    def api_encoded(self, **extra: str) -> str:
        return urlencode({**self.params(), **extra})


def _problems(exc: ApiError) -> list[str]:
    return [str(exc.message)[:300]]


def workspace_query(query: QueryDict) -> WorkspaceQuery:
    types = query.getlist("type")
    if len(types) > 1:
        raise Invalid(["Choose one kind of record."])
    record_type = (types[0] if types else "") or RECORD_TYPES[0]
    if record_type not in RECORD_TYPES:
        raise Invalid(["That kind of record is not one of those on the list."])
    filters = QueryDict(mutable=True)
    for name in query:
        if name in CONTROL:
            continue
        values = [v for v in query.getlist(name) if v != ""]
        # A filter of another kind of record left in the form by a change of kind: dropped,
        # since the form offers it only for the kinds it applies to.
        if name in TYPE_FILTERS and record_type not in TYPE_FILTERS[name] and not values:
            continue
        filters.setlist(name, values or [""])
    try:
        flt = record_filter_parse(record_type, filters)
    except ApiError as exc:
        raise Invalid(_problems(exc)) from exc
    afters = query.getlist("after")
    after = None
    if afters and afters[0]:
        try:
            after = uuid.UUID(afters[0][:64])
        except ValueError:
            raise Invalid(["That page does not exist: start from the first page."]) from None
    return WorkspaceQuery(record_type=record_type, filter=flt, after=after)
