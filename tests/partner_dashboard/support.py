"""Reading the dashboard page back: its table, its embedded JSON and its words."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser

PAGE = "/partner/"


class DashboardPage(HTMLParser):
    """The parts of the page a test checks: table rows, JSON scripts, text and attributes
    outside the JSON, select options."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self.json: dict[str, object] = {}
        self.outside_json: list[str] = []
        self.options: dict[str, list[tuple[str, bool]]] = {}
        self._stack: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._script_id: str | None = None
        self._script: list[str] = []
        self._in_table = False
        self._select: str | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("type") == "application/json":
            self._script_id, self._script = attrs.get("id"), []
            return
        # Attribute values leave the page too (titles, labels, data-…): they count as words.
        self.outside_json.extend(value for value in attrs.values() if value)
        if tag == "table" and "partner-table" in (attrs.get("class") or ""):
            self._in_table = True
        elif tag == "tr" and self._in_table:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "select":
            self._select = attrs.get("name")
            self.options[self._select] = []
        elif tag == "option" and self._select:
            self.options[self._select].append((attrs.get("value"), "selected" in attrs))

    def handle_endtag(self, tag):
        if tag == "script" and self._script_id is not None:
            self.json[self._script_id] = json.loads("".join(self._script))
            self._script_id = None
        elif tag == "table":
            self._in_table = False
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        elif tag == "select":
            self._select = None

    def handle_data(self, data):
        if self._script_id is not None:
            self._script.append(data)
            return
        self.outside_json.append(data)
        if self._cell is not None:
            self._cell.append(data)

    @property
    def body_rows(self) -> list[list[str]]:
        return [row for row in self.rows if row and row[0] != "Area"]


def numbers_outside_coordinates(value, key: str | None = None):
    """Every number in a JSON document except those inside a "coordinates" array."""
    if key == "coordinates":
        return
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from numbers_outside_coordinates(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from numbers_outside_coordinates(v, key)


def standalone(number: int, text: str) -> bool:
    """`number` written on its own in `text` (not part of a code, a decimal, a colour)."""
    return re.search(rf"(?<![\w.#-]){number}(?![\w.])", text) is not None
