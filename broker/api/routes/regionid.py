"""The region ID's HTTP endpoints under its issuer path (``/regionid``): discovery, keys,
the sign-in form, token, userinfo and logout, and the link codes service companies hand
their customers (``/regionid/link-codes``, authenticated with the client's credentials).
Only translation: Starlette requests become Authlib's (``ProviderRequest``), the provider's
answers become responses. OAuth answers its errors in RFC 6749's shape, not RFC 9457, so
these stay out of the OpenAPI document (the link codes answer RFC 9457 problems).
"""

from __future__ import annotations

import html
import math
from typing import Annotated, Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers

from broker.api.deps import RegionIdDep, ServicesDep
from broker.regionid import SignInError
from broker.regionid.errors import ClientAuthenticationError
from broker.regionid.links import MAX_CUSTOMER
from broker.regionid.server import Answer, ProviderRequest, RegionId

PREFIX = "/regionid"
#: The largest form a client or browser posts (a sign-in, a token request).
MAX_BODY = 16 * 1024
router = APIRouter(prefix=PREFIX, include_in_schema=False)

# The sign-in page posts to itself and is then redirected to the client: no form-action
# limit (Chromium applies it to that redirect too), nothing else from anywhere.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "base-uri 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _request(provider: RegionId, request: Request, pairs: list[tuple[str, str]]) -> ProviderRequest:
    # The issuer's own URL, not the one the request came in on: behind a TLS proxy the
    # latter says http.
    uri = provider.issuer + request.url.path.removeprefix(PREFIX)
    return ProviderRequest(request.method, uri, pairs, request.headers)  # case-insensitive


async def _form(request: Request) -> list[tuple[str, str]]:
    body = (await request.body()).decode("utf-8", errors="replace")
    return parse_qsl(body, keep_blank_values=True)


def _response(answer: Answer) -> Response:
    headers = dict(answer.headers)
    if isinstance(answer.body, dict):
        headers["Content-Type"] = "application/json"
        return Response(orjson.dumps(answer.body), answer.status, headers)
    return Response(answer.body or b"", answer.status, headers)


def _sign_in_page(query: str, client_name: str, message: str = "") -> str:
    notice = f'<p role="alert" style="color:#b00">{html.escape(message)}</p>' if message else ""
    action = html.escape(f"{PREFIX}/authorize?{query}", quote=True)
    return f"""<!doctype html>
<html lang="ja"><head><meta charset="utf-8"><title>地域ID サインイン / Region ID sign-in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family:sans-serif;max-width:28em;margin:3em auto">
<h1>地域ID / Region ID</h1>
<p>{html.escape(client_name)} へサインイン / Sign in to {html.escape(client_name)}</p>
<p>サインインすると、{html.escape(client_name)} のアカウントがあなたの地域IDと連携されます。
連携はあなたのページでいつでも解除できます。<br>Signing in links your
{html.escape(client_name)} account with your region ID; you can end the link on your page at
any time.</p>
{notice}
<form method="post" action="{action}">
<p><label>ユーザー名 / Username<br>
<input name="username" autocomplete="username" required></label></p>
<p><label>パスワード / Password<br><input name="password" type="password"
 autocomplete="current-password" required></label></p>
<p><button type="submit">サインイン / Sign in</button></p>
</form></body></html>"""


def _client_name(provider: RegionId, request: Request) -> str:
    client = provider.directory.client(request.query_params.get("client_id", ""))
    return client.name if client is not None else ""


@router.get("/.well-known/openid-configuration")
def discovery(provider: RegionIdDep) -> dict[str, Any]:
    """The OpenID Provider Metadata."""
    return provider.discovery()


@router.get("/jwks.json")
def jwks(provider: RegionIdDep) -> dict[str, Any]:
    """The keys ID tokens are signed with."""
    return provider.jwks()


@router.get("/authorize")
async def authorize_form(request: Request, provider: RegionIdDep) -> Response:
    """Check the authorization request, then show the sign-in form."""
    pairs = request.query_params.multi_items()
    refusal = await run_in_threadpool(
        provider.authorization_request, _request(provider, request, pairs)
    )
    if refusal is not None:
        return _response(refusal)
    name = await run_in_threadpool(_client_name, provider, request)
    return HTMLResponse(_sign_in_page(request.url.query, name), headers=_PAGE_HEADERS)


@router.post("/authorize")
async def authorize(request: Request, provider: RegionIdDep, services: ServicesDep) -> Response:
    """Sign the resident in and redirect to the client with a code (the OAuth parameters are
    the query's, the credentials the form's)."""
    form = dict(await _form(request))
    oauth = _request(provider, request, request.query_params.multi_items())
    refusal = await run_in_threadpool(provider.authorization_request, oauth)
    if refusal is not None:
        return _response(refusal)
    # Password guessing is slowed per account name, whoever tries and from wherever.
    account_name = form.get("username", "").strip().casefold()
    wait = services.sign_in_buckets.take(account_name)
    if wait > 0:
        retry = max(1, math.ceil(wait))
        await run_in_threadpool(
            provider.sign_in_refused,
            request.query_params.get("client_id", ""),
            "too many sign-in attempts for one account name",
        )
        name = await run_in_threadpool(_client_name, provider, request)
        message = f"サインインの試行が多すぎます。{retry} 秒後にもう一度お試しください。"
        page = _sign_in_page(request.url.query, name, message)
        headers = {**_PAGE_HEADERS, "Retry-After": str(retry)}
        return HTMLResponse(page, status_code=429, headers=headers)
    try:
        account = await run_in_threadpool(
            provider.directory.sign_in, form.get("username", ""), form.get("password", "")
        )
    except SignInError as exc:
        await run_in_threadpool(provider.sign_in_refused, request.query_params.get("client_id", ""))
        name = await run_in_threadpool(_client_name, provider, request)
        page = _sign_in_page(request.url.query, name, str(exc))
        return HTMLResponse(page, status_code=401, headers=_PAGE_HEADERS)
    answer = await run_in_threadpool(provider.authorize, oauth, account)
    return _response(answer)


@router.post("/token")
async def token(request: Request, provider: RegionIdDep) -> Response:
    """The token endpoint (authorization code and refresh token grants)."""
    oauth = _request(provider, request, await _form(request))
    return _response(await run_in_threadpool(provider.token, oauth))


@router.api_route("/userinfo", methods=["GET", "POST"])
async def userinfo(request: Request, provider: RegionIdDep) -> Response:
    """The claims about the signed-in resident the access token may see."""
    oauth = _request(provider, request, request.query_params.multi_items())
    if request.method == "POST" and "authorization" not in request.headers:
        # RFC 6750 §2.2: the token may come as a form field; Authlib reads the header (§2.1).
        token = dict(await _form(request)).get("access_token")
        if token:
            headers = Headers({**request.headers, "authorization": f"Bearer {token}"})
            oauth = ProviderRequest(request.method, oauth.uri, [], headers)
    return _response(await run_in_threadpool(provider.userinfo, oauth))


@router.api_route("/logout", methods=["GET", "POST"])
async def logout(request: Request, provider: RegionIdDep) -> Response:
    """RP-initiated logout: end the client's tokens, then redirect back or say so."""
    pairs = request.query_params.multi_items()
    if request.method == "POST":
        pairs = [*pairs, *await _form(request)]
    answer = await run_in_threadpool(provider.logout, _request(provider, request, pairs))
    if answer is not None:
        return _response(answer)
    page = (
        "<!doctype html><html lang=ja><meta charset=utf-8><title>Signed out</title>"
        "<p>サインアウトしました / You are signed out.</p></html>"
    )
    return HTMLResponse(page, headers=_PAGE_HEADERS)


# -- ID link: link codes, for a service company's back office ----------------------------------

_basic = HTTPBasic(auto_error=False, realm="regionid")


async def _firm(
    provider: RegionIdDep,
    credentials: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
) -> str:
    """The client id of the service company these HTTP Basic credentials authenticate."""
    if credentials is None:
        raise ClientAuthenticationError(
            "no client credentials: send your client_id and client_secret as HTTP Basic "
            "credentials (curl -u CLIENT_ID:CLIENT_SECRET)"
        )
    client = await run_in_threadpool(
        provider.directory.authenticate_client, credentials.username, credentials.password
    )
    return client.client_id


FirmDep = Annotated[str, Depends(_firm)]


class LinkCodeIn(BaseModel):
    """The customer a link code is for."""

    customer: str = Field(
        min_length=1,
        max_length=MAX_CUSTOMER,
        description="Your own customer number (kept only as a digest).",
    )


class LinkCodeOut(BaseModel):
    """A link code to hand the customer, and when it stops working."""

    code: str
    expires_at: str


class LinkCodeStateOut(BaseModel):
    """What became of a link code; ``sub`` once the resident has entered it."""

    status: str = Field(description="waiting, linked, unlinked or expired")
    expires_at: str
    sub: str | None = None
    linked_at: str | None = None


@router.post("/link-codes", status_code=201)
async def issue_link_code(body: LinkCodeIn, provider: RegionIdDep, firm: FirmDep) -> LinkCodeOut:
    """A one-time link code for one of the firm's customers to enter on their page."""
    issued = await run_in_threadpool(provider.links.issue_code, firm, body.customer)
    return LinkCodeOut(code=issued.code, expires_at=issued.expires_at.isoformat())


@router.get("/link-codes/{code}")
async def link_code_state(code: str, provider: RegionIdDep, firm: FirmDep) -> LinkCodeStateOut:
    """Whether the customer entered the code yet, and then the subject the firm knows them
    by (to keep beside its customer number and publish under)."""
    state = await run_in_threadpool(provider.links.code_state, firm, code)
    return LinkCodeStateOut(
        status=state.status,
        expires_at=state.expires_at.isoformat(),
        sub=state.subject,
        linked_at=state.linked_at.isoformat() if state.linked_at is not None else None,
    )
