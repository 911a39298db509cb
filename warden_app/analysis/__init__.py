"""Analysis: the records API, streamed and background exports, and the OGC API - Features.

Every read goes through `selectors` (scope and redaction, once) and writes its s.62 row
through `logging` before any data leaves; see docs/analysis.md for the design.
"""
