"""Who may sign in and to whom: the region ID's accounts and its registered clients."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from urllib.parse import urlsplit

from sqlalchemy import Engine
from sqlmodel import Session, select

from broker.regionid.errors import (
    ClientAuthenticationError,
    ClientRegistrationError,
    SignInError,
)
from broker.regionid.passwords import check_password, hash_password
from broker.regionid.proofing import ProofedIdentity, Proofing
from broker.regionid.tables import RegionAccount, RegionClient

#: Roles a region ID account may have (the platform's role names).
ACCOUNT_ROLES = frozenset({"resident", "auditor"})
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})


@cache
def _dummy_hash() -> str:
    """Checked against when the username is unknown, so that both refusals take as long."""
    return hash_password(secrets.token_urlsafe(16))


def digest(secret: str) -> str:
    """The stored form of a code, token or client secret (SHA-256, hex): high-entropy values
    need no slow hash."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Account:
    """An account as the provider uses it."""

    id: str
    username: str
    role: str
    identity: ProofedIdentity

    @classmethod
    def of(cls, row: RegionAccount) -> Account:
        """The account of a stored row."""
        identity = ProofedIdentity(Proofing(row.proofing), row.proofed_at, row.name, row.birthdate)
        return cls(row.id, row.username, row.role, identity)


@dataclass(frozen=True, slots=True)
class RegisteredClient:
    """A client as registered (the secret is shown once, at registration)."""

    client_id: str
    name: str
    redirect_uris: tuple[str, ...]
    sector: str
    secret: str | None


def _check_redirect_uri(uri: str) -> str:
    """``uri`` if a client may register it: absolute, https (http only on loopback), no
    fragment (RFC 6749 §3.1.2)."""
    parts = urlsplit(uri)
    if parts.fragment or "#" in uri:
        raise ClientRegistrationError(f"redirect URI {uri!r} has a fragment: remove it")
    if parts.scheme == "https" and parts.hostname:
        return uri
    if parts.scheme == "http" and parts.hostname in _LOOPBACK | {"::1"}:
        return uri
    raise ClientRegistrationError(
        f"redirect URI {uri!r} must be an absolute https:// URI (http:// only on loopback)"
    )


class Directory:
    """The accounts and clients, in the store."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # -- clients -------------------------------------------------------------------------------

    def add_client(
        self,
        client_id: str,
        name: str,
        redirect_uris: list[str],
        *,
        sector: str | None = None,
        public: bool = False,
        connector: str | None = None,
    ) -> RegisteredClient:
        """Register a service company; its secret is returned once (none for a public client,
        which must then use PKCE alone). ``connector`` is the connector publishing its events
        (its token's subject; default: the client id)."""
        if not client_id or len(client_id) > 128 or not client_id.isascii():
            raise ClientRegistrationError("the client id must be 1-128 ASCII characters")
        if not redirect_uris:
            raise ClientRegistrationError("give at least one --redirect-uri")
        uris = tuple(_check_redirect_uri(u) for u in redirect_uris)
        hosts = {urlsplit(u).hostname or "" for u in uris}
        if sector is None:
            # OIDC Core §8.1: without a sector_identifier_uri the sector is the redirect
            # URIs' host, which must then be one.
            if len(hosts) != 1:
                raise ClientRegistrationError(
                    f"redirect URIs on several hosts ({', '.join(sorted(hosts))}): name the "
                    "client's sector with --sector"
                )
            sector = hosts.pop()
        secret = None if public else secrets.token_urlsafe(32)
        with Session(self._engine) as session:
            if session.get(RegionClient, client_id) is not None:
                raise ClientRegistrationError(f"client {client_id!r} is already registered")
            session.add(
                RegionClient(
                    client_id=client_id,
                    name=name,
                    secret_hash=digest(secret) if secret is not None else None,
                    redirect_uris=list(uris),
                    sector=sector,
                    created_at=datetime.now(UTC),
                    connector=connector,
                )
            )
            session.commit()
        return RegisteredClient(client_id, name, uris, sector, secret)

    def client(self, client_id: str) -> RegionClient | None:
        """The registered client ``client_id``, if any."""
        with Session(self._engine) as session:
            return session.get(RegionClient, client_id)

    def authenticate_client(self, client_id: str, secret: str) -> RegionClient:
        """The confidential client these credentials name, or ``ClientAuthenticationError``
        (a public client has no secret to prove itself with)."""
        row = self.client(client_id)
        stored = row.secret_hash if row is not None else None
        # Compared even when unknown, so that both refusals take as long.
        matches = secrets.compare_digest(stored or digest(""), digest(secret))
        if row is None or stored is None or not matches:
            raise ClientAuthenticationError(
                "client authentication failed: send the client_id and client_secret that "
                "`tsunagu regionid client add` printed, as HTTP Basic credentials"
            )
        return row

    # -- accounts ------------------------------------------------------------------------------

    def add_account(
        self,
        username: str,
        password: str,
        *,
        role: str = "resident",
        proofing: Proofing = Proofing.SELF_ASSERTED,
        proofed_at: datetime | None = None,
        name: str | None = None,
        birthdate: str | None = None,
        account_id: str | None = None,
    ) -> Account:
        """Create an account (its password hashed); an existing username is refused.

        A resident's ``account_id`` is their id on the platform (what their consents and
        data are kept under); a new one is made when not given.
        """
        if role not in ACCOUNT_ROLES:
            raise ValueError(f"role must be one of {', '.join(sorted(ACCOUNT_ROLES))}")
        with Session(self._engine) as session:
            if session.exec(
                select(RegionAccount).where(RegionAccount.username == username)
            ).first():
                raise ValueError(f"username {username!r} is taken")
            row = RegionAccount(
                id=account_id or uuid.uuid4().hex,
                username=username,
                password_hash=hash_password(password),
                role=role,
                name=name,
                birthdate=birthdate,
                proofing=proofing.value,
                proofed_at=proofed_at,
                created_at=datetime.now(UTC),
            )
            session.add(row)
            session.commit()
            return Account.of(row)

    def account(self, account_id: str) -> Account | None:
        """The account ``account_id``, if any."""
        with Session(self._engine) as session:
            row = session.get(RegionAccount, account_id)
            return Account.of(row) if row is not None else None

    def by_username(self, username: str) -> Account | None:
        """The account signing in as ``username``, if any."""
        with Session(self._engine) as session:
            found = select(RegionAccount).where(RegionAccount.username == username)
            row = session.exec(found).first()
            return Account.of(row) if row is not None else None

    def sign_in(self, username: str, password: str) -> Account:
        """The account these credentials sign in, or ``SignInError``."""
        with Session(self._engine) as session:
            found = select(RegionAccount).where(RegionAccount.username == username)
            row = session.exec(found).first()
        if row is None:
            check_password(password, _dummy_hash())
            raise SignInError("wrong username or password")
        if not check_password(password, row.password_hash):
            raise SignInError("wrong username or password")
        return Account.of(row)
