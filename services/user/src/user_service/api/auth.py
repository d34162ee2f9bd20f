"""Routes /api/v1/auth/*: registration, login, token refresh and logout."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response, status

from meshmart_common.audit import AuditContextDep
from meshmart_common.errors import problem_responses
from meshmart_common.ratelimit import rate_limited
from user_service.api.deps import AccountServiceDep, AuthenticationServiceDep
from user_service.api.schemas import (
    LoginRequest,
    RefreshRequest,
    TokenResponse,
    UserRead,
    UserRegister,
)
from user_service.domain.tokens import TokenPair

router = APIRouter(prefix="/auth", tags=["auth"])

login_rate_limit = rate_limited("login", "rate_limit_login_per_minute")
"""Logins per client address (RATE_LIMIT_LOGIN_PER_MINUTE, live); the lockout is per account."""


def _token_response(pair: TokenPair) -> TokenResponse:
    return TokenResponse(
        access_token=pair.access_token,
        expires_in=pair.expires_in,
        refresh_token=pair.refresh_token,
    )


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    responses=problem_responses(409),
)
async def register(body: UserRegister, accounts: AccountServiceDep) -> UserRead:
    """Create a customer account (emails are unique regardless of case)."""
    user = await accounts.register(
        email=str(body.email), password=body.password, full_name=body.full_name
    )
    return UserRead.model_validate(user)


@router.post(
    "/login",
    response_model=TokenResponse,
    dependencies=[Depends(login_rate_limit)],
    responses=problem_responses(
        401,
        429,
        descriptions={
            429: "The account is locked after failed logins, or this client address sent "
            "too many logins; Retry-After says when to try again"
        },
    ),
)
async def login(
    body: LoginRequest, auth: AuthenticationServiceDep, audit: AuditContextDep, response: Response
) -> TokenResponse:
    """Exchange email and password for an access token and a refresh token (audited)."""
    response.headers["Cache-Control"] = "no-store"
    return _token_response(await auth.login(body.email, body.password, audit=audit))


@router.post("/refresh", response_model=TokenResponse, responses=problem_responses(401))
async def refresh(
    body: RefreshRequest, auth: AuthenticationServiceDep, audit: AuditContextDep, response: Response
) -> TokenResponse:
    """Exchange a refresh token for a new pair (the old refresh token stops working)."""
    response.headers["Cache-Control"] = "no-store"
    return _token_response(await auth.refresh(body.refresh_token, audit=audit))


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(body: RefreshRequest, auth: AuthenticationServiceDep) -> Response:
    """End the login session of a refresh token (every token of its family is revoked)."""
    await auth.logout(body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
