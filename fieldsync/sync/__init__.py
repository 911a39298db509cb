"""Generic offline sync: devices, push, pull, merge, conflicts, quarantine, attachments.

Knows nothing about wardens or ASB: record types are registered by the domain.
"""
