"""Sealing on the projection path: whose key an event needs, and one batch's keys.

A row about a person names them by their blind row reference (``subject_ref``) and keeps
its precise or identifying fields in one ``sealed`` column under their key (see
``consent.vault``). Keys are fetched once per batch, from the vault's in-process cache.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from contract.cloudevents import CloudEvent

if TYPE_CHECKING:  # consent.vault imports this package's timestamps: no import cycle at run time
    from consent.vault import SubjectKey, SubjectVault

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
