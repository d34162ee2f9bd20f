"""Routes /api/v1/users/me/addresses: the caller's shipping addresses."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import APIRouter, Path, Response, status

from meshmart_common.auth import CurrentUser
from meshmart_common.errors import problem_responses
from user_service.api.deps import AddressReaderDep, AddressServiceDep
from user_service.api.schemas import AddressCreate, AddressRead, AddressUpdate
from user_service.domain.addresses import AddressChanges, NewAddress

router = APIRouter(prefix="/users/me/addresses", tags=["addresses"])

AddressId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the address id")]


@router.get("", response_model=list[AddressRead], responses=problem_responses(401))
async def list_addresses(principal: CurrentUser, addresses: AddressReaderDep) -> list[AddressRead]:
    """The caller's addresses, oldest first."""
    return [AddressRead.model_validate(a) for a in await addresses.list(principal.user_id)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=AddressRead,
    responses=problem_responses(401, 409),
)
async def create_address(
    body: AddressCreate, principal: CurrentUser, addresses: AddressServiceDep
) -> AddressRead:
    """Add an address; is_default=true makes it the only default one."""
    address = await addresses.create(principal.user_id, NewAddress(**body.model_dump()))
    return AddressRead.model_validate(address)


@router.patch("/{address_id}", response_model=AddressRead, responses=problem_responses(401, 404))
async def update_address(
    address_id: AddressId,
    body: AddressUpdate,
    principal: CurrentUser,
    addresses: AddressServiceDep,
) -> AddressRead:
    """Change some fields of one of the caller's addresses."""
    changes = cast(AddressChanges, body.model_dump(exclude_unset=True))
    address = await addresses.update(principal.user_id, address_id, changes)
    return AddressRead.model_validate(address)


@router.delete(
    "/{address_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(401, 404)
)
async def delete_address(
    address_id: AddressId, principal: CurrentUser, addresses: AddressServiceDep
) -> Response:
    """Delete one of the caller's addresses."""
    await addresses.delete(principal.user_id, address_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
