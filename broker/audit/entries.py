"""Audit entry kinds, the fields each may carry, and the canonical encoding that is hashed.

An entry is ``(seq, at, kind, actor, subject_ref, fields, prev_hash)``; its hash is
SHA-256 over the RFC 8785 (JSON Canonicalization Scheme) encoding of exactly those
(:func:`canonical`), ``fields`` canonicalised the same way, ``prev`` the previous entry's hash
(64 zeros for the first). Anyone can recompute it from an export with any JCS implementation
and SHA-256. orjson with sorted keys writes the same bytes as JCS for what entries hold
(strings, integers, booleans, ASCII keys), so :func:`jcs` uses it there and the reference
implementation (``rfc8785``) for the rest (floats, keys whose UTF-16 order differs).

Personal data never enters an entry in the clear. Fields are checked against the kind's list
below (an unknown field is refused, so a caller cannot slip a name or an address in), and a
resident or owner is never a field: callers pass ``subject=``, which :class:`SubjectRefs`
turns into ``subject_ref``, an HMAC under the audit key. Without that key the reference says
nothing; with it, the platform can find a resident's entries for their data tracker.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import rfc8785

from consent.keys import load_or_create_key

#: ``prev_hash`` of the first entry.
GENESIS = "0" * 64
#: Bumped if the canonical encoding ever changes; part of every hashed document.
ENCODING_VERSION = 1
#: How fields are serialised: keys sorted at every depth, datetimes as UTC ``…Z`` strings.
FIELD_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


class EntryKind(StrEnum):
    """What happened."""

    PUBLISH_BATCH = "publish_batch"
    DEAD_LETTER = "dead_letter"
    CONSENT_CHANGE = "consent_change"
    DECISION = "decision"
    PARTNER_READ = "partner_read"
    ERASURE = "erasure"
    TOKEN_ISSUED = "token_issued"
    ADMIN_CHANGE = "admin_change"
    AUDIT_EXPORT = "audit_export"
    SIGN_IN_REFUSED = "sign_in_refused"
    ID_LINK = "id_link"


class SubjectRule(StrEnum):
    """Whether an entry of a kind names a subject (always as ``subject_ref``)."""

    REQUIRED = "required"
    OPTIONAL = "optional"
    FORBIDDEN = "forbidden"


@dataclass(frozen=True, slots=True)
class KindSpec:
    """The fields an entry of one kind must and may carry (none of them personal)."""

    required: frozenset[str]
    optional: frozenset[str]
    subject: SubjectRule


def _spec(
    required: str, optional: str = "", subject: SubjectRule = SubjectRule.FORBIDDEN
) -> KindSpec:
    return KindSpec(frozenset(required.split()), frozenset(optional.split()), subject)


#: Fields per kind. ``actor`` (a column, not a field) is who caused it: a connector source,
#: ``ingest``, a partner id, an admin's token subject, or ``subject`` when the resident
#: acted themselves (their reference is then in ``subject_ref``, never their id).
KINDS: Mapping[EntryKind, KindSpec] = {
    # One ingest transaction's events of one topic: how many it projected, skipped as
    # duplicates, dead-lettered or took in about erased subjects; the offsets it covered
    # ("partition:first-last" strings); and the counts per connector source and event type,
    # from which the auditor's flow map is drawn.
    EntryKind.PUBLISH_BATCH: _spec(
        "topic events",
        "duplicates dead_letters erased held held_sources offsets sources types",
    ),
    # One rejected event: the domain topic it was meant for, why (the DLQ reason code), the
    # JSON pointer and schema that refused it, its event id, the connector source it claimed
    # and the one its verified token names if that differs (``sender``: ids of events and
    # connectors, not of people) and its origin. Never the validator's message: it may quote
    # the event's values.
    EntryKind.DEAD_LETTER: _spec("topic reason", "event_id source sender origin path schema"),
    # A consent granted, amended, paused, resumed or revoked, or a partner or purpose change.
    EntryKind.CONSENT_CHANGE: _spec(
        "event", "consent_id supersedes partner purpose categories status", SubjectRule.OPTIONAL
    ),
    # One answer of the decision point, allow or deny, with its reason and consent id; a
    # denial carries ``withheld: true`` when it was not asked for and not part of the consent
    # (see ``consent.decisions.Outcome``); without it, a denial is a refusal.
    EntryKind.DECISION: _spec(
        "allowed reason partner purpose category",
        "consent_id decided_at data_from data_to withheld",
        SubjectRule.REQUIRED,
    ),
    # Data a partner read: the view, its purpose, the categories, the partner's pairwise
    # pseudonym of the resident (already keyed per partner) and the consents that allowed it.
    EntryKind.PARTNER_READ: _spec(
        "partner purpose categories", "view pseudonym consent_ids rows", SubjectRule.OPTIONAL
    ),
    # An erasure, by its erasure record's id; never whose (the record keeps only a digest
    # under a salt the resident holds; a subject_ref here would undo that).
    EntryKind.ERASURE: _spec(
        "erasure_id", "requested_by consents_revoked key_destroyed rows_deleted"
    ),
    # A token issued by the embedded issuer. ``sub`` only for non-personal principals
    # (connectors, partners, admins, auditors); a resident's token passes ``subject=``.
    EntryKind.TOKEN_ISSUED: _spec("role", "sub jti expires_at scopes", SubjectRule.OPTIONAL),
    # An operator's change: registering a connector, partner, purpose or schema, a rotation.
    EntryKind.ADMIN_CHANGE: _spec("action target", "detail"),
    # An auditor took a copy of the whole log (actor: their token subject).
    EntryKind.AUDIT_EXPORT: _spec("format"),
    # A request the region ID refused (RFC 6749 §4.1.2.1, §5.2; a wrong password): the client
    # it named, the OAuth error code and why. Never the resident or the username tried.
    EntryKind.SIGN_IN_REFUSED: _spec("client error reason"),
    # ID link: a service's account linked with a resident (``how``: at sign-in or with a
    # link code), unlinked, a link code issued (by the firm: no subject), a link refused
    # (``reason``: the refusal's name), held events released to the resident now linked or
    # discarded after the retention (``events``: how many). ``client`` is the service's client
    # id (its connector for released and discarded); never the firm's customer number or
    # the pairwise subject.
    EntryKind.ID_LINK: _spec("event client", "how reason events", SubjectRule.OPTIONAL),
}

#: Roles whose token subject is a person: their ``sub`` must not be recorded in the clear.
PERSONAL_ROLES = frozenset({"resident", "owner"})


class EntryFieldError(ValueError):
    """An entry whose fields do not match its kind (unknown, missing or personal)."""


def check_fields(kind: EntryKind, fields: Mapping[str, Any], has_subject: bool) -> None:
    """Refuse fields the kind does not declare, missing required ones, or a misplaced subject."""
    spec = KINDS[kind]
    names = fields.keys()
    unknown = names - spec.required - spec.optional
    if unknown:
        raise EntryFieldError(f"{kind}: unknown fields {sorted(unknown)}")
    missing = spec.required - names
    if missing:
        raise EntryFieldError(f"{kind}: missing fields {sorted(missing)}")
    if has_subject and spec.subject is SubjectRule.FORBIDDEN:
        raise EntryFieldError(f"{kind}: entries of this kind never name a subject")
    if not has_subject and spec.subject is SubjectRule.REQUIRED:
        raise EntryFieldError(f"{kind}: a subject is required")
    if kind is EntryKind.TOKEN_ISSUED and fields.get("role") in PERSONAL_ROLES and "sub" in fields:
        raise EntryFieldError("token_issued: a resident's sub is personal; pass subject= instead")


#: The largest integer JCS carries (I-JSON's safe integers, as the reference implementation).
_JCS_MAX_INT = 2**53 - 1


def jcs(value: Any) -> bytes:
    """``value`` as RFC 8785 (JCS) canonical JSON."""
    if _orjson_writes_jcs(value):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return rfc8785.dumps(value)


def _orjson_writes_jcs(value: Any) -> bool:
    """Whether orjson's sorted output is already JCS: no floats (ECMAScript number text), no
    integer beyond 2**53 - 1, and keys below U+D800 (where code point order is UTF-16 order)."""
    kind = type(value)
    # Exact types first: this runs for every audit entry.
    if kind in _WRITTEN_AS_STRINGS:
        return True
    if kind is int:
        return bool(-_JCS_MAX_INT <= value <= _JCS_MAX_INT)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not (key.isascii() or max(key) < "\ud800"):
                return False
            if not _orjson_writes_jcs(item):
                return False
        return True
    if kind is list or kind is tuple:
        return all(_orjson_writes_jcs(item) for item in value)
    if isinstance(value, str | date | UUID):  # StrEnum members and other subclasses
        return True
    if isinstance(value, int):  # IntEnum members (bool is an exact type above)
        return -_JCS_MAX_INT <= value <= _JCS_MAX_INT
    return False  # floats, and anything else: the reference implementation decides


#: Types orjson writes as JSON strings (or literals) exactly as JCS would.
_WRITTEN_AS_STRINGS = frozenset({str, bool, type(None), datetime, date, UUID})


def encode_fields(fields: Mapping[str, Any]) -> str:
    """The canonical JSON text of ``fields`` (what is stored and what is hashed)."""
    text = orjson.dumps(fields, option=FIELD_OPTIONS)  # datetimes as UTC strings
    return text.decode() if _orjson_writes_jcs(fields) else canonical_fields(text)


def canonical_fields(text: str | bytes) -> str:
    """Re-canonicalise stored or exported fields text (a no-op on untouched text)."""
    return jcs(orjson.loads(text)).decode()


def canonical(
    seq: int,
    at: str,
    kind: str,
    actor: str,
    subject_ref: str | None,
    fields_text: str,
    prev_hash: str,
) -> bytes:
    """The bytes an entry's hash is taken over; ``fields_text`` must be canonical. The
    envelope's keys are ASCII and its values strings and integers: orjson writes it as JCS."""
    return orjson.dumps(
        {
            "v": ENCODING_VERSION,
            "seq": seq,
            "at": at,
            "kind": kind,
            "actor": actor,
            "subject_ref": subject_ref,
            "fields": orjson.Fragment(fields_text),
            "prev": prev_hash,
        },
        option=orjson.OPT_SORT_KEYS,
    )


def entry_hash(
    seq: int,
    at: str,
    kind: str,
    actor: str,
    subject_ref: str | None,
    fields_text: str,
    prev_hash: str,
) -> str:
    """SHA-256 (hex) of the entry's canonical encoding."""
    data = canonical(seq, at, kind, actor, subject_ref, fields_text, prev_hash)
    return hashlib.sha256(data).hexdigest()


def timestamp(moment: datetime | None = None) -> str:
    """An entry's ``at``: UTC, microseconds, ``Z`` (sorts as text, round-trips exactly)."""
    moment = datetime.now(UTC) if moment is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SubjectRefs:
    """Turns a subject id into its ``subject_ref``: HMAC-SHA256 under the audit key, hex.

    A dedicated key (not the pseudonym key), so rotating partner pseudonyms never changes the
    audit trail. The key stays after an erasure: the erased resident, coming back with their
    id, can still be shown what happened to their data; whoever holds the key *and* a list of
    resident ids can link entries to residents, which is why the key lives beside the
    platform's other keys (mode 0600) and never in the store or an export.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("an audit key needs at least 32 bytes")
        self._key = key
        # The same residents come back all the time (a partner reads a resident's views one
        # after another): an HMAC costs more than the dict lookup that saves it.
        self._cache: dict[str, str] = {}

    @classmethod
    def in_data_dir(cls, data_dir: str | Path) -> SubjectRefs:
        """The key in ``<data_dir>/keys/audit.key``, generated (0600) at first use."""
        return cls(load_or_create_key(Path(data_dir) / "keys" / "audit.key"))

    def of(self, subject: str) -> str:
        """The reference of ``subject`` in the audit log."""
        ref = self._cache.get(subject)
        if ref is None:
            ref = hmac.new(self._key, subject.encode("utf-8"), hashlib.sha256).hexdigest()
            if len(self._cache) >= 100_000:
                self._cache.clear()
            self._cache[subject] = ref
        return ref

    def cursor_key(self, subject: str) -> bytes:
        """The key sealing ``subject``'s tracker cursors: derived from the audit key, so that
        neither the resident nor anyone shown subject references can make or alter one."""
        return hmac.new(
            self._key, b"tracker-cursor\x00" + subject.encode(), hashlib.sha256
        ).digest()
