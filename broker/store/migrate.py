"""The store's schema revision: create, upgrade or refuse a store, by Alembic's migrations.

The migrations (``broker/store/migrations``) are the only thing that makes the store's schema.
A process opening the store finds one of four states:

* empty: created at this code's revision, always;
* at an older revision, or made by the release before migrations (its tables, no
  ``alembic_version``): upgraded where the process may (``TSUNAGU_STORE_UPGRADE``), otherwise
  refused with the command that upgrades it;
* at this code's revision: opened;
* at a revision this code does not know (a newer release's): refused, naming both revisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect

#: Where the migration scripts are, as a package resource (shipped inside ``broker``).
SCRIPT_LOCATION = "broker.store:migrations"

#: What an operator runs to upgrade a store that processes may not upgrade themselves.
UPGRADE_COMMAND = "tsunagu db upgrade"

#: Tables the release before migrations created when it first opened a store (2b55de9).
LEGACY_TABLES = frozenset({"ingested_events", "audit_entries", "consents", "partners"})

# PostgreSQL advisory lock key ("tsunagu" in ASCII): one process migrates at a time.
_PG_LOCK_KEY = 0x7473756E616775


class StoreState(StrEnum):
    """How a store's schema stands against this code's migrations."""

    EMPTY = "empty"
    LEGACY = "legacy"  # the release before migrations: its tables, no revision
    BEHIND = "behind"
    CURRENT = "current"
    AHEAD = "ahead"  # a revision this code does not know


class StoreSchemaError(Exception):
    """The store's schema is not one this process may run on; the message says what to do."""


class StoreBehindError(StoreSchemaError):
    """The store needs an upgrade this process may not make."""


class StoreAheadError(StoreSchemaError):
    """The store was upgraded by a newer release than this code."""


@dataclass(frozen=True)
class Revisions:
    """Where a store stands: its revision (None before migrations) and this code's head."""

    state: StoreState
    current: str | None
    head: str


def _config(conn: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = conn
    return config


def head_revision() -> str:
    """This code's newest migration."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "the migrations have no head"
    return head


def _revisions(conn: Connection) -> Revisions:
    head = head_revision()
    current = MigrationContext.configure(conn).get_current_revision()
    if current is None:
        names = set(inspect(conn).get_table_names())
        state = StoreState.LEGACY if names & LEGACY_TABLES else StoreState.EMPTY
    elif current == head:
        state = StoreState.CURRENT
    else:
        script = ScriptDirectory.from_config(_config())
        known = {s.revision for s in script.walk_revisions()}
        state = StoreState.BEHIND if current in known else StoreState.AHEAD
    return Revisions(state, current, head)


def revisions(engine: Engine) -> Revisions:
    """Where ``engine``'s store stands against this code."""
    with engine.connect() as conn:
        return _revisions(conn)


def upgrade(engine: Engine) -> Revisions:
    """Upgrade the store to this code's head (``tsunagu db upgrade``); returns where it was.

    Refuses a store newer than the code. Safe when several processes do it at once: they take
    turns, and the later ones find the store upgraded."""
    return _migrate(engine, may_upgrade=True)


def open_schema(engine: Engine, *, may_upgrade: bool) -> Revisions:
    """Make ``engine``'s store usable by this code or refuse it (see the module's docstring);
    returns where it was."""
    found = revisions(engine)  # without the lock: the usual case is a current store
    if found.state is StoreState.CURRENT:
        return found
    return _migrate(engine, may_upgrade=may_upgrade)


def _migrate(engine: Engine, *, may_upgrade: bool) -> Revisions:
    where = engine.url.render_as_string(hide_password=True)
    with engine.connect() as conn:
        _lock(conn)
        found = _revisions(conn)
        if found.state is StoreState.AHEAD:
            conn.rollback()
            raise StoreAheadError(
                f"the store at {where} is at revision {found.current}, which this code does not "
                f"know (its newest is {found.head}): run the release that upgraded it, or "
                "restore the store's backup from before that upgrade"
            )
        if found.state in (StoreState.LEGACY, StoreState.BEHIND) and not may_upgrade:
            conn.rollback()
            stands = (
                f"at revision {found.current}"
                if found.current
                else "from the release before migrations (no revision)"
            )
            raise StoreBehindError(
                f"the store at {where} is {stands}; this code needs revision {found.head}. "
                f"Upgrade it with `{UPGRADE_COMMAND}` (one process, with the same "
                "TSUNAGU_DATABASE_URL), or set TSUNAGU_STORE_UPGRADE=on-start to let every "
                "process upgrade it when it starts"
            )
        if found.state is not StoreState.CURRENT:
            command.upgrade(_config(conn), "head")
        conn.commit()
        return found


def _lock(conn: Connection) -> None:
    """Hold the store's migration lock until the connection's transaction ends."""
    if conn.dialect.name == "sqlite":
        # A write lock on the file from the start, so that two processes cannot both find
        # the store behind and both upgrade it; the busy timeout waits for the other one.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
