"""Export files for spreadsheets: one XLSX sheet of a read's "cells" rows.

openpyxl's write-only workbook writes each row to the sheet's XML as it comes and every
text as an inline string (no shared-string table held in memory), so a large export is
written in constant memory. The columns are the CSV's, in the same order and with the same
names, so a sheet and a CSV of one read line up.

Text is always written as text: a description such as `=HYPERLINK(…)` is a string cell,
never a formula (openpyxl would otherwise take a leading "=" for one), so no apostrophe is
needed as in CSV. Times are real Excel dates in UK local time (Excel has no time zones).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from .renderers import csv_header
from .selectors import RecordQuery

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# A sheet holds 1,048,576 rows, one of which is the header.
XLSX_MAX_RECORDS = 1_048_575
# Excel's limit on a cell's text; openpyxl cuts longer text to it.
XLSX_MAX_TEXT = 32_767
UK = ZoneInfo("Europe/London")
DATE_FORMAT = "yyyy-mm-dd hh:mm:ss"
# Control characters XML 1.0 cannot hold (openpyxl refuses them): dropped from text.
_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_WIDTHS = {"id": 38, "description": 50, "notes": 50, "persons_involved": 40, "route": 30, "redacted": 32}


class TooManyRows(ValueError):
    """The read has more records than a sheet can hold."""


def cell_kinds(query: RecordQuery) -> list[str]:
    """The kind of each value of a "cells" row, header order: id, columns, x, y, redacted."""
    return ["uuid", *(c.kind for c in query.columns), "number", "number", "text"]


def xlsx_write(path, query: RecordQuery, chunks: Iterable[list[tuple]]) -> int:
    """Write the sheet to `path` from chunks of "cells" rows (srid 4326); the record count."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=query.record_type)
    header = csv_header(query)
    sheet.freeze_panes = "A2"  # the header stays in view when scrolling
    for index, name in enumerate(header, 1):
        sheet.column_dimensions[get_column_letter(index)].width = _WIDTHS.get(name, max(12, len(name) + 2))
    bold = Font(bold=True)
    sheet.append([_text_cell(sheet, name, font=bold) for name in header])
    kinds = cell_kinds(query)
    count = 0
    try:
        for chunk in chunks:
            for row in chunk:
                count += 1
                if count > XLSX_MAX_RECORDS:
                    raise TooManyRows(f"an Excel sheet holds at most {XLSX_MAX_RECORDS:,} records")
                sheet.append([_cell(sheet, kind, value) for kind, value in zip(kinds, row, strict=True)])
    except BaseException:
        sheet.close()  # ends openpyxl's sheet writer and its temporary file; the caller deletes ours
        raise
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(header))}1"
    workbook.save(path)
    return count


def _cell(sheet, kind: str, value):
    if value is None:
        return None
    if kind in ("integer", "number"):
        return value
    if kind == "time":
        cell = WriteOnlyCell(sheet, value=_uk_time(value))
        cell.number_format = DATE_FORMAT
        return cell
    return _text_cell(sheet, str(value))


def _text_cell(sheet, text: str, font: Font | None = None) -> WriteOnlyCell:
    """A string cell whatever the text starts with: never a formula."""
    cell = WriteOnlyCell(sheet)
    cell.value = _NOT_XML.sub("", text)[:XLSX_MAX_TEXT]
    cell.data_type = "s"
    if font is not None:
        cell.font = font
    return cell


def _uk_time(moment: datetime) -> datetime:
    return moment.astimezone(UK).replace(tzinfo=None)
