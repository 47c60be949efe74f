"""The store's schema revision: create, upgrade or refuse a store, by Alembic's migrations.

The migrations (``broker/store/migrations``) are the only thing that makes the store's schema.
A process opening the store finds one of four states:

* empty: created at this code's revision, always;
* at an older revision, or made by the release before migrations (its tables, no
  ``alembic_version``): upgraded where the process may (``TSUNAGU_STORE_UPGRADE``), otherwise
  refused with the command that upgrades it;
* at this code's revision: opened;
* at a revision this code does not know (a newer release's): refused, naming both revisions.

The subject-key vault, a database of its own, has its own chain of migrations
(``consent/vault_migrations``) kept by the same rules: a ``Chain`` names one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect

#: What an operator runs to upgrade a store that processes may not upgrade themselves.
UPGRADE_COMMAND = "tsunagu db upgrade"


@dataclass(frozen=True)
class Chain:
    """One database's migrations: where their scripts are (a package resource), the table of
    its revision, the tables by which a database of the release before migrations is
    recognised, and a lock key."""

    name: str
    versions: str
    version_table: str
    legacy_tables: frozenset[str]
    lock_key: int  # PostgreSQL advisory lock: one process migrates a database at a time


#: The store: projections, consents, the audit log, stored schema versions.
STORE = Chain(
    "store",
    "broker.store:migrations/versions",
    "alembic_version",
    # Tables the release before migrations (2b55de9) created when it first opened a store.
    frozenset({"ingested_events", "audit_entries", "consents", "partners"}),
    0x7473756E616775,  # "tsunagu" in ASCII
)

#: The subject-key vault (``consent.vault``), a database of its own.
VAULT = Chain(
    "vault",
    "broker.store:migrations/vault",
    "vault_alembic_version",  # its own name, should a vault ever share a database
    frozenset({"subject_keys", "vault_secret"}),
    0x7473756E616776,
)

#: The one environment (env.py) both chains run in.
_SCRIPT_LOCATION = "broker.store:migrations"


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


def _config(chain: Chain, conn: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", _SCRIPT_LOCATION)
    # One location per line: a package resource ("pkg:dir") holds the os separator.
    config.set_main_option("path_separator", "newline")
    config.set_main_option("version_locations", chain.versions)
    config.attributes["connection"] = conn
    config.attributes["version_table"] = chain.version_table
    return config


def head_revision(chain: Chain = STORE) -> str:
    """This code's newest migration of ``chain``."""
    head = ScriptDirectory.from_config(_config(chain)).get_current_head()
    assert head is not None, f"the {chain.name}'s migrations have no head"
    return head


def _revisions(conn: Connection, chain: Chain) -> Revisions:
    head = head_revision(chain)
    context = MigrationContext.configure(conn, opts={"version_table": chain.version_table})
    current = context.get_current_revision()
    if current is None:
        names = set(inspect(conn).get_table_names())
        state = StoreState.LEGACY if names & chain.legacy_tables else StoreState.EMPTY
    elif current == head:
        state = StoreState.CURRENT
    else:
        script = ScriptDirectory.from_config(_config(chain))
        known = {s.revision for s in script.walk_revisions()}
        state = StoreState.BEHIND if current in known else StoreState.AHEAD
    return Revisions(state, current, head)


def revisions(engine: Engine, chain: Chain = STORE) -> Revisions:
    """Where ``engine``'s database stands against this code's ``chain``."""
    with engine.connect() as conn:
        return _revisions(conn, chain)


def upgrade(engine: Engine, chain: Chain = STORE) -> Revisions:
    """Upgrade ``engine``'s database to this code's head of ``chain`` (``tsunagu db upgrade``);
    returns where it was.

    Refuses a database newer than the code. Safe when several processes do it at once: they
    take turns, and the later ones find it upgraded."""
    return _migrate(engine, chain, may_upgrade=True)


def open_schema(engine: Engine, *, may_upgrade: bool, chain: Chain = STORE) -> Revisions:
    """Make ``engine``'s database usable by this code or refuse it (see the module's
    docstring); returns where it was."""
    found = revisions(engine, chain)  # without the lock: the usual case is a current store
    if found.state is StoreState.CURRENT:
        return found
    return _migrate(engine, chain, may_upgrade=may_upgrade)


def _migrate(engine: Engine, chain: Chain, *, may_upgrade: bool) -> Revisions:
    where = engine.url.render_as_string(hide_password=True)
    with engine.connect() as conn:
        _lock(conn, chain)
        found = _revisions(conn, chain)
        if found.state is StoreState.AHEAD:
            conn.rollback()
            raise StoreAheadError(
                f"the {chain.name} at {where} is at revision {found.current}, which this "
                f"code does not know (its newest is {found.head}): run the release that "
                f"upgraded it, or restore the {chain.name}'s backup from before that upgrade"
            )
        if found.state in (StoreState.LEGACY, StoreState.BEHIND) and not may_upgrade:
            conn.rollback()
            stands = (
                f"at revision {found.current}"
                if found.current
                else "from the release before migrations (no revision)"
            )
            raise StoreBehindError(
                f"the {chain.name} at {where} is {stands}; this code needs revision {found.head}. "
                f"Upgrade it with `{UPGRADE_COMMAND}` (one process, with the same "
                "settings), or set TSUNAGU_STORE_UPGRADE=on-start to let every "
                "process upgrade it when it starts"
            )
        if found.state is not StoreState.CURRENT:
            command.upgrade(_config(chain, conn), "head")
        conn.commit()
        return found


def _lock(conn: Connection, chain: Chain) -> None:
    """Hold the database's migration lock until the connection's transaction ends."""
    if conn.dialect.name == "sqlite":
        # A write lock on the file from the start, so that two processes cannot both find
        # the store behind and both upgrade it; the busy timeout waits for the other one.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({chain.lock_key})")
