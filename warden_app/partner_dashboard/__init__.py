"""The partner viewer's dashboard."""
