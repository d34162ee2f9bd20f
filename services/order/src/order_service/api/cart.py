"""Routes /api/v1/cart: the caller's own cart."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from meshmart_common.auth import CurrentUser
from order_service.api.deps import CartsDep, CartsReadDep, ProductId, problems
from order_service.api.schemas import CartItemUpdate, CartRead

router = APIRouter(prefix="/cart", tags=["cart"])


@router.get("", response_model=CartRead, responses=problems(401))
async def read_cart(user: CurrentUser, carts: CartsReadDep) -> CartRead:
    """Read the caller's cart at live prices (last known ones, marked stale, if product is down)."""
    return CartRead.of(await carts.view(user.user_id))


@router.put(
    "/items/{product_id}",
    response_model=CartRead,
    responses=problems(401, 404, 409, 422, 502, 503, 504),
)
async def put_cart_item(
    product_id: ProductId, body: CartItemUpdate, user: CurrentUser, carts: CartsDep
) -> CartRead:
    """Set how many units of a product the cart holds (adds the line if new); 404: not sold."""
    return CartRead.of(await carts.set_quantity(user.user_id, product_id, body.quantity))


@router.delete("/items/{product_id}", response_model=CartRead, responses=problems(401, 404, 422))
async def delete_cart_item(product_id: ProductId, user: CurrentUser, carts: CartsDep) -> CartRead:
    """Take a product out of the cart; 404 when it is not in it."""
    return CartRead.of(await carts.remove(user.user_id, product_id))


@router.delete(
    "",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problems(401),
)
async def clear_cart(user: CurrentUser, carts: CartsDep) -> None:
    """Empty the caller's cart."""
    await carts.clear(user.user_id)
