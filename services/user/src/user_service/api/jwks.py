"""Route /.well-known/jwks.json: the public keys that verify this service's tokens."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

router = APIRouter(tags=["keys"])


@router.get("/.well-known/jwks.json")
async def jwks(request: Request, response: Response) -> dict[str, Any]:
    """The JSON Web Key Set other services verify access tokens with."""
    # Verifiers refetch on an unknown kid anyway; a short cache spares the service.
    response.headers["Cache-Control"] = "public, max-age=300"
    document: dict[str, Any] = request.app.state.jwks
    return document
