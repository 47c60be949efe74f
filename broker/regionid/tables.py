"""The region ID's tables: accounts, clients, authorization codes and tokens, links and link
codes.

Codes and tokens are stored as SHA-256 digests: a copy of the store signs nobody in.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index
from sqlmodel import Field, SQLModel


class RegionAccount(SQLModel, table=True):
    """A person who signs in with the region ID: a resident, or an auditor of the municipality."""

    __tablename__ = "regionid_accounts"

    id: str = Field(primary_key=True, max_length=64)
    username: str = Field(unique=True, max_length=128)
    password_hash: str = Field(max_length=256)
    role: str = Field(max_length=16)
    name: str | None = Field(default=None, max_length=256)
    birthdate: str | None = Field(default=None, max_length=10)
    proofing: str = Field(max_length=32)
    proofed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class RegionClient(SQLModel, table=True):
    """A service company registered with the region ID (an OAuth 2.0 client)."""

    __tablename__ = "regionid_clients"

    client_id: str = Field(primary_key=True, max_length=128)
    name: str = Field(max_length=256)
    secret_hash: str | None = Field(default=None, max_length=256)
    redirect_uris: list[str] = Field(sa_column=Column(JSON, nullable=False))
    sector: str = Field(max_length=256)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    #: The connector (its token's subject) that publishes this firm's events; None: the
    #: connector of the same name as the client.
    connector: str | None = Field(default=None, max_length=128)


class RegionCode(SQLModel, table=True):
    """An authorization code, by its digest; ``used_at`` marks it spent (a reuse is caught)."""

    __tablename__ = "regionid_codes"

    code_hash: str = Field(primary_key=True, max_length=64)
    client_id: str = Field(max_length=128)
    account_id: str = Field(max_length=64)
    redirect_uri: str = Field(max_length=2048)
    scope: str = Field(max_length=1024)
    nonce: str | None = Field(default=None, max_length=512)
    claims: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    code_challenge: str = Field(max_length=128)
    code_challenge_method: str = Field(max_length=16)
    auth_time: int
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    used_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class RegionToken(SQLModel, table=True):
    """An access token and its refresh token, by their digests; rotation revokes the pair."""

    __tablename__ = "regionid_tokens"

    access_hash: str = Field(primary_key=True, max_length=64)
    refresh_hash: str | None = Field(default=None, unique=True, max_length=64)
    client_id: str = Field(max_length=128)
    account_id: str = Field(max_length=64)
    scope: str = Field(max_length=1024)
    claims: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    code_hash: str | None = Field(default=None, index=True, max_length=64)
    issued_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    expires_in: int
    refresh_expires_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True))
    )
    revoked_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class RegionLink(SQLModel, table=True):
    """A service's account linked to a resident's region ID (ID link): the firm knows the
    resident by ``subject``, its pairwise subject; ``unlinked_at`` ends the link (kept for
    the record until erasure)."""

    __tablename__ = "regionid_links"
    __table_args__ = (Index("ix_regionid_links_client_subject", "client_id", "subject"),)

    id: str = Field(primary_key=True, max_length=32)
    client_id: str = Field(max_length=128)
    account_id: str = Field(index=True, max_length=64)
    subject: str = Field(max_length=64)
    how: str = Field(max_length=16)
    linked_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    unlinked_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class RegionLinkCode(SQLModel, table=True):
    """A one-time link code a firm handed a customer, by its digest; spent by the resident
    who enters it."""

    __tablename__ = "regionid_link_codes"

    code_hash: str = Field(primary_key=True, max_length=64)
    client_id: str = Field(index=True, max_length=128)
    #: SHA-256 of the client and its customer number (never the number itself): enough to
    #: see that one customer account is already linked to somebody else.
    customer_digest: str = Field(max_length=64)
    issued_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    redeemed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    link_id: str | None = Field(default=None, max_length=32)
