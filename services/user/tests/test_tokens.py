"""Refresh token rotation, reuse detection, logout, access token checks and the JWKS."""

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
from httpx import AsyncClient

from meshmart_common.auth import Role, SigningKey, StaticKeySource, TokenVerifier
from meshmart_common.testing import assert_problem
from user_service.domain.errors import INVALID_REFRESH_TOKEN

NewAccount = Callable[..., Awaitable[dict[str, Any]]]
TokenMaker = Callable[..., str]
REFRESH = "/api/v1/auth/refresh"
ME = "/api/v1/users/me"


async def refresh(client: AsyncClient, token: str) -> Any:
    return await client.post(REFRESH, json={"refresh_token": token})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_refresh_returns_a_new_pair_and_the_new_access_token_works(
    client: AsyncClient, new_account: NewAccount
) -> None:
    account = await new_account("alice@example.com")
    response = await refresh(client, account["refresh_token"])
    assert response.status_code == 200
    pair = response.json()
    assert pair["token_type"] == "bearer"
    assert pair["refresh_token"] != account["refresh_token"]
    me = await client.get(ME, headers=bearer(pair["access_token"]))
    assert me.json()["email"] == "alice@example.com"
    # The rotated token keeps working for the next rotation.
    assert (await refresh(client, pair["refresh_token"])).status_code == 200


async def test_reusing_a_refresh_token_revokes_the_whole_family(
    client: AsyncClient, new_account: NewAccount
) -> None:
    account = await new_account("bob@example.com")
    first = account["refresh_token"]
    second = (await refresh(client, first)).json()["refresh_token"]
    third = (await refresh(client, second)).json()["refresh_token"]

    reuse = assert_problem(await refresh(client, first), 401)
    assert reuse["detail"] == INVALID_REFRESH_TOKEN
    # The newest descendant dies with the family, so a thief's copy is useless too.
    assert_problem(await refresh(client, third), 401)


async def test_reuse_revokes_only_that_login_session(
    client: AsyncClient, new_account: NewAccount
) -> None:
    account = await new_account("carol@example.com")
    other_session = (
        await client.post(
            "/api/v1/auth/login",
            json={"email": "carol@example.com", "password": account["password"]},
        )
    ).json()["refresh_token"]
    await refresh(client, account["refresh_token"])
    assert_problem(await refresh(client, account["refresh_token"]), 401)
    assert (await refresh(client, other_session)).status_code == 200


async def test_unknown_and_expired_refresh_tokens_are_refused(
    client: AsyncClient, new_account: NewAccount, advance_clock: Callable[[float], None]
) -> None:
    assert_problem(await refresh(client, "not-a-token"), 401)
    account = await new_account("dave@example.com")
    advance_clock(30 * 86_400 + 1)
    body = assert_problem(await refresh(client, account["refresh_token"]), 401)
    assert body["detail"] == INVALID_REFRESH_TOKEN


async def test_logout_revokes_the_family_and_is_idempotent(
    client: AsyncClient, new_account: NewAccount
) -> None:
    account = await new_account("erin@example.com")
    rotated = (await refresh(client, account["refresh_token"])).json()["refresh_token"]
    logout = await client.post("/api/v1/auth/logout", json={"refresh_token": rotated})
    assert logout.status_code == 204
    assert logout.content == b""
    assert_problem(await refresh(client, rotated), 401)
    again = await client.post("/api/v1/auth/logout", json={"refresh_token": rotated})
    assert again.status_code == 204
    unknown = await client.post("/api/v1/auth/logout", json={"refresh_token": "unknown"})
    assert unknown.status_code == 204


async def test_refresh_token_of_wrong_shape_is_a_422_problem(client: AsyncClient) -> None:
    assert_problem(await refresh(client, ""), 422, field="refresh_token")
    assert_problem(await refresh(client, "x" * 10_000), 422, field="refresh_token")
    assert_problem(await client.post(REFRESH, json={"refresh_token": 7}), 422)


async def test_an_expired_access_token_is_refused(
    client: AsyncClient, new_account: NewAccount, make_token: TokenMaker
) -> None:
    account = await new_account("frank@example.com")
    expired = make_token(account["id"], Role.CUSTOMER, ttl=-100)
    body = assert_problem(await client.get(ME, headers=bearer(expired)), 401)
    assert body["detail"] == "The access token has expired."


async def test_a_token_signed_by_another_key_with_our_kid_is_refused(
    client: AsyncClient, new_account: NewAccount, test_signing_key: SigningKey
) -> None:
    account = await new_account("gina@example.com")
    impostor = SigningKey.generate()
    impostor.kid = test_signing_key.kid
    forged = impostor.issue(
        subject=account["id"],
        role=Role.ADMIN,
        email=account["email"],
        issuer="meshmart-user",
        audience="meshmart",
        ttl_seconds=900,
    )
    body = assert_problem(await client.get(ME, headers=bearer(forged)), 401)
    assert body["detail"] == "The access token is invalid."


async def test_a_token_with_a_tampered_payload_is_refused(
    client: AsyncClient, new_account: NewAccount
) -> None:
    account = await new_account("hank@example.com")
    header, payload, signature = account["access_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "admin"
    tampered_payload = (
        base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode("ascii")
    )
    tampered = f"{header}.{tampered_payload}.{signature}"
    response = await client.get("/api/v1/users", headers=bearer(tampered))
    assert assert_problem(response, 401)["detail"] == "The access token is invalid."


async def test_an_unsigned_alg_none_token_is_refused(
    client: AsyncClient, new_account: NewAccount, test_signing_key: SigningKey
) -> None:
    account = await new_account("ivy@example.com")
    claims = jwt.decode(account["access_token"], options={"verify_signature": False})
    unsigned = jwt.encode(claims, key="", algorithm="none", headers={"kid": test_signing_key.kid})
    body = assert_problem(await client.get(ME, headers=bearer(unsigned)), 401)
    assert body["detail"] == "The access token must be signed with RS256."


async def test_requests_without_a_bearer_token_are_refused(client: AsyncClient) -> None:
    assert_problem(await client.get(ME), 401)
    assert_problem(await client.get(ME, headers={"Authorization": "Basic dXNlcjpwdw=="}), 401)
    assert_problem(await client.get(ME, headers=bearer("garbage")), 401)


async def test_jwks_publishes_the_kid_of_issued_tokens_and_verifies_them(
    client: AsyncClient, new_account: NewAccount
) -> None:
    account = await new_account("jack@example.com")
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    document = response.json()
    kid = jwt.get_unverified_header(account["access_token"])["kid"]
    assert [key["kid"] for key in document["keys"]] == [kid]
    assert document["keys"][0]["alg"] == "RS256"
    assert "d" not in document["keys"][0]  # the public half only

    verifier = TokenVerifier(StaticKeySource(document), issuer="meshmart-user", audience="meshmart")
    principal = await verifier.verify(account["access_token"])
    assert principal.user_id == account["id"]
    assert principal.role is Role.CUSTOMER
    assert principal.email == "jack@example.com"
