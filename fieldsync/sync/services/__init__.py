"""The engine's state changes, each one transaction."""
