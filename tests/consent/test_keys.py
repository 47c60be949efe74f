"""The platform's signing keys: generated once, kept private, published as a JWKS, rotated."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from consent.errors import KeyStoreError
from consent.keys import KeyRing, jwk_thumbprint


def test_the_kid_is_the_rfc_7638_thumbprint() -> None:
    # The Ed25519 example of RFC 8037, appendix A.3.
    jwk = {"crv": "Ed25519", "kty": "OKP", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert jwk_thumbprint(jwk) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_the_first_run_generates_a_private_key_only_the_platform_can_read(tmp_path: Path) -> None:
    ring = KeyRing.open(tmp_path / "keys")
    private = tmp_path / "keys" / "signing.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert ring.signing_key.kid == jwk_thumbprint(ring.signing_key.public_jwk())


def test_later_runs_load_the_same_key(tmp_path: Path) -> None:
    first = KeyRing.open(tmp_path / "keys").signing_key.kid
    assert KeyRing.open(tmp_path / "keys").signing_key.kid == first


def test_the_jwks_publishes_public_keys_only(tmp_path: Path) -> None:
    ring = KeyRing.open(tmp_path / "keys")
    (key,) = ring.jwks()["keys"]
    assert key["kid"] == ring.signing_key.kid
    assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("OKP", "Ed25519", "Ed25519", "sig")
    assert "d" not in key


def test_rotation_signs_with_a_new_key_and_keeps_the_old_public_key(tmp_path: Path) -> None:
    ring = KeyRing.open(tmp_path / "keys")
    old = ring.signing_key.kid
    new = ring.rotate().kid
    assert new != old
    assert [k["kid"] for k in ring.jwks()["keys"]] == [new, old]  # the current key first
    reopened = KeyRing.open(tmp_path / "keys")
    assert reopened.signing_key.kid == new
    assert {k["kid"] for k in reopened.jwks()["keys"]} == {new, old}


def test_a_private_key_others_can_read_is_refused(tmp_path: Path) -> None:
    KeyRing.open(tmp_path / "keys")
    (tmp_path / "keys" / "signing.pem").chmod(0o644)
    with pytest.raises(KeyStoreError, match="readable by others"):
        KeyRing.open(tmp_path / "keys")
