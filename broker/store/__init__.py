"""The store: projections the views read, on SQLite (embedded) or PostgreSQL."""
