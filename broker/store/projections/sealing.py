"""Sealing on the projection path: whose key an event needs, and one batch's keys.

A row about a person names them by their blind row reference (``subject_ref``) and keeps
its precise or identifying fields in one ``sealed`` column under their key. Keys are fetched
once per batch, from the vault's in-process cache. The store says here what it needs of a key
and of the vault; ``consent.vault`` provides them (the store does not import consent).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from contract.cloudevents import CloudEvent


class UnreadableSealError(Exception):
    """Sealed bytes failed authentication: tampered with, truncated, or another subject's."""


class SubjectKey(Protocol):
    """One subject's live key, as the projections use it."""

    @property
    def ref(self) -> str:
        """The subject's blind row reference (``subject_ref``)."""
        ...

    def seal(self, fields: Mapping[str, Any]) -> bytes:
        """``fields``, encrypted and authenticated under this key."""
        ...

    def open(self, sealed: bytes) -> dict[str, Any]:
        """The fields ``seal`` was given; UnreadableSealError when they do not authenticate."""
        ...


class SubjectVault(Protocol):
    """Where subjects' keys come from (``consent.vault.SubjectVault``)."""

    def keys_for(self, subject_ids: Iterable[str], *, create: bool) -> Mapping[str, SubjectKey]:
        """The live keys of ``subject_ids`` (made for new subjects when ``create``)."""
        ...


#: Width of a ``subject_ref`` column (the vault's hex HMAC, with room to grow).
REF_LENGTH = 64


def key_subject(event: CloudEvent) -> str | None:
    """The person whose key seals ``event``'s personal fields; None when it is about no one.

    A resident's events name them in ``resident_id`` (an inquiry: the one inquiring); a
    listing's name its owner in ``owner_id``; vehicle positions name neither.
    """
    data = event.data
    subject = data.get("resident_id") or data.get("owner_id")
    return subject if isinstance(subject, str) else None


class BatchKeys:
    """The live keys of one batch's subjects, fetched at once (made for new subjects)."""

    __slots__ = ("_keys", "vault")

    def __init__(self, vault: SubjectVault, subjects: Iterable[str]) -> None:
        self.vault = vault
        self._keys = vault.keys_for(subjects, create=True)

    def __contains__(self, subject_id: object) -> bool:
        return subject_id in self._keys

    def __getitem__(self, subject_id: str) -> SubjectKey:
        return self._keys[subject_id]

    def existing(self, subject_id: str) -> SubjectKey | None:
        """The key of a subject outside the batch (a listing's previous owner), never made."""
        key = self._keys.get(subject_id)
        if key is None:
            key = self.vault.keys_for((subject_id,), create=False).get(subject_id)
        return key
