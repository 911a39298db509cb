"""Aggregates without personal data: counts by area and hotspot classes (docs/disclosure.md)."""
