"""Access tokens: signing keys, JWKS, verification and the FastAPI dependencies."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from httpx import AsyncClient

from meshmart_common.auth import (
    JwksKeySource,
    Principal,
    Role,
    SigningKey,
    StaticKeySource,
    TokenVerifier,
    jwks_document,
)
from meshmart_common.errors import ServiceUnavailable, Unauthorized
from meshmart_common.testing import TokenMaker, assert_problem

ISSUER = "meshmart-user"
AUDIENCE = "meshmart"
JWKS_URL = "http://user.test/.well-known/jwks.json"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def access_claims(**overrides: Any) -> dict[str, Any]:
    """Claims of a valid access token of customer 1001, with ``overrides``."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "1001",
        "iat": now,
        "nbf": now,
        "exp": now + 900,
        "jti": "j1",
        "typ": "access",
        "role": "customer",
    }
    claims.update(overrides)
    return claims


def sign(key: SigningKey, claims: dict[str, Any], **headers: Any) -> str:
    """An RS256 token over ``claims`` with the kid of ``key`` unless ``headers`` says otherwise."""
    return jwt.encode(
        claims, key.private_key, algorithm="RS256", headers={"kid": key.kid, **headers}
    )


def unsigned_token(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{b64url_json(header)}.{b64url_json(claims)}."


def public_pem(key: SigningKey) -> bytes:
    return key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# --- tokens the API must refuse -------------------------------------------------


def _expired(key: SigningKey) -> str:
    past = int(time.time()) - 3600
    return sign(key, access_claims(iat=past, nbf=past, exp=past + 900))


def _not_yet_valid(key: SigningKey) -> str:
    future = int(time.time()) + 3600
    return sign(key, access_claims(iat=future, nbf=future, exp=future + 900))


def _forged(key: SigningKey) -> str:
    # A key of the attacker's, claiming to be the trusted key.
    return sign(SigningKey.generate(), access_claims(role="admin"), kid=key.kid)


def _tampered(key: SigningKey) -> str:
    header, _payload, signature = sign(key, access_claims()).split(".")
    return f"{header}.{b64url_json(access_claims(sub='1', role='admin'))}.{signature}"


def _alg_none(key: SigningKey) -> str:
    return unsigned_token({"alg": "none", "typ": "JWT", "kid": key.kid}, access_claims())


def _alg_confusion(key: SigningKey) -> str:
    # HS256 with the (public!) RSA key as the HMAC secret: a classic forgery.
    signing_input = (
        f"{b64url_json({'alg': 'HS256', 'typ': 'JWT', 'kid': key.kid})}."
        f"{b64url_json(access_claims(role='admin'))}"
    )
    mac = hmac.new(public_pem(key), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def _no_kid(key: SigningKey) -> str:
    return jwt.encode(access_claims(), key.private_key, algorithm="RS256")


REJECTED_TOKENS: dict[str, Callable[[SigningKey], str]] = {
    "garbage": lambda key: "garbage",
    "three-garbage-parts": lambda key: "not.a.jwt",
    "too-long": lambda key: sign(key, access_claims(pad="x" * 9000)),
    "expired": _expired,
    "not-yet-valid": _not_yet_valid,
    "wrong-issuer": lambda key: sign(key, access_claims(iss="someone-else")),
    "wrong-audience": lambda key: sign(key, access_claims(aud="another-app")),
    "forged-same-kid": _forged,
    "tampered-payload": _tampered,
    "alg-none": _alg_none,
    "alg-confusion-hs256": _alg_confusion,
    "missing-kid": _no_kid,
    "unknown-kid": lambda key: sign(key, access_claims(), kid="no-such-key"),
    "typ-refresh": lambda key: sign(key, access_claims(typ="refresh")),
    "typ-missing": lambda key: sign(key, {k: v for k, v in access_claims().items() if k != "typ"}),
    "role-superuser": lambda key: sign(key, access_claims(role="superuser")),
    "role-missing": lambda key: sign(
        key, {k: v for k, v in access_claims().items() if k != "role"}
    ),
    "sub-not-int": lambda key: sign(key, access_claims(sub="alice")),
    "sub-missing": lambda key: sign(key, {k: v for k, v in access_claims().items() if k != "sub"}),
    "exp-missing": lambda key: sign(key, {k: v for k, v in access_claims().items() if k != "exp"}),
}


@pytest.mark.parametrize("case", sorted(REJECTED_TOKENS))
async def test_bad_token_is_401_problem_with_bearer_challenge(
    client: AsyncClient, test_signing_key: SigningKey, case: str
) -> None:
    token = REJECTED_TOKENS[case](test_signing_key)
    response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    body = assert_problem(response, 401)
    assert body["type"] == "https://meshmart.dev/problems/unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"Authorization": ""},
    ],
    ids=["missing", "basic-scheme", "bearer-without-token", "empty"],
)
async def test_request_without_bearer_token_is_401(
    client: AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get("/api/v1/me", headers=headers)
    body = assert_problem(response, 401)
    assert body["detail"] == "A bearer access token is required."
    assert response.headers["www-authenticate"] == "Bearer"


async def test_valid_token_gives_the_principal(
    client: AsyncClient, customer_headers: dict[str, str]
) -> None:
    response = await client.get("/api/v1/me", headers=customer_headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"user_id": 1001, "role": "customer", "email": "customer@example.com"}


async def test_bearer_scheme_is_case_insensitive(client: AsyncClient, customer_token: str) -> None:
    response = await client.get("/api/v1/me", headers={"Authorization": f"bearer {customer_token}"})
    assert response.json()["user_id"] == 1001


async def test_token_within_clock_leeway_is_accepted(
    client: AsyncClient, make_token: TokenMaker
) -> None:
    # Issued 5 s "in the future" by an issuer whose clock runs a little fast.
    token = make_token(7, now=time.time() + 5)
    response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.json()["user_id"] == 7


async def test_customer_on_admin_route_is_403(
    client: AsyncClient, customer_headers: dict[str, str]
) -> None:
    response = await client.get("/api/v1/admin/ping", headers=customer_headers)
    body = assert_problem(response, 403)
    assert body["detail"] == "This action needs the admin role."


async def test_admin_on_admin_route_is_allowed(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.get("/api/v1/admin/ping", headers=admin_headers)
    assert response.json() == {"user_id": 1, "role": "admin", "email": "admin@example.com"}


async def test_anonymous_on_admin_route_is_401_not_403(client: AsyncClient) -> None:
    assert_problem(await client.get("/api/v1/admin/ping"), 401)


# --- TokenVerifier on its own ---------------------------------------------------


async def test_verifier_returns_a_principal_without_email_when_none_is_given() -> None:
    key = SigningKey.generate()
    verifier = TokenVerifier(
        StaticKeySource(jwks_document([key])), issuer=ISSUER, audience=AUDIENCE
    )
    token = key.issue(
        subject=5, role=Role.ADMIN, email=None, issuer=ISSUER, audience=AUDIENCE, ttl_seconds=60
    )
    principal = await verifier.verify(token)
    assert principal == Principal(user_id=5, role=Role.ADMIN, email=None, token=token)
    assert principal.is_admin


async def test_verifier_names_expiry_in_its_detail() -> None:
    key = SigningKey.generate()
    verifier = TokenVerifier(
        StaticKeySource(jwks_document([key])), issuer=ISSUER, audience=AUDIENCE
    )
    with pytest.raises(Unauthorized, match="expired"):
        await verifier.verify(_expired(key))


def test_principal_repr_does_not_leak_the_token() -> None:
    principal = Principal(user_id=1, role=Role.CUSTOMER, email=None, token="secret.token.value")
    assert "secret.token.value" not in repr(principal)


# --- SigningKey -----------------------------------------------------------------


class _PublicOnly:
    """Stands in for a private key: SigningKey only reads the public numbers."""

    def __init__(self, public_key: rsa.RSAPublicKey) -> None:
        self._public_key = public_key

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public_key


def test_kid_matches_the_rfc_7638_example_thumbprint() -> None:
    # RFC 7638, section 3.1: the example RSA key and its SHA-256 thumbprint.
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJEC"
        "PebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Q"
        "vzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh"
        "6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    )
    modulus = int.from_bytes(base64.urlsafe_b64decode(n + "=" * (-len(n) % 4)), "big")
    public = rsa.RSAPublicNumbers(65537, modulus).public_key()
    key = SigningKey(cast(rsa.RSAPrivateKey, _PublicOnly(public)))
    assert key.kid == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_kid_is_the_thumbprint_of_the_public_jwk() -> None:
    key = SigningKey.generate()
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.private_key.public_key()))
    canonical = '{"e":"' + jwk["e"] + '","kty":"RSA","n":"' + jwk["n"] + '"}'
    assert key.kid == b64url(hashlib.sha256(canonical.encode()).digest())
    assert key.public_jwk() == {
        "kty": "RSA",
        "n": jwk["n"],
        "e": jwk["e"],
        "kid": key.kid,
        "use": "sig",
        "alg": "RS256",
    }


def test_jwks_document_publishes_only_public_halves() -> None:
    first, second = SigningKey.generate(), SigningKey.generate()
    document = jwks_document([first, second])
    assert [k["kid"] for k in document["keys"]] == [first.kid, second.kid]
    assert all(set(k) == {"kty", "n", "e", "kid", "use", "alg"} for k in document["keys"])


def test_load_or_create_writes_a_private_file_and_reuses_it(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "jwt-signing-key.pem"
    previous_umask = os.umask(0o022)
    try:
        created = SigningKey.load_or_create(path)
    finally:
        os.umask(previous_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == created.to_pem()
    again = SigningKey.load_or_create(path)
    assert again.kid == created.kid
    assert sorted(p.name for p in path.parent.iterdir()) == ["jwt-signing-key.pem"]


def test_pem_round_trip_keeps_the_kid() -> None:
    key = SigningKey.generate()
    assert SigningKey.from_pem(key.to_pem()).kid == key.kid


def test_from_pem_refuses_a_non_rsa_key() -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="RSA"):
        SigningKey.from_pem(pem)


def test_issued_token_carries_the_access_claims() -> None:
    key = SigningKey.generate()
    token = key.issue(
        subject=42,
        role=Role.CUSTOMER,
        email="a@example.com",
        issuer=ISSUER,
        audience=AUDIENCE,
        ttl_seconds=900,
        now=1_700_000_000,
    )
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "typ": "JWT", "kid": key.kid}
    claims = jwt.decode(token, options={"verify_signature": False})
    assert {k: claims[k] for k in ("iss", "aud", "sub", "iat", "nbf", "exp", "typ", "role")} == {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "42",
        "iat": 1_700_000_000,
        "nbf": 1_700_000_000,
        "exp": 1_700_000_900,
        "typ": "access",
        "role": "customer",
    }
    assert claims["email"] == "a@example.com"


# --- StaticKeySource ------------------------------------------------------------


async def test_static_key_source_skips_unusable_entries() -> None:
    key = SigningKey.generate()
    document = {
        "keys": [
            "not-a-dict",
            {"kty": "EC", "kid": "ec"},
            {**key.public_jwk(), "kid": "enc-key", "use": "enc"},
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            {k: v for k, v in key.public_jwk().items() if k != "kid"},
            key.public_jwk(),
        ]
    }
    source = StaticKeySource(document)
    assert await source.get_key(key.kid) is not None
    for kid in ("ec", "enc-key", "broken"):
        assert await source.get_key(kid) is None


async def test_static_key_source_survives_a_document_whose_keys_is_not_a_list() -> None:
    source = StaticKeySource({"keys": 5})
    assert await source.get_key("anything") is None


# --- JwksKeySource against a JWKS endpoint --------------------------------------


class JwksEndpoint:
    """A user service's /.well-known/jwks.json: publishes keys, counts fetches, can fail."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys = list(keys)
        self.fetches = 0
        self.failure: str | None = None  # None, "500", "refused", "not-json", "no-keys"

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.url == JWKS_URL
        self.fetches += 1
        if self.failure == "refused":
            raise httpx.ConnectError("connection refused", request=request)
        if self.failure == "500":
            return httpx.Response(500, text="oops")
        if self.failure == "not-json":
            return httpx.Response(200, text="<html>maintenance</html>")
        if self.failure == "no-keys":
            return httpx.Response(200, json={"keys": 5})
        return httpx.Response(200, json=jwks_document(self.keys))

    def client(self) -> AsyncClient:
        return AsyncClient(transport=httpx.MockTransport(self.handle))


async def test_jwks_is_fetched_once_and_cached() -> None:
    key = SigningKey.generate()
    endpoint = JwksEndpoint(key)
    async with endpoint.client() as http:
        source = JwksKeySource(JWKS_URL, ttl=300, client=http)
        found = [await source.get_key(key.kid) for _ in range(20)]
    assert all(k is not None for k in found)
    assert endpoint.fetches == 1


async def test_jwks_is_refetched_when_the_cache_is_stale() -> None:
    key = SigningKey.generate()
    endpoint = JwksEndpoint(key)
    async with endpoint.client() as http:
        source = JwksKeySource(JWKS_URL, ttl=0.05, min_refresh_interval=0, client=http)
        await source.get_key(key.kid)
        await asyncio.sleep(0.1)
        assert await source.get_key(key.kid) is not None
    assert endpoint.fetches == 2


async def test_unknown_kid_refreshes_so_a_rotated_key_is_trusted() -> None:
    old, new = SigningKey.generate(), SigningKey.generate()
    endpoint = JwksEndpoint(old)
    async with endpoint.client() as http:
        source = JwksKeySource(JWKS_URL, ttl=300, min_refresh_interval=0, client=http)
        verifier = TokenVerifier(source, issuer=ISSUER, audience=AUDIENCE)
        assert (await verifier.verify(sign(old, access_claims()))).user_id == 1001
        endpoint.keys = [new, old]  # the issuer rotates
        principal = await verifier.verify(sign(new, access_claims(sub="2002")))
    assert principal.user_id == 2002
    assert endpoint.fetches == 2


async def test_forged_kids_refresh_at_most_once_per_interval() -> None:
    key = SigningKey.generate()
    endpoint = JwksEndpoint(key)
    async with endpoint.client() as http:
        source = JwksKeySource(JWKS_URL, ttl=300, min_refresh_interval=0.5, client=http)
        assert await source.get_key(key.kid) is not None
        found = await asyncio.gather(*(source.get_key(f"forged-{i}") for i in range(100)))
        assert found == [None] * 100
        assert endpoint.fetches == 1
        await asyncio.sleep(0.6)
        found = await asyncio.gather(*(source.get_key(f"forged-again-{i}") for i in range(100)))
        assert found == [None] * 100
    assert endpoint.fetches == 2


async def test_concurrent_cold_start_fetches_once() -> None:
    key = SigningKey.generate()
    endpoint = JwksEndpoint(key)
    async with endpoint.client() as http:
        source = JwksKeySource(JWKS_URL, client=http)
        found = await asyncio.gather(*(source.get_key(key.kid) for _ in range(50)))
    assert all(k is not None for k in found)
    assert endpoint.fetches == 1


@pytest.mark.parametrize("failure", ["500", "refused", "not-json", "no-keys"])
async def test_last_keys_are_kept_when_the_endpoint_fails(failure: str) -> None:
    key = SigningKey.generate()
    endpoint = JwksEndpoint(key)
    async with endpoint.client() as http:
        source = JwksKeySource(JWKS_URL, ttl=0, min_refresh_interval=0, client=http)
        verifier = TokenVerifier(source, issuer=ISSUER, audience=AUDIENCE)
        await verifier.verify(sign(key, access_claims()))
        endpoint.failure = failure
        principal = await verifier.verify(sign(key, access_claims(sub="3")))
    assert principal.user_id == 3
    assert endpoint.fetches == 2


@pytest.mark.parametrize("failure", ["500", "refused", "not-json", "no-keys"])
async def test_no_keys_ever_fetched_is_service_unavailable(failure: str) -> None:
    endpoint = JwksEndpoint(SigningKey.generate())
    endpoint.failure = failure
    async with endpoint.client() as http:
        source = JwksKeySource(JWKS_URL, client=http)
        with pytest.raises(ServiceUnavailable) as raised:
            await source.get_key("any")
    assert raised.value.status == 503


async def test_jwks_endpoint_down_at_start_makes_authenticated_routes_503(
    app: FastAPI, client: AsyncClient, customer_headers: dict[str, str]
) -> None:
    endpoint = JwksEndpoint()
    endpoint.failure = "refused"
    async with endpoint.client() as http:
        app.state.token_verifier = TokenVerifier(
            JwksKeySource(JWKS_URL, client=http), issuer=ISSUER, audience=AUDIENCE
        )
        response = await client.get("/api/v1/me", headers=customer_headers)
    body = assert_problem(response, 503)
    assert body["detail"] == "The token signing keys cannot be fetched now."


async def test_app_verifies_tokens_against_a_served_jwks(
    app: FastAPI,
    client: AsyncClient,
    test_signing_key: SigningKey,
    customer_headers: dict[str, str],
) -> None:
    endpoint = JwksEndpoint(test_signing_key)
    async with endpoint.client() as http:
        app.state.token_verifier = TokenVerifier(
            JwksKeySource(JWKS_URL, client=http), issuer=ISSUER, audience=AUDIENCE
        )
        first = await client.get("/api/v1/me", headers=customer_headers)
        second = await client.get("/api/v1/me", headers=customer_headers)
    assert first.json()["user_id"] == second.json()["user_id"] == 1001
    assert endpoint.fetches == 1


async def test_endpoint_down_at_cold_start_is_asked_once_per_interval() -> None:
    key = SigningKey.generate()
    endpoint = JwksEndpoint(key)
    endpoint.failure = "refused"
    async with endpoint.client() as http:
        source = JwksKeySource(JWKS_URL, min_refresh_interval=0.3, client=http)
        results = await asyncio.gather(
            *(source.get_key(key.kid) for _ in range(20)), return_exceptions=True
        )
        assert all(isinstance(r, ServiceUnavailable) for r in results)
        assert endpoint.fetches == 1
        endpoint.failure = None  # the user service comes up
        await asyncio.sleep(0.35)
        assert await source.get_key(key.kid) is not None
    assert endpoint.fetches == 2
