"""Who is calling: the bearer token verified into a principal, and role checks (401 / 403)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import anyio.to_thread
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from broker.api.problems import ProblemError
from broker.api.services import services_of
from broker.auth.errors import TokenRejectedError
from broker.auth.principals import Principal, Role

__all__ = [
    "Principal",
    "Role",
    "authenticate",
    "bearer_token",
    "check_role",
    "current_principal",
    "require",
]

bearer = HTTPBearer(
    auto_error=False,
    description="A JWT from the region's OIDC provider (or `tsunagu token issue` when embedded)",
)


#: Requests waiting for the identity provider's keys: a few threads, apart from the others.
_KEY_WAITERS = anyio.CapacityLimiter(4)


def _unauthorized(detail: str) -> ProblemError:
    # RFC 6750: a 401 names the scheme, and why the token failed.
    quoted = detail.replace('"', "'")
    return ProblemError(
        401,
        "unauthorized",
        detail,
        headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{quoted}"'},
    )


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The verified caller; 401 when the token is missing or not valid."""
    return await authenticate(request, credentials.credentials if credentials else None)


async def authenticate(request: Request, token: str | None) -> Principal:
    """The principal of a bearer ``token``; 401 when there is none or it is not valid."""
    if not token:
        raise ProblemError(
            401,
            "unauthorized",
            "this operation needs a bearer token (Authorization: Bearer <JWT>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    verifier = services_of(request.app).verifier
    # A token seen before is answered on the event loop; a new one is verified in a worker
    # thread. One whose key must first come from the identity provider waits in a pool of
    # its own, so a slow provider never takes the threads health checks and reads run on.
    known = verifier.cached(token)
    if known is not None:
        return known
    limiter = None if verifier.keys_at_hand(token) else _KEY_WAITERS
    try:
        return await anyio.to_thread.run_sync(verifier.verify, token, limiter=limiter)
    except TokenRejectedError as exc:
        raise _unauthorized(exc.detail) from None


def bearer_token(request: Request) -> str | None:
    """The bearer token of the Authorization header, if it carries one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def check_role(principal: Principal, allowed: frozenset[Role]) -> Principal:
    """``principal`` if its role is one of ``allowed``; 403 otherwise."""
    if principal.role not in allowed:
        names = " or ".join(sorted(r.value for r in allowed))
        raise ProblemError(
            403,
            "forbidden-role",
            f"this operation is for the {names} role; the token's role is {principal.role}",
        )
    return principal


def require(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency admitting only ``roles``: 403 for a valid token of another role."""
    allowed = frozenset(roles)

    async def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        return check_role(principal, allowed)

    return check


AsAdmin = Annotated[Principal, Depends(require(Role.ADMIN))]
AsConnector = Annotated[Principal, Depends(require(Role.CONNECTOR))]
AsPartner = Annotated[Principal, Depends(require(Role.PARTNER))]
AsResident = Annotated[Principal, Depends(require(Role.RESIDENT))]
AsAuditor = Annotated[Principal, Depends(require(Role.AUDITOR))]
