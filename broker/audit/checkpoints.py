"""Signed checkpoints: the platform key (Ed25519) attests "the chain up to seq N ends in hash H".

A checkpoint is a compact JWS (alg ``Ed25519``, RFC 9864; ``kid`` and ``typ``
``audit-checkpoint+jwt`` in the header) over ``{iss, iat, seq, hash, at, prev_seq, prev_hash}``.
``prev_*`` name the previous checkpoint, so the checkpoints form a chain of their own and
removing one is seen at the next. It verifies with only the platform's JWKS, as consent receipts
do; PyJWT can do the same (registering ``Ed25519``, as ``consent.keys`` does).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from consent.keys import JWS_ALG, VERIFIED_ALGS, Jwks, SigningKey, ed25519_public_key

MEDIA_TYPE = "audit-checkpoint+jwt"
ISSUER = "urn:tsunagu:platform"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One checkpoint row: the seq and hash it covers, when, and the JWS over them."""

    seq: int
    hash: str
    at: str
    signature: str


def sign_checkpoint(
    key: SigningKey, seq: int, hash_: str, at: str, prev_seq: int, prev_hash: str
) -> Checkpoint:
    """A checkpoint of the chain at ``seq`` (whose entry hash is ``hash_``)."""
    claims = {
        "iss": ISSUER,
        "iat": int(time.time()),
        "seq": seq,
        "hash": hash_,
        "at": at,
        "prev_seq": prev_seq,
        "prev_hash": prev_hash,
    }
    token = jwt.encode(
        claims, key.private_key, algorithm=JWS_ALG, headers={"kid": key.kid, "typ": MEDIA_TYPE}
    )
    return Checkpoint(seq, hash_, at, token)


class CheckpointInvalid(Exception):
    """A checkpoint whose signature does not verify under the platform's JWKS."""


class CheckpointVerifier:
    """Verifies checkpoint signatures against a JWKS (keys parsed once per ``kid``)."""

    def __init__(self, jwks: Jwks) -> None:
        self._jwks = {k.get("kid"): k for k in jwks.get("keys", [])}
        self._keys: dict[str, Ed25519PublicKey] = {}

    def claims(self, token: str) -> dict[str, Any]:
        """The verified payload of ``token``; CheckpointInvalid otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise CheckpointInvalid(f"not a compact JWS: {exc}") from exc
        alg = header.get("alg")
        if alg not in VERIFIED_ALGS:
            # Never let the token pick its algorithm ("none", HMAC with the public key, …).
            raise CheckpointInvalid(f"alg {alg!r} is not {JWS_ALG}")
        kid = header.get("kid")
        key = self._key(kid)
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[str(alg)],
                issuer=ISSUER,
                options={"require": ["iss", "seq", "hash", "prev_seq", "prev_hash"]},
            )
        except jwt.InvalidSignatureError as exc:
            raise CheckpointInvalid(f"signature does not verify under key {kid!r}") from exc
        except jwt.InvalidTokenError as exc:
            raise CheckpointInvalid(f"bad claims: {exc}") from exc
        return payload

    def _key(self, kid: Any) -> Ed25519PublicKey:
        if not isinstance(kid, str) or kid not in self._jwks:
            raise CheckpointInvalid(f"signed by key {kid!r}, which is not in the platform's JWKS")
        key = self._keys.get(kid)
        if key is None:
            try:
                key = ed25519_public_key(self._jwks[kid])
            except ValueError as exc:
                raise CheckpointInvalid(str(exc)) from exc
            self._keys[kid] = key
        return key
