"""Alembic's environment for the store: migrations run on the connection they are given.

``broker.store.schema`` opens the connection (holding the store's migration lock) and passes
it in ``config.attributes["connection"]``; nothing here reads a URL or an ini file.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

connection: Connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
