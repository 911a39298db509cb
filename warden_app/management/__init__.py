"""Management commands of the warden domain."""
