"""JWT access tokens: RS256 signing keys, JWKS, verification and FastAPI dependencies.

The user service signs tokens with :class:`SigningKey`; every service verifies
them with :class:`TokenVerifier` against a key source, usually the user
service's JWKS (cached; refreshed when a token names an unknown key id).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Protocol

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from meshmart_common.errors import Forbidden, ServiceUnavailable, Unauthorized

ALGORITHM = "RS256"
ACCESS_TOKEN_TYPE = "access"  # noqa: S105 - a claim value, not a secret


class Role(StrEnum):
    """What a caller may do."""

    CUSTOMER = "customer"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller of a request."""

    user_id: int
    role: Role
    email: str | None
    # Kept out of repr so that logging a principal never writes a bearer token.
    token: str = field(repr=False)

    @property
    def is_admin(self) -> bool:
        """True for the admin role."""
        return self.role is Role.ADMIN


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class SigningKey:
    """An RSA private key with its RFC 7638 thumbprint as key id."""

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        self.private_key = private_key
        numbers = private_key.public_key().public_numbers()
        self._public_jwk = {
            "e": _b64url_uint(numbers.e),
            "kty": "RSA",
            "n": _b64url_uint(numbers.n),
        }
        canonical = json.dumps(self._public_jwk, separators=(",", ":"), sort_keys=True)
        digest = hashlib.sha256(canonical.encode("ascii")).digest()
        self.kid = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    @classmethod
    def generate(cls, bits: int = 2048) -> SigningKey:
        """A fresh key (development and tests)."""
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=bits))

    @classmethod
    def from_pem(cls, pem: bytes) -> SigningKey:
        """Load a PEM-encoded RSA private key."""
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("the JWT signing key must be an RSA private key")
        return cls(key)

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKey:
        """Read the key at ``path``, generating it (mode 0600) when missing."""
        if path.exists():
            return cls.from_pem(path.read_bytes())
        key = cls.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
        # Created with mode 0600 from the start: write-then-chmod would leave the
        # private key readable by everyone for a moment.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.to_pem())
        try:
            # Two processes starting together must end up with the same key:
            # the hard link succeeds for exactly one of them.
            path.hardlink_to(tmp)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
        return cls.from_pem(path.read_bytes())

    def to_pem(self) -> bytes:
        """PKCS#8 PEM of the private key."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK (with kid, use and alg)."""
        return {**self._public_jwk, "kid": self.kid, "use": "sig", "alg": ALGORITHM}

    def issue(
        self,
        *,
        subject: int,
        role: Role,
        email: str | None,
        issuer: str,
        audience: str,
        ttl_seconds: int,
        now: float | None = None,
    ) -> str:
        """Sign an access token for ``subject``."""
        issued = int(now if now is not None else time.time())
        claims: dict[str, Any] = {
            "iss": issuer,
            "aud": audience,
            "sub": str(subject),
            "iat": issued,
            "nbf": issued,
            "exp": issued + ttl_seconds,
            "jti": uuid.uuid4().hex,
            "typ": ACCESS_TOKEN_TYPE,
            "role": role.value,
        }
        if email is not None:
            claims["email"] = email
        return jwt.encode(claims, self.private_key, algorithm=ALGORITHM, headers={"kid": self.kid})


def jwks_document(keys: list[SigningKey]) -> dict[str, list[dict[str, str]]]:
    """A JWKS document (RFC 7517) with the public half of ``keys``."""
    return {"keys": [key.public_jwk() for key in keys]}


class KeySource(Protocol):
    """Where a verifier finds the public key for a key id."""

    async def get_key(self, kid: str) -> Any | None:
        """The public key for ``kid``, or None when no such key exists."""
        ...


class StaticKeySource:
    """Keys known up front (the user service's own keys, tests)."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self._keys = _parse_jwks(jwks)

    async def get_key(self, kid: str) -> Any | None:
        """The public key for ``kid``, or None."""
        return self._keys.get(kid)


def _parse_jwks(jwks: Mapping[str, Any]) -> dict[str, Any]:
    keys: dict[str, Any] = {}
    entries = jwks.get("keys")
    if not isinstance(entries, list):
        return keys
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") != "RSA" or "kid" not in entry:
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            keys[str(entry["kid"])] = jwt.PyJWK(entry, algorithm=ALGORITHM).key
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            # PyJWK reports a bad modulus or exponent as InvalidKeyError, which
            # is a PyJWTError but not a PyJWKError: one bad entry must not
            # make the whole document unusable.
            continue
    return keys


class JwksKeySource:
    """The JWKS at a URL, cached for ``ttl`` seconds.

    A token naming an unknown key id triggers a refresh (at most once every
    ``min_refresh_interval`` seconds, so forged kids cannot hammer the issuer).
    """

    def __init__(
        self,
        url: str,
        *,
        ttl: float = 300.0,
        min_refresh_interval: float = 5.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url
        self.ttl = ttl
        self.min_refresh_interval = min_refresh_interval
        self._client = client
        self._keys: dict[str, Any] = {}
        self._fetched_at = 0.0
        self._attempted_at = -1e9
        self._lock = asyncio.Lock()

    async def _fetch(self) -> None:
        self._attempted_at = time.monotonic()
        try:
            if self._client is not None:
                response = await self._client.get(self.url, timeout=5.0)
            else:
                async with httpx.AsyncClient() as client:
                    response = await client.get(self.url, timeout=5.0)
            response.raise_for_status()
            document = response.json()
            keys = _parse_jwks(document if isinstance(document, dict) else {})
            if not keys:
                # A document without one usable key is a broken endpoint, not
                # a revocation of every key: treat it like a failed fetch.
                raise ValueError("the JWKS document has no usable RS256 signing key")
        except (httpx.HTTPError, ValueError) as exc:
            if not self._keys:
                raise ServiceUnavailable("The token signing keys cannot be fetched now.") from exc
            return  # keep serving the last known keys
        self._keys = keys
        self._fetched_at = time.monotonic()

    async def get_key(self, kid: str) -> Any | None:
        """The public key for ``kid``; refreshes a stale cache or an unknown kid."""
        now = time.monotonic()
        stale = now - self._fetched_at > self.ttl
        if kid in self._keys and not stale:
            return self._keys[kid]
        async with self._lock:
            now = time.monotonic()
            if stale or kid not in self._keys:
                if now - self._attempted_at >= self.min_refresh_interval:
                    await self._fetch()
                elif not self._keys:
                    # The last attempt failed a moment ago: answer at once rather
                    # than queue every request behind another slow fetch.
                    raise ServiceUnavailable("The token signing keys cannot be fetched now.")
        return self._keys.get(kid)


class TokenVerifier:
    """Verifies RS256 access tokens: signature, kid, exp, nbf, issuer, audience, claims."""

    def __init__(self, keys: KeySource, *, issuer: str, audience: str, leeway: int = 10) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway

    async def verify(self, token: str) -> Principal:
        """The Principal of a valid token; Unauthorized for anything else."""
        if len(token) > 8192:
            raise Unauthorized("The access token is too long.")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized("The access token is malformed.") from exc
        if header.get("alg") != ALGORITHM:
            raise Unauthorized("The access token must be signed with RS256.")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > 256:
            raise Unauthorized("The access token names no signing key.")
        key = await self.keys.get_key(kid)
        if key is None:
            raise Unauthorized("The access token was signed by an unknown key.")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("The access token has expired.") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("The access token is invalid.") from exc
        if claims.get("typ") != ACCESS_TOKEN_TYPE:
            raise Unauthorized("The token is not an access token.")
        try:
            user_id = int(claims["sub"])
            role = Role(str(claims.get("role")))
        except (ValueError, TypeError, KeyError) as exc:
            raise Unauthorized("The access token carries invalid claims.") from exc
        email = claims.get("email")
        return Principal(
            user_id=user_id, role=role, email=email if isinstance(email, str) else None, token=token
        )


_bearer = HTTPBearer(auto_error=False, description="An access token from POST /api/v1/auth/login")


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The verified caller; 401 without a valid bearer token."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized("A bearer access token is required.")
    verifier: TokenVerifier = request.app.state.token_verifier
    principal = await verifier.verify(credentials.credentials)
    request.state.principal = principal
    return principal


async def admin_principal(
    principal: Annotated[Principal, Depends(current_principal)],
) -> Principal:
    """The verified caller, who must be an admin; 403 otherwise."""
    if not principal.is_admin:
        raise Forbidden("This action needs the admin role.")
    return principal


CurrentUser = Annotated[Principal, Depends(current_principal)]
AdminUser = Annotated[Principal, Depends(admin_principal)]
