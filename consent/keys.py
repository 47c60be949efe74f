"""The platform's receipt-signing keys: Ed25519, kept in a directory, published as a JWKS.

Layout of the key directory (default ``$TSUNAGU_DATA_DIR/keys``, mode 0700; never in the repo):

* ``signing.pem``          the current private key (PKCS#8 PEM, mode 0600)
* ``public/<kid>.jwk.json`` the public JWK of every key that ever signed, current one included

Rotation writes the new public key first, then replaces ``signing.pem``; the old private key
is gone but its public key stays in the JWKS, so receipts it signed verify for ever. Another
process keeps signing with the key it loaded (still published) until it restarts or reloads.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from jwt import register_algorithm
from jwt.algorithms import OKPAlgorithm

from consent.errors import KeyStoreError, SignatureInvalidError
from contract.private_files import private_dir, private_file

Jwk = dict[str, str]
Jwks = dict[str, list[Jwk]]

_SIGNING = "signing.pem"
_PUBLIC = "public"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint (SHA-256, base64url) of an OKP public key: its ``kid``."""
    required = {name: jwk[name] for name in ("crv", "kty", "x")}
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return _b64url(hashlib.sha256(canonical).digest())


def public_jwk(key: Ed25519PublicKey) -> Jwk:
    """The public JWK (RFC 8037) of ``key``, with its thumbprint as ``kid``."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk: Jwk = {"kty": "OKP", "crv": "Ed25519", "x": _b64url(raw)}
    return {**jwk, "kid": jwk_thumbprint(jwk), "alg": JWS_ALG, "use": "sig"}


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private Ed25519 key and its ``kid``."""

    kid: str
    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh key."""
        private = Ed25519PrivateKey.generate()
        return cls(public_jwk(private.public_key())["kid"], private)

    def public_jwk(self) -> Jwk:
        """This key's public JWK."""
        return public_jwk(self.private_key.public_key())

    def pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (the file's mode protects it)."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def write_private_file(path: Path, data: bytes) -> Path:
    """Write ``data`` to a fresh temporary file beside ``path`` with mode 0600; return it."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    return tmp


def create_private_file_once(path: Path, data: bytes) -> None:
    """Create ``path`` (mode 0600) holding ``data`` unless it exists: of several processes
    starting at once, the first one's file wins and the others use it."""
    tmp = write_private_file(path, data)
    try:
        os.link(tmp, path)  # link() never replaces an existing file
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def load_or_create_key(path: Path) -> bytes:
    """The secret key (32 bytes or more) in ``path``, generated (mode 0600) when missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        create_private_file_once(path, secrets.token_bytes(32))
    key = path.read_bytes()
    if len(key) < 32:
        raise ValueError(f"{path} holds {len(key)} bytes; a key needs 32")
    return key


def read_private_pem(path: Path) -> PrivateKeyTypes:
    """Load a PEM private key, refusing one that others may read."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        # Like ssh: a key others can read may have leaked; refuse rather than sign with it.
        raise KeyStoreError(f"{path} is readable by others (mode {oct(mode & 0o777)}); chmod 600")
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except ValueError as exc:
        raise KeyStoreError(f"{path} is not a PEM private key: {exc}") from exc


def _load_private(path: Path) -> SigningKey:
    key = read_private_pem(path)
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyStoreError(f"{path} is not an Ed25519 key")
    return SigningKey(public_jwk(key.public_key())["kid"], key)


class KeyRing:
    """The current signing key and every public key receipts may have been signed with."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._signing = self._load_or_create()

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> KeyRing:
        """Load the keys in ``directory``, generating the first key when there is none."""
        return cls(Path(directory))

    @classmethod
    def in_data_dir(cls, data_dir: str | os.PathLike[str]) -> KeyRing:
        """The platform's keys in ``<data_dir>/keys`` (``TSUNAGU_DATA_DIR``, outside the repo)."""
        return cls(Path(data_dir) / "keys")

    @property
    def signing_key(self) -> SigningKey:
        """The key new receipts are signed with."""
        return self._signing

    def _load_or_create(self) -> SigningKey:
        try:
            private_dir(self.directory)
            # Public keys, but in the platform's own directory, private like the rest of it.
            private_dir(self.directory / _PUBLIC)
            path = self.directory / _SIGNING
            if not path.exists():
                key = SigningKey.generate()
                self._publish(key)
                create_private_file_once(path, key.pem())
            key = _load_private(path)
            self._publish(key)  # idempotent; repairs a missing public file
            return key
        except OSError as exc:
            raise KeyStoreError(f"key directory {self.directory}: {exc}") from exc

    def _publish(self, key: SigningKey) -> None:
        target = self.directory / _PUBLIC / f"{key.kid}.jwk.json"
        if target.exists():
            return
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        private_file(tmp)
        tmp.write_text(json.dumps(key.public_jwk(), sort_keys=True), encoding="utf-8")
        os.replace(tmp, target)

    def rotate(self) -> SigningKey:
        """Make a new signing key; the old one's public key stays in the JWKS."""
        key = SigningKey.generate()
        try:
            self._publish(key)  # published before use, so no receipt is ever unverifiable
            path = self.directory / _SIGNING
            os.replace(write_private_file(path, key.pem()), path)
        except OSError as exc:
            raise KeyStoreError(f"rotating the key in {self.directory}: {exc}") from exc
        self._signing = key
        return key

    def reload(self) -> None:
        """Pick up a key another process rotated to."""
        self._signing = self._load_or_create()

    def jwks(self) -> Jwks:
        """The public JWKS to serve at ``/.well-known/jwks.json``: current key first."""
        keys: dict[str, Jwk] = {}
        for path in sorted((self.directory / _PUBLIC).glob("*.jwk.json")):
            jwk = json.loads(path.read_text(encoding="utf-8"))
            if jwk_thumbprint(jwk) == jwk.get("kid"):  # a file edited by hand is not served
                keys[jwk["kid"]] = jwk
        current = self._signing.kid
        keys.setdefault(current, self._signing.public_jwk())
        ordered = [keys[current], *(k for kid, k in keys.items() if kid != current)]
        return {"keys": ordered}


#: RFC 9864's fully-specified JWS algorithm for EdDSA with Ed25519: what every signature of
#: the platform's key (receipts, webhooks, audit checkpoints) names in its header.
JWS_ALG = "Ed25519"
#: What a verifier accepts: ``Ed25519``, and RFC 8037's polymorphic ``EdDSA`` (deprecated by
#: RFC 9864) on what was signed before. Never what a header asks for beyond these.
VERIFIED_ALGS = frozenset({JWS_ALG, "EdDSA"})

# PyJWT knows it only as EdDSA so far; ValueError: registered already, or known by now.
with contextlib.suppress(ValueError):
    register_algorithm(JWS_ALG, OKPAlgorithm())


def ed25519_public_key(jwk: Jwk) -> Ed25519PublicKey:
    """The public key of an OKP/Ed25519 JWK (ValueError when it is not one)."""
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or not isinstance(jwk.get("x"), str):
        raise ValueError(f"key {jwk.get('kid')!r} is not an Ed25519 key")
    raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
    return Ed25519PublicKey.from_public_bytes(raw)


def verifying_key(
    jwks: Jwks, header: dict[str, Any], error: type[SignatureInvalidError]
) -> tuple[str, Ed25519PublicKey]:
    """The algorithm of a JWS ``header`` (one the platform signs with, or did) and the key its
    ``kid`` names in ``jwks``; ``error`` otherwise. The header never picks anything else:
    ``none`` and HMAC keyed with the public key end here."""
    alg = header.get("alg")
    if alg not in VERIFIED_ALGS:
        raise error("unsupported_alg", f"alg {alg!r} is not {JWS_ALG}")
    jwk = ed25519_jwk(jwks, header.get("kid"), error)
    try:
        return str(alg), ed25519_public_key(jwk)
    except ValueError as exc:
        raise error("unsupported_key", str(exc)) from exc


def ed25519_jwk(jwks: Jwks, kid: object, error: type[SignatureInvalidError]) -> Jwk:
    """The Ed25519 public key ``kid`` names in ``jwks``; ``error`` (reason ``unknown_kid`` or
    ``unsupported_key``) when there is none."""
    jwk = next((k for k in jwks.get("keys", []) if k.get("kid") == kid), None)
    if jwk is None:
        raise error("unknown_kid", f"kid {kid!r} is not in the platform's JWKS")
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise error("unsupported_key", f"key {kid!r} is not an Ed25519 key")
    return jwk
