"""The region ID's OpenID provider on Authlib's framework-neutral server: the authorization
code grant with OpenID Connect and PKCE (S256 only), refresh tokens rotated at each use,
userinfo and RP-initiated logout. Requests come in as Authlib ``OAuth2Request`` objects (the
API's routes adapt Starlette's) and answers go out as :class:`Answer`; every refusal is
written to the audit log.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from authlib.oauth2 import AuthorizationServer, OAuth2Error, OAuth2Request, ResourceProtector
from authlib.oauth2.rfc6749 import ClientMixin, InvalidGrantError, InvalidRequestError, TokenMixin
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, RefreshTokenGrant
from authlib.oauth2.rfc6749.requests import OAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenGenerator, BearerTokenValidator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import OpenIDCode
from authlib.oidc.core.models import AuthorizationCodeMixin
from authlib.oidc.rpinitiated import EndSessionEndpoint
from joserfc.jwk import ECKey
from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from broker.audit import AuditLog, EntryKind
from broker.auth.issuer import load_or_create_p256, public_jwk
from broker.regionid.directory import Account, Directory, digest
from broker.regionid.links import Links
from broker.regionid.proofing import ACR, wants_verified_claims
from broker.regionid.subjects import PairwiseSubjects
from broker.regionid.tables import RegionClient, RegionCode, RegionToken
from consent.keys import load_or_create_key

#: Scopes a client may ask for.
SCOPES = ("openid", "profile", "offline_access")
CODE_TTL_S = 60
ACCESS_TTL_S = 600
REFRESH_TTL_S = 30 * 24 * 3600
ID_TOKEN_TTL_S = 600
LINK_CODE_TTL_S = 14 * 24 * 3600
ALGORITHM = "ES256"
#: The actor of the provider's audit entries.
ACTOR = "regionid"


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer of the provider: status, body (a JSON object or text) and headers."""

    status: int
    body: Any
    headers: list[tuple[str, str]] = field(default_factory=list)


class Parameters(OAuth2Payload):  # type: ignore[misc]
    """Request parameters as Authlib reads them, every value of a repeated name kept (a
    repeated parameter is refused, RFC 6749 §3.1)."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for name, value in pairs:
            self._datalist[name].append(value)
        self._data = {name: values[0] for name, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        """The first value of each parameter."""
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        """Every value of each parameter."""
        return self._datalist


class ProviderRequest(OAuth2Request):  # type: ignore[misc]
    """An HTTP request as Authlib's server reads it, whatever the web framework."""

    def __init__(
        self,
        method: str,
        uri: str,
        pairs: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
    ) -> None:
        super().__init__(method=method, uri=uri, headers=headers)
        self.payload = Parameters(pairs)

    @property
    def args(self) -> dict[str, str]:
        """The parameters (query or form: the route chose which)."""
        return dict(self.payload.data)

    @property
    def form(self) -> dict[str, str]:
        """The parameters (query or form: the route chose which)."""
        return dict(self.payload.data)


# -- the models as Authlib sees them ---------------------------------------------------------


class _Client(ClientMixin):  # type: ignore[misc]
    def __init__(self, row: RegionClient) -> None:
        self.row = row
        self.client_id = row.client_id
        # For now a client's redirect URIs are where it may be sent back after logout too.
        self.client_metadata: dict[str, Any] = {"post_logout_redirect_uris": row.redirect_uris}

    def get_client_id(self) -> str:
        return self.row.client_id

    def get_default_redirect_uri(self) -> None:
        return None  # OpenID Connect: the request must name it

    def get_allowed_scope(self, scope: str | None) -> str:
        return " ".join(s for s in (scope or "").split() if s in SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.row.redirect_uris  # exact match, RFC 9700 §4.1.3

    def check_client_secret(self, client_secret: str) -> bool:
        stored = self.row.secret_hash
        return stored is not None and secrets.compare_digest(stored, digest(client_secret))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.row.secret_hash is None:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


@dataclass(frozen=True, slots=True)
class SignedIn:
    """An account as one client knows it: with its pairwise subject in the client's sector."""

    account: Account
    sub: str

    def get_user_id(self) -> str:
        """The local account id (never shown to a client)."""
        return self.account.id


class _Code(AuthorizationCodeMixin):  # type: ignore[misc]
    def __init__(self, row: RegionCode, account: Account | None) -> None:
        self.row = row
        self.account = account
        self.code_challenge = row.code_challenge
        self.code_challenge_method = row.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope

    def get_nonce(self) -> str | None:
        return self.row.nonce

    def get_auth_time(self) -> int:
        return self.row.auth_time

    def get_acr(self) -> str | None:
        return self.account.identity.acr if self.account is not None else None

    def get_amr(self) -> list[str]:
        return ["pwd"]


class _Token(TokenMixin):  # type: ignore[misc]
    def __init__(self, row: RegionToken, provider: RegionId) -> None:
        self.row = row
        self._provider = provider
        self.scope = row.scope

    def check_client(self, client: _Client) -> bool:
        return bool(client.get_client_id() == self.row.client_id)

    def get_scope(self) -> str:
        return self.row.scope

    def get_expires_in(self) -> int:
        return self.row.expires_in

    def is_expired(self) -> bool:
        issued = self.row.issued_at.replace(tzinfo=self.row.issued_at.tzinfo or UTC)
        return datetime.now(UTC) >= issued + timedelta(seconds=self.row.expires_in)

    def is_refresh_expired(self) -> bool:
        ends = self.row.refresh_expires_at
        return ends is None or datetime.now(UTC) >= ends.replace(tzinfo=ends.tzinfo or UTC)

    def is_revoked(self) -> bool:
        return self.row.revoked_at is not None

    def get_user(self) -> SignedIn | None:
        return self._provider.signed_in(self.row.account_id, self.row.client_id)

    def get_client(self) -> _Client | None:
        return self._provider.query_client(self.row.client_id)


# -- grants and extensions -------------------------------------------------------------------


class _S256Only(CodeChallenge):  # type: ignore[misc]
    """PKCE is required, with S256 only: ``plain`` (or no method, which means plain) is
    refused (RFC 9700 §2.1.1)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]  # noqa: RUF012 (Authlib's class attribute)

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        method = grant.request.payload.data.get("code_challenge_method")
        if method != "S256":
            raise InvalidRequestError(
                "PKCE with code_challenge_method=S256 is required (plain is refused)",
                redirect_uri=redirect_uri,
                state=grant.request.payload.state,
            )
        super().validate_code_challenge(grant, redirect_uri)


class _OpenIDCode(OpenIDCode):  # type: ignore[misc]
    def __init__(self, provider: RegionId) -> None:
        super().__init__(require_nonce=False)
        self._provider = provider

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return self._provider.nonce_used(request.payload.client_id, nonce)

    def resolve_client_private_key(self, client: _Client) -> ECKey:
        return self._provider.signing_key

    def get_client_algorithm(self, client: _Client) -> str:
        return ALGORITHM

    def get_encode_header(self, client: _Client) -> dict[str, str]:
        return {"alg": ALGORITHM, "kid": self._provider.kid}

    def get_client_claims(self, client: _Client) -> dict[str, Any]:
        return {
            "iss": self._provider.issuer,
            "aud": [client.get_client_id()],
            "exp": int(time.time()) + ID_TOKEN_TTL_S,
        }

    def get_authorization_code_claims(self, authorization_code: _Code) -> dict[str, Any]:
        claims: dict[str, Any] = super().get_authorization_code_claims(authorization_code)
        account = authorization_code.account
        if account is not None and wants_verified_claims(authorization_code.row.claims, "id_token"):
            verified = account.identity.verified_claims()
            if verified is not None:
                claims["verified_claims"] = verified
        return claims

    def generate_user_info(self, user: SignedIn, scope: str) -> dict[str, Any]:
        return self._provider.user_info(user, scope, None)


class _CodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]  # noqa: RUF012

    @property
    def provider(self) -> RegionId:
        provider: RegionId = self.server.provider
        return provider

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        data = request.payload.data
        self.provider.save_code(code, request.client, request.user, data)

    def query_authorization_code(self, code: str, client: _Client) -> _Code | None:
        return self.provider.take_code(code, client)

    def delete_authorization_code(self, authorization_code: _Code) -> None:
        pass  # spent in take_code, in the same transaction that found it unspent

    def authenticate_user(self, authorization_code: _Code) -> SignedIn | None:
        return self.provider.signed_in(
            authorization_code.row.account_id, authorization_code.row.client_id
        )


class _RefreshGrant(RefreshTokenGrant):  # type: ignore[misc]
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation: each refresh token is used once
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]  # noqa: RUF012

    @property
    def provider(self) -> RegionId:
        provider: RegionId = self.server.provider
        return provider

    def authenticate_refresh_token(self, refresh_token: str) -> _Token | None:
        return self.provider.refresh_token(refresh_token)

    def authenticate_user(self, refresh_token: _Token) -> SignedIn | None:
        return refresh_token.get_user()

    def revoke_old_credential(self, refresh_token: _Token) -> None:
        self.provider.revoke(refresh_token.row.access_hash)


class _BearerValidator(BearerTokenValidator):  # type: ignore[misc]
    def __init__(self, provider: RegionId) -> None:
        super().__init__()
        self._provider = provider

    def authenticate_token(self, token_string: str) -> _Token | None:
        return self._provider.access_token(token_string)


class _EndSession(EndSessionEndpoint):  # type: ignore[misc]
    def __init__(self, provider: RegionId) -> None:
        super().__init__()
        self._provider = provider

    def get_server_jwks(self) -> dict[str, Any]:
        return self._provider.jwks()

    def get_algorithms(self) -> list[str]:
        return [ALGORITHM]

    def resolve_client_from_id_token_claims(self, id_token_claims: dict[str, Any]) -> Any:
        aud = id_token_claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else list(aud or [])
        return self._provider.query_client(audiences[0]) if len(audiences) == 1 else None

    def end_session(self, end_session_request: Any) -> None:
        claims = end_session_request.id_token_claims
        client = end_session_request.client
        if claims is not None and client is not None:
            self._provider.end_session(client.get_client_id(), claims["sub"])


def _random_token(**_: Any) -> str:
    """An opaque token: 256 random bits."""
    return secrets.token_urlsafe(32)


class _Server(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, provider: RegionId) -> None:
        super().__init__(scopes_supported=list(SCOPES))
        self.provider = provider
        self.register_token_generator(
            "default",
            BearerTokenGenerator(
                access_token_generator=_random_token,
                refresh_token_generator=_random_token,
                expires_generator=ACCESS_TTL_S,
            ),
        )

    def query_client(self, client_id: str) -> _Client | None:
        return self.provider.query_client(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        self.provider.save_token(token, request)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        if not isinstance(request, OAuth2Request):
            raise TypeError("the region ID is handed ProviderRequest objects by its routes")
        return request

    def create_json_request(self, request: Any) -> Any:
        raise TypeError("the region ID takes no JSON requests")

    def handle_response(self, status: int, body: Any, headers: Any) -> Answer:
        return Answer(status, body, list(headers or []))

    def handle_error_response(self, request: OAuth2Request, error: OAuth2Error) -> Answer:
        self.provider.refused(request, error)
        answer: Answer = super().handle_error_response(request, error)
        return answer


# -- the provider ----------------------------------------------------------------------------


class RegionId:
    """The region's OpenID provider: its issuer, keys, directory and Authlib server."""

    def __init__(
        self,
        engine: Engine,
        audit: AuditLog,
        issuer: str,
        keys_dir: Path,
        *,
        link_code_ttl_s: int = LINK_CODE_TTL_S,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.directory = Directory(engine)
        self._engine = engine
        self._audit = audit
        key = load_or_create_p256(keys_dir / "regionid.pem")
        self._jwk = public_jwk(key)
        self.kid: str = self._jwk["kid"]
        self.signing_key = ECKey.import_key(key)
        self._subjects = PairwiseSubjects(load_or_create_key(keys_dir / "regionid-pairwise.key"))
        self.links = Links(
            engine, audit, self.directory, self._subjects, code_ttl_s=link_code_ttl_s
        )
        self.server = _Server(self)
        self.server.register_grant(_CodeGrant, [_S256Only(required=True), _OpenIDCode(self)])
        self.server.register_grant(_RefreshGrant)
        self.server.register_endpoint(_EndSession(self))
        self._protector = ResourceProtector()
        self._protector.register_token_validator(_BearerValidator(self))

    # -- documents ------------------------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        """The keys ID tokens are signed with."""
        return {"keys": [dict(self._jwk)]}

    def discovery(self) -> dict[str, Any]:
        """The OpenID Provider Metadata (OpenID Connect Discovery 1.0 §3)."""
        base = self.issuer
        return {
            "issuer": base,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "userinfo_endpoint": f"{base}/userinfo",
            "end_session_endpoint": f"{base}/logout",
            "jwks_uri": f"{base}/jwks.json",
            "scopes_supported": list(SCOPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "none",
            ],
            "code_challenge_methods_supported": ["S256"],
            "claims_parameter_supported": True,
            "claims_supported": ["sub", "name", "birthdate", "acr", "auth_time", "verified_claims"],
            "acr_values_supported": list(ACR.values()),
            # OpenID Connect for Identity Assurance 1.0 §8
            "verified_claims_supported": True,
            "trust_frameworks_supported": ["jp_aml"],
            "evidence_supported": ["document", "electronic_signature"],
            "claims_in_verified_claims_supported": ["name", "birthdate"],
        }

    # -- endpoints ------------------------------------------------------------------------

    def authorization_request(self, request: ProviderRequest) -> Answer | None:
        """None when the request may go on to sign-in, else the refusal (redirected to the
        client only when its redirect URI is registered)."""
        try:
            self.server.get_consent_grant(request)
        except OAuth2Error as error:
            return self.server.handle_error_response(request, error)
        return None

    def authorize(self, request: ProviderRequest, account: Account) -> Answer:
        """The redirect carrying a code for ``account`` (signed in), or the refusal."""
        try:
            grant = self.server.get_consent_grant(request, end_user=account)
        except OAuth2Error as error:
            return self.server.handle_error_response(request, error)
        answer: Answer = self.server.create_authorization_response(
            request, grant_user=account, grant=grant
        )
        return answer

    def token(self, request: ProviderRequest) -> Answer:
        """The token endpoint's answer."""
        answer: Answer = self.server.create_token_response(request)
        return answer

    def userinfo(self, request: ProviderRequest) -> Answer:
        """The UserInfo endpoint's answer (OIDC Core §5.3)."""
        try:
            token: _Token = self._protector.validate_request(["openid"], request)
        except OAuth2Error as error:
            self.refused(request, error)
            status, body, headers = error()
            return Answer(status, body, list(headers))
        user = token.get_user()
        if user is None:
            return Answer(401, {"error": "invalid_token", "error_description": "no account"})
        return Answer(200, self.user_info(user, token.row.scope, token.row.claims))

    def logout(self, request: ProviderRequest) -> Answer | None:
        """RP-initiated logout: the client's tokens for this resident are revoked; a redirect
        to a registered URI, or None (the route shows a page)."""
        try:
            validated = self.server.validate_endpoint_request("end_session", request)
        except OAuth2Error as error:
            return self.server.handle_error_response(request, error)
        answer = self.server.create_endpoint_response("end_session", validated)
        return answer if isinstance(answer, Answer) else None

    # -- what the grants use ----------------------------------------------------------------

    def query_client(self, client_id: str) -> _Client | None:
        """The registered client, as Authlib sees it."""
        row = self.directory.client(client_id)
        return _Client(row) if row is not None else None

    def signed_in(self, account_id: str, client_id: str) -> SignedIn | None:
        """The account as the client ``client_id`` knows it."""
        account = self.directory.account(account_id)
        client = self.directory.client(client_id)
        if account is None or client is None:
            return None
        return SignedIn(account, self._subjects.subject(client.sector, account.id))

    def user_info(
        self, user: SignedIn, scope: str, claims: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The claims about ``user`` a token of ``scope`` may see."""
        info: dict[str, Any] = {"sub": user.sub}
        identity = user.account.identity
        if "profile" in scope.split() and identity.name:
            info["name"] = identity.name
        if wants_verified_claims(claims, "userinfo"):
            verified = identity.verified_claims()
            if verified is not None:
                info["verified_claims"] = verified
        return info

    def nonce_used(self, client_id: str | None, nonce: str) -> bool:
        """Whether a code of this client already carried ``nonce`` (a replayed request)."""
        with Session(self._engine) as session:
            found = select(RegionCode.code_hash).where(
                RegionCode.client_id == (client_id or ""), RegionCode.nonce == nonce
            )
            return session.exec(found).first() is not None

    def save_code(self, code: str, client: _Client, user: Account, data: dict[str, str]) -> None:
        """Store an issued code by its digest."""
        claims = data.get("claims")
        try:
            parsed = json.loads(claims) if claims else None
        except ValueError:
            parsed = None
        now = datetime.now(UTC)
        with Session(self._engine) as session:
            session.add(
                RegionCode(
                    code_hash=digest(code),
                    client_id=client.get_client_id(),
                    account_id=user.id,
                    redirect_uri=data.get("redirect_uri", ""),
                    scope=client.get_allowed_scope(data.get("scope")),
                    nonce=data.get("nonce"),
                    claims=parsed if isinstance(parsed, dict) else None,
                    code_challenge=data["code_challenge"],
                    code_challenge_method=data.get("code_challenge_method", "S256"),
                    auth_time=int(now.timestamp()),
                    expires_at=now + timedelta(seconds=CODE_TTL_S),
                )
            )
            session.commit()
        # A resident signing in to a service links its account with their region ID (ID link).
        self.links.on_sign_in(client.get_client_id(), user)

    def take_code(self, code: str, client: _Client) -> _Code:
        """Spend ``code``; a second use is refused and revokes what the first one gave
        (RFC 6749 §4.1.2), an expired code is refused."""
        code_hash = digest(code)
        now = datetime.now(UTC)
        with Session(self._engine) as session:
            row = session.get(RegionCode, code_hash)
            if row is None or row.client_id != client.get_client_id():
                raise InvalidGrantError("unknown authorization code: start the sign-in again")
            spent = session.execute(
                update(RegionCode)
                .where(col(RegionCode.code_hash) == code_hash, col(RegionCode.used_at).is_(None))
                .values(used_at=now)
            )
            session.commit()
            if spent.rowcount != 1:  # type: ignore[attr-defined]
                session.execute(
                    update(RegionToken)
                    .where(
                        col(RegionToken.code_hash) == code_hash,
                        col(RegionToken.revoked_at).is_(None),
                    )
                    .values(revoked_at=now)
                )
                session.commit()
                raise InvalidGrantError(
                    "authorization code already used (the tokens it gave are revoked): "
                    "start the sign-in again"
                )
            expires = row.expires_at.replace(tzinfo=row.expires_at.tzinfo or UTC)
            if now >= expires:
                raise InvalidGrantError(
                    f"authorization code expired (codes live {CODE_TTL_S} s): "
                    "start the sign-in again"
                )
            session.refresh(row)
        return _Code(row, self.directory.account(row.account_id))

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Store issued tokens by their digests."""
        code: _Code | None = request.authorization_code
        old: _Token | None = request.refresh_token
        user: SignedIn = request.user
        refresh = token.get("refresh_token")
        now = datetime.now(UTC)
        claims = code.row.claims if code is not None else (old.row.claims if old else None)
        with Session(self._engine) as session:
            session.add(
                RegionToken(
                    access_hash=digest(token["access_token"]),
                    refresh_hash=digest(refresh) if refresh else None,
                    client_id=request.client.get_client_id(),
                    account_id=user.account.id,
                    scope=token.get("scope", ""),
                    claims=claims,
                    code_hash=code.row.code_hash
                    if code is not None
                    else (old.row.code_hash if old else None),
                    issued_at=now,
                    expires_in=int(token["expires_in"]),
                    refresh_expires_at=now + timedelta(seconds=REFRESH_TTL_S) if refresh else None,
                )
            )
            session.commit()

    def _token_row(self, **where: str) -> RegionToken | None:
        with Session(self._engine) as session:
            query = select(RegionToken)
            for column, value in where.items():
                query = query.where(getattr(RegionToken, column) == value)
            return session.exec(query).first()

    def access_token(self, token: str) -> _Token | None:
        """The access token ``token``, if it was issued (expiry and revocation checked by
        Authlib's validator)."""
        row = self._token_row(access_hash=digest(token))
        return _Token(row, self) if row is not None else None

    def refresh_token(self, token: str) -> _Token | None:
        """The refresh token ``token`` if it may still be used, else ``InvalidGrantError``
        saying why (a rotated one is refused: it was used once already)."""
        row = self._token_row(refresh_hash=digest(token))
        if row is None:
            return None
        found = _Token(row, self)
        if found.is_revoked():
            raise InvalidGrantError(
                "refresh token already used or revoked (each is used once): sign in again"
            )
        if found.is_refresh_expired():
            raise InvalidGrantError("refresh token expired: sign in again")
        return found

    def revoke(self, access_hash: str) -> None:
        """Revoke one token pair."""
        with Session(self._engine) as session:
            session.execute(
                update(RegionToken)
                .where(col(RegionToken.access_hash) == access_hash)
                .values(revoked_at=datetime.now(UTC))
            )
            session.commit()

    def end_session(self, client_id: str, sub: str) -> None:
        """Revoke every token ``client_id`` holds for the resident it knows as ``sub``."""
        with Session(self._engine) as session:
            rows = session.exec(
                select(RegionToken).where(
                    RegionToken.client_id == client_id,
                    col(RegionToken.revoked_at).is_(None),
                )
            ).all()
            for row in rows:
                user = self.signed_in(row.account_id, client_id)
                if user is not None and user.sub == sub:
                    row.revoked_at = datetime.now(UTC)
                    session.add(row)
            session.commit()

    def refused(self, request: OAuth2Request, error: OAuth2Error) -> None:
        """Write a refusal to the audit log: which client, the error and why (never the
        resident: a refusal names nobody)."""
        client_id = request.payload.data.get("client_id") if request.payload else None
        if client_id is None and request.client is not None:
            client_id = request.client.get_client_id()
        self._audit.append_now(
            EntryKind.SIGN_IN_REFUSED,
            actor=ACTOR,
            client=str(client_id or "")[:128],
            error=str(error.error),
            reason=str(error.description or "")[:300],
        )

    def sign_in_refused(self, client_id: str, reason: str = "wrong username or password") -> None:
        """Write a refused sign-in to the audit log (never the username tried)."""
        self._audit.append_now(
            EntryKind.SIGN_IN_REFUSED,
            actor=ACTOR,
            client=client_id[:128],
            error="access_denied",
            reason=reason,
        )
