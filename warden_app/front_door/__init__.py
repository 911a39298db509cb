"""The front door: sign-in at /, a home page per role, and one page for a door that is not yours."""
