"""The subject-key vault: one AES-256-GCM key per subject, so erasure is key destruction.

Personal fields in the store are sealed under their subject's key, and projection rows name
their subject by a *blind row reference* (an HMAC of the key) instead of the resident id.
Destroying the key therefore makes every copy of those rows, backups of the store included,
undecryptable and unlinkable to the person (crypto-shredding).

The vault lives in its own database (``TSUNAGU_VAULT_URL``; SQLite in ``data_dir/keys`` by
default), never in the store, so that a backup of the store holds no key. A destroyed key's
row is deleted (its bytes zeroed) and a tombstone takes its place (``key`` NULL,
``destroyed_at`` set): no key is ever created again for an erased subject, so their later
events cannot be projected. The tombstone names the subject only by ``tombstone_id``, an HMAC
under the vault's own secret (``vault_secret``, kept in the vault): the vault keeps no erased
id in clear, and only someone holding the vault can test a guessed id for erasure.

Keys are cached in-process (LRU, at most ``max_age_s`` old): the ingest path must not read
the vault per event. ``destroy`` drops the key from *this* process's cache at once; another
process may keep using its cached copy for at most ``max_age_s`` after an erasure (there is
no cross-process broadcast yet). Within one process, ``destroy`` waits for every block under
``sealing()`` to end, so a batch sealed with a key fetched before the erasure is committed
before the erasure deletes the subject's rows.

Sealed format: 1 version byte, a random 96-bit nonce, then the AES-GCM ciphertext of the
fields as JSON, authenticated with the row reference as associated data (ciphertext moved
to another subject's row does not open).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    LargeBinary,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from broker.store.migrate import VAULT, open_schema
from broker.store.projections.sealing import UnreadableSealError
from broker.store.projections.timestamps import UtcDateTime
from consent.errors import ConsentError
from contract.private_files import private_file

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # 96 bits, GCM's native nonce size
VERSION = b"\x01"
REF_LABEL = b"row-ref"
REF_HEX_CHARS = 32  # 128 bits of the HMAC: collisions are out of reach for any region
_CHUNK = 500  # keeps IN (...) lists under every backend's parameter limit


class SubjectErasedError(ConsentError):
    """The subject's key is gone (erased, or never made): their sealed data cannot be opened."""

    code = "subject_erased"


class SealedDataError(ConsentError, UnreadableSealError):
    """Sealed bytes failed authentication: tampered with, truncated, or another subject's."""

    code = "sealed_data_invalid"


_metadata = MetaData()

#: Apart from the store's metadata on purpose: the store must never get this table. Made by
#: the vault's migrations (``broker/store/migrations/vault``).
subject_keys = Table(
    "subject_keys",
    _metadata,
    Column("subject_id", String(64), primary_key=True),
    Column("key", LargeBinary(KEY_BYTES), nullable=True),  # NULL once destroyed
    Column("created_at", UtcDateTime, nullable=False),
    Column("destroyed_at", UtcDateTime, nullable=True),
)


#: The vault's own secret for tombstone ids, made at first use; never leaves the vault.
vault_secret = Table(
    "vault_secret",
    _metadata,
    Column("id", String(16), primary_key=True),
    Column("secret", LargeBinary(KEY_BYTES), nullable=False),
)
TOMBSTONE_PREFIX = "erased-"
_SECRET_ID = "tombstones"


def tombstone_id(secret: bytes, subject_id: str) -> str:
    """What an erased subject's tombstone is keyed by: ``erased-`` + HMAC-SHA256, hex."""
    mac = hmac.new(secret, subject_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return TOMBSTONE_PREFIX + mac[:REF_HEX_CHARS]


def blind_ref(key: bytes) -> str:
    """The row reference of the subject holding ``key``: HMAC-SHA256(key, "row-ref"), hex."""
    return hmac.new(key, REF_LABEL, hashlib.sha256).hexdigest()[:REF_HEX_CHARS]


class SubjectKey:
    """One subject's live key: its row reference and an AES-GCM cipher made once."""

    __slots__ = ("_ad", "_aead", "loaded_at", "ref", "subject_id")

    def __init__(self, subject_id: str, key: bytes, loaded_at: float) -> None:
        self.subject_id = subject_id
        self.ref = blind_ref(key)
        self.loaded_at = loaded_at
        self._aead = AESGCM(key)
        self._ad = self.ref.encode("ascii")

    def __repr__(self) -> str:
        return f"SubjectKey(ref={self.ref!r})"

    def seal(self, fields: Mapping[str, Any]) -> bytes:
        """``fields`` as JSON, encrypted and authenticated under this key and ref."""
        nonce = os.urandom(NONCE_BYTES)
        return VERSION + nonce + self._aead.encrypt(nonce, orjson.dumps(fields), self._ad)

    def open(self, sealed: bytes) -> dict[str, Any]:
        """The fields ``seal`` was given; SealedDataError when the bytes do not authenticate."""
        if len(sealed) < 1 + NONCE_BYTES or sealed[:1] != VERSION:
            raise SealedDataError("not sealed data of a known version")
        nonce, ciphertext = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
        try:
            plain = self._aead.decrypt(nonce, ciphertext, self._ad)
        except InvalidTag:
            raise SealedDataError("sealed data does not authenticate under this key") from None
        fields: dict[str, Any] = orjson.loads(plain)
        return fields


class _ShredGate:
    """Shared by sealing blocks, taken alone by ``destroy`` (writer-preferring, not reentrant)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._sharing = 0
        self._exclusive = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive)
            self._sharing += 1
        try:
            yield
        finally:
            with self._cond:
                self._sharing -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive)
            self._exclusive = True  # from here no new sealing block starts
            self._cond.wait_for(lambda: self._sharing == 0)
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


class SubjectVault:
    """Per-subject keys in their own database, cached in-process."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_age_s: float | None = 60.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.max_age_s = max_age_s
        self.max_keys = max_keys
        self._clock = clock
        self._keys: OrderedDict[str, SubjectKey] = OrderedDict()
        # Erasure is final, so a tombstone seen once can be trusted for ever (bounded LRU).
        self._erased: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        # Bumped by destroy/evict: a load that raced with one is used once, not cached.
        self._generation = 0
        self._gate = _ShredGate()
        self.loads = 0  # vault reads (cache misses), for benchmarks and tests
        self._secret = _load_secret(engine)

    @classmethod
    def open_url(cls, url: str, *, upgrade: bool = True, **options: Any) -> SubjectVault:
        """The vault at SQLAlchemy ``url``, its schema made or upgraded by its migrations (an
        older vault only if ``upgrade``: ``broker.store.migrate``); SQLite files are 0600."""
        engine = vault_engine(url)
        try:
            open_schema(engine, may_upgrade=upgrade, chain=VAULT)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, **options)

    def close(self) -> None:
        """Release the vault's connections."""
        self.engine.dispose()

    # -- keys ----------------------------------------------------------------------------------

    def keys_for(self, subject_ids: Iterable[str], *, create: bool) -> dict[str, SubjectKey]:
        """The live keys of ``subject_ids``, made for those without one when ``create``.

        Erased subjects are absent from the result (and never get a new key).
        """
        found: dict[str, SubjectKey] = {}
        missing: list[str] = []
        now = self._clock()
        max_age = self.max_age_s
        with self._lock:
            keys, erased = self._keys, self._erased
            for subject in set(subject_ids):
                key = keys.get(subject)
                if key is not None and (max_age is None or now - key.loaded_at < max_age):
                    keys.move_to_end(subject)
                    found[subject] = key
                elif subject not in erased:
                    missing.append(subject)
            generation = self._generation
        if missing:
            loaded, tombstones = self._load(missing, create, now)
            found.update(loaded)
            self._remember(loaded, tombstones, generation)
        return found

    def ref(self, subject_id: str) -> str | None:
        """The subject's blind row reference; None when they have no key or were erased."""
        key = self.keys_for((subject_id,), create=False).get(subject_id)
        return None if key is None else key.ref

    def seal(self, subject_id: str, fields: Mapping[str, Any]) -> bytes:
        """Seal ``fields`` under the subject's key (made if they have none)."""
        key = self.keys_for((subject_id,), create=True).get(subject_id)
        if key is None:
            raise SubjectErasedError("the subject was erased: nothing more is kept about them")
        return key.seal(fields)

    def open(self, subject_id: str, sealed: bytes) -> dict[str, Any]:
        """Open what ``seal`` made; SubjectErasedError once the key is destroyed."""
        key = self.keys_for((subject_id,), create=False).get(subject_id)
        if key is None:
            raise SubjectErasedError("no key for this subject: erased, or never sealed for")
        return key.open(sealed)

    @contextmanager
    def sealing(self) -> Iterator[None]:
        """A block that seals with keys from this vault: ``destroy`` here waits for it to end.

        Not reentrant with ``destroy``: do not erase from inside the block.
        """
        with self._gate.shared():
            yield

    def destroy(self, subject_id: str) -> bool:
        """Destroy the subject's key for good; True if a live key was destroyed just now.

        Leaves a tombstone even for a subject who never had a key, so none is made later.
        """
        with self._gate.exclusive():
            now = datetime.now(UTC)
            with self.engine.begin() as conn:
                # Deleted, not updated: the row held the id in clear (secure_delete zeroes it).
                destroyed = (
                    conn.execute(
                        subject_keys.delete().where(
                            subject_keys.c.subject_id == subject_id,
                            subject_keys.c.key.is_not(None),
                        )
                    ).rowcount
                    == 1
                )
                # A tombstone of before tombstone ids named the subject in clear: replaced.
                conn.execute(subject_keys.delete().where(subject_keys.c.subject_id == subject_id))
                _insert_absent(
                    conn,
                    [{"subject_id": self._tombstone(subject_id), "key": None, "created_at": now}],
                    destroyed_at=now,
                )
            with self._lock:
                self._generation += 1
                self._keys.pop(subject_id, None)
                self._erased[subject_id] = None
                self._trim(self._erased)
        return destroyed

    def evict(self, subject_id: str) -> None:
        """Forget this process's cached key of the subject (the next use reads the vault)."""
        with self._lock:
            self._generation += 1
            self._keys.pop(subject_id, None)

    def evict_all(self) -> None:
        """Forget every cached key (someone was erased elsewhere; we are not told whom)."""
        with self._lock:
            self._generation += 1
            self._keys.clear()

    # -- internals -----------------------------------------------------------------------------

    def _tombstone(self, subject_id: str) -> str:
        return tombstone_id(self._secret, subject_id)

    def _load(
        self, subjects: list[str], create: bool, now: float
    ) -> tuple[dict[str, SubjectKey], list[str]]:
        self.loads += 1
        with self.engine.connect() as conn:
            stored = _select(conn, subjects)
            stored.update(self._erased_among(conn, [s for s in subjects if s not in stored]))
        if create:
            absent = [s for s in subjects if s not in stored]
            if absent:
                at = datetime.now(UTC)
                rows = [
                    {"subject_id": s, "key": os.urandom(KEY_BYTES), "created_at": at}
                    for s in absent
                ]
                with self.engine.begin() as conn:
                    # Another process may make the same subject's key meanwhile: theirs wins,
                    # ours is dropped, and both read back the one that was stored.
                    _insert_absent(conn, rows)
                    stored.update(_select(conn, absent))
                    # One erased meanwhile (its destroy committed before our insert) keeps
                    # no key: drop the one just made.
                    late = self._erased_among(conn, absent)
                    if late:
                        conn.execute(
                            subject_keys.delete().where(subject_keys.c.subject_id.in_(late))
                        )
                        stored.update(late)
        loaded = {s: SubjectKey(s, k, now) for s, k in stored.items() if k is not None}
        tombstones = [s for s, k in stored.items() if k is None]
        return loaded, tombstones

    def _remember(
        self, loaded: dict[str, SubjectKey], tombstones: list[str], generation: int
    ) -> None:
        with self._lock:
            if generation != self._generation:
                return  # a destroy or evict ran meanwhile: these may be stale
            self._keys.update(loaded)
            for s in loaded:
                self._keys.move_to_end(s)
            self._trim(self._keys)
            for s in tombstones:
                self._keys.pop(s, None)  # a copy cached before another process destroyed it
                self._erased[s] = None
            self._trim(self._erased)

    def _trim(self, cache: OrderedDict[str, Any]) -> None:
        while len(cache) > self.max_keys:
            cache.popitem(last=False)

    def _erased_among(self, conn: Connection, subjects: list[str]) -> dict[str, None]:
        """Which of ``subjects`` have a tombstone."""
        if not subjects:
            return {}
        by_tombstone = {self._tombstone(s): s for s in subjects}
        found = _select(conn, list(by_tombstone))
        return {by_tombstone[t]: None for t in found}


def _load_secret(engine: Engine) -> bytes:
    """The vault's tombstone secret, made at first use (the first process to store it wins)."""
    query = select(vault_secret.c.secret).where(vault_secret.c.id == _SECRET_ID)
    with engine.begin() as conn:
        found = conn.execute(query).scalar_one_or_none()
        if found is None:
            row = {"id": _SECRET_ID, "secret": os.urandom(KEY_BYTES)}
            dialect = conn.dialect.name
            insert = pg_insert if dialect == "postgresql" else sqlite_insert
            conn.execute(insert(vault_secret).values(**row).on_conflict_do_nothing())
            found = conn.execute(query).scalar_one()
    return bytes(found)


def _select(conn: Connection, subjects: list[str]) -> dict[str, bytes | None]:
    found: dict[str, bytes | None] = {}
    for i in range(0, len(subjects), _CHUNK):
        chunk = subjects[i : i + _CHUNK]
        query = select(subject_keys.c.subject_id, subject_keys.c.key).where(
            subject_keys.c.subject_id.in_(chunk)
        )
        found.update({s: None if k is None else bytes(k) for s, k in conn.execute(query)})
    return found


def _insert_absent(
    conn: Connection, rows: list[dict[str, Any]], destroyed_at: datetime | None = None
) -> None:
    """INSERT ... ON CONFLICT (subject_id) DO NOTHING, on SQLite and PostgreSQL."""
    for row in rows:
        row["destroyed_at"] = destroyed_at
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(pg_insert(subject_keys).on_conflict_do_nothing(), rows)
    elif dialect == "sqlite":
        conn.execute(sqlite_insert(subject_keys).on_conflict_do_nothing(), rows)
    else:
        raise NotImplementedError(f"the vault runs on SQLite or PostgreSQL, not {dialect}")


def vault_engine(url: str) -> Engine:
    """An engine for the vault at ``url``, its schema left as it is (SQLite files 0600)."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    path = url.split("///", 1)[1] if "///" in url else ""
    if path and path != ":memory:":
        private_file(Path(path))
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # A rollback journal, not WAL: a WAL file keeps old page images (old keys) after a
    # checkpoint until they happen to be overwritten; the journal is deleted at each commit.
    cursor.execute("PRAGMA journal_mode=DELETE")
    # secure_delete zeroes the space a destroyed key occupied instead of leaving it free.
    cursor.execute("PRAGMA secure_delete=ON")
    # A key lost in a power cut after the store committed data sealed under it would lose
    # that data: full sync (keys are written once per subject, so it costs nothing).
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()
