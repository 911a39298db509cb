"""Accountability: the tamper-evident s.62 log and the DPO's access to it, data subjects'
rights (subject access, rectification, restriction, erasure), retention of personal
fields, and escalation of records to partner systems (docs/accountability.md)."""
