"""Observability: structured JSON request logs with request ids (no personal data)."""
