"""The ingest pipeline: bus → validate → project, idempotent by event id."""
