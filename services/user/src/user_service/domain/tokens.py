"""Access tokens (signed JWTs) and refresh tokens (opaque, stored hashed)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from meshmart_common.auth import Role, SigningKey

MAX_REFRESH_TOKEN_LENGTH = 256


@dataclass(frozen=True, slots=True)
class TokenPair:
    """What a login or refresh returns."""

    access_token: str
    expires_in: int
    refresh_token: str


@dataclass(frozen=True, slots=True)
class NewRefreshToken:
    """A refresh token: the secret for the client, the hash for the database."""

    secret: str
    token_hash: str
    expires_at: datetime


def hash_refresh_token(secret: str) -> str:
    """SHA-256 (hex) of a refresh token; the token is random, so no salt or slow hash is needed."""
    return hashlib.sha256(secret.encode("utf-8", errors="surrogatepass")).hexdigest()


def new_family_id() -> str:
    """An id for a new login session (refresh token family)."""
    return uuid.uuid4().hex


class TokenIssuer:
    """Signs access tokens and mints refresh tokens with the configured lifetimes."""

    def __init__(
        self,
        key: SigningKey,
        *,
        issuer: str,
        audience: str,
        access_ttl_seconds: int,
        refresh_ttl_seconds: int,
    ) -> None:
        self.key = key
        self.issuer = issuer
        self.audience = audience
        self.access_ttl_seconds = access_ttl_seconds
        self.refresh_ttl = timedelta(seconds=refresh_ttl_seconds)

    def access_token(self, *, user_id: int, role: Role, email: str, now: datetime) -> str:
        """A signed access token for the user."""
        return self.key.issue(
            subject=user_id,
            role=role,
            email=email,
            issuer=self.issuer,
            audience=self.audience,
            ttl_seconds=self.access_ttl_seconds,
            now=now.timestamp(),
        )

    def refresh_token(self, now: datetime) -> NewRefreshToken:
        """A fresh random refresh token."""
        secret = secrets.token_urlsafe(32)
        return NewRefreshToken(
            secret=secret,
            token_hash=hash_refresh_token(secret),
            expires_at=now + self.refresh_ttl,
        )
