"""The operator's credential until the identity issue brings JWT roles: one bearer token.

The token comes from ``TSUNAGU_ADMIN_TOKEN``, or is generated at first run into
``$TSUNAGU_DATA_DIR/admin-token`` (mode 0600); it is never in the repository.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from broker.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="The operator's admin token")


def admin_token(settings: Settings) -> str:
    """The admin token: from the environment, or generated once into the data directory."""
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value()
    path: Path = settings.data_dir / "admin-token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Refuse (401) a request without the admin bearer token."""
    expected: str = request.app.state.admin_token
    if credentials is None:
        raise HTTPException(401, "this operation needs the admin bearer token")
    if not secrets.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise HTTPException(401, "the bearer token is not the admin token")


AdminOnly = Depends(require_admin)
