"""The accountability part's writes, each one transaction with its s.62 row."""
