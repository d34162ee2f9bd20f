"""Routes /api/v1/users: the caller's profile and password, and the admin's account list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from meshmart_common.audit import CallerAuditDep
from meshmart_common.auth import AdminUser, CurrentUser
from meshmart_common.errors import problem_responses
from meshmart_common.pagination import Page, PageDep
from user_service.api.deps import AccountReaderDep, AccountServiceDep
from user_service.api.schemas import PasswordChange, UserRead, UserUpdate
from user_service.repository.models import EMAIL_MAX_LENGTH

router = APIRouter(prefix="/users", tags=["users"])


@router.get("/me", response_model=UserRead, responses=problem_responses(401))
async def read_me(principal: CurrentUser, accounts: AccountReaderDep) -> UserRead:
    """The caller's account."""
    return UserRead.model_validate(await accounts.get(principal.user_id))


@router.patch("/me", response_model=UserRead, responses=problem_responses(401))
async def update_me(
    body: UserUpdate, principal: CurrentUser, accounts: AccountServiceDep
) -> UserRead:
    """Change the caller's profile (full_name; the email cannot be changed)."""
    if "full_name" not in body.model_fields_set:
        return UserRead.model_validate(await accounts.get(principal.user_id))
    user = await accounts.update_profile(principal.user_id, full_name=body.full_name)
    return UserRead.model_validate(user)


@router.put(
    "/me/password", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(401)
)
async def change_password(
    body: PasswordChange,
    principal: CurrentUser,
    accounts: AccountServiceDep,
    audit: CallerAuditDep,
) -> Response:
    """Change the caller's password; every refresh token of the account is revoked (audited)."""
    await accounts.change_password(
        principal.user_id,
        current_password=body.current_password,
        new_password=body.new_password,
        audit=audit,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("", response_model=Page[UserRead], responses=problem_responses(401, 403))
async def list_users(
    _admin: AdminUser,
    page: PageDep,
    accounts: AccountReaderDep,
    q: Annotated[
        str | None,
        Query(max_length=EMAIL_MAX_LENGTH, description="only emails containing this text"),
    ] = None,
) -> Page[UserRead]:
    """List accounts by id (admin only), optionally filtered by email."""
    result = await accounts.list_users(offset=page.offset, limit=page.page_size, email_contains=q)
    return Page[UserRead](
        items=[UserRead.model_validate(user) for user in result.items],
        total=result.total,
        page=page.page,
        page_size=page.page_size,
    )
