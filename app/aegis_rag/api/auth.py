"""Optional API keys: `Authorization: Bearer <key>` or `X-API-Key: <key>`."""

import hmac

from fastapi import HTTPException, Request


async def require_api_key(request: Request) -> None:  # async: no thread hop for a dict lookup
    keys = request.app.state.settings.api_keys
    if not keys:
        return
    given = request.headers.get("x-api-key")
    auth = request.headers.get("authorization", "")
    if not given and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    if given and any(hmac.compare_digest(given, k.get_secret_value()) for k in keys):
        return
    raise HTTPException(status_code=401, detail="missing or invalid API key",
                        headers={"WWW-Authenticate": "Bearer"})
