"""Alembic's environment for the store and the vault: migrations run on the connection they
are given.

``broker.store.migrate`` opens the connection (holding the database's migration lock) and
passes it, with the chain's version table, in ``config.attributes``; nothing here reads a URL
or an ini file.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

connection: Connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=None,
    version_table=context.config.attributes["version_table"],
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
