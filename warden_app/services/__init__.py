"""Services: every state change of the domain, each in one transaction with its log row."""
