"""The broker's HTTP API (FastAPI)."""
