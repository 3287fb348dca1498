"""Optional API keys: `Authorization: Bearer <key>` or `X-API-Key: <key>`.

The check is a route dependency and the protected routes take no body parameter, so it runs before
any byte of the body is read (FastAPI reads declared bodies before it solves dependencies).
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ..settings import Settings

_BEARER = HTTPBearer(auto_error=False, description="one of AEGIS_API_KEYS")
_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="one of AEGIS_API_KEYS")
# The body of a refused request is never read: closing the connection spares the server draining it.
REFUSED_HEADERS = {"WWW-Authenticate": "Bearer", "Connection": "close"}


async def require_api_key(request: Request,  # async: no thread hop for a dict lookup
                          bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
                          header: Annotated[str | None, Security(_HEADER)]) -> None:
    keys = [k.get_secret_value() for k in request.app.state.settings.api_keys]
    given = [g for g in (header, bearer.credentials if bearer else None) if g]
    if any(hmac.compare_digest(g.encode(), k.encode()) for g in given for k in keys):
        return
    raise HTTPException(status_code=401, detail="missing or invalid API key", headers=REFUSED_HEADERS)


def api_key_dependencies(settings: Settings) -> list:
    """The dependencies of protected routes: none without keys, so the OpenAPI document claims no security."""
    return [Depends(require_api_key)] if settings.api_keys else []
