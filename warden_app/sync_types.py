"""Registers the warden record types with the sync engine (filled in by the sync work)."""
