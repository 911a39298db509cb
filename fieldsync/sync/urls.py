"""Sync protocol v1 endpoints (docs/sync-protocol.md), mounted under /api/v1/."""
urlpatterns: list = []
