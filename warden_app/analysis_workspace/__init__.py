"""The analyst's workspace."""
