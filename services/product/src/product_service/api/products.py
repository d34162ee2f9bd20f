"""Routes /api/v1/products: search, detail, admin edits and stock."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import APIRouter, Query, Response, status

from meshmart_common.audit import AdminAuditDep
from meshmart_common.pagination import PageDep
from product_service.api.deps import ProductId, ProductsDep, ProductsReadDep, problems
from product_service.api.schemas import (
    ProductCreate,
    ProductPage,
    ProductRead,
    ProductSummary,
    ProductUpdate,
    StockUpdate,
)
from product_service.domain.products import (
    NewProduct,
    ProductChanges,
    ProductQuery,
    ProductSort,
)

router = APIRouter(prefix="/products", tags=["products"])

MAX_PRICE_FILTER = 10**12


@router.get("", response_model=ProductPage, responses=problems(422))
async def search_products(
    products: ProductsReadDep,
    page: PageDep,
    q: Annotated[
        str | None,
        Query(
            max_length=200,
            pattern=r"^[^\x00]*$",
            description="text in the title or description (any case)",
        ),
    ] = None,
    category: Annotated[
        str | None, Query(max_length=64, description="category slug or numeric id")
    ] = None,
    min_price: Annotated[
        int | None, Query(ge=0, le=MAX_PRICE_FILTER, description="lowest price in cents")
    ] = None,
    max_price: Annotated[
        int | None, Query(ge=0, le=MAX_PRICE_FILTER, description="highest price in cents")
    ] = None,
    sort: Annotated[
        ProductSort, Query(description='order; a leading "-" means descending')
    ] = ProductSort.CREATED_AT_DESC,
) -> ProductPage:
    """Search live products by text, category and price range, sorted and paginated."""
    items, total = await products.search(
        ProductQuery(
            text=q,
            category=category.strip().lower() if category else None,
            min_price=min_price,
            max_price=max_price,
            sort=sort,
            page=page.page,
            page_size=page.page_size,
        )
    )
    return ProductPage(
        items=[ProductSummary.of(product) for product in items],
        total=total,
        page=page.page,
        page_size=page.page_size,
    )


@router.get("/{product_id}", response_model=ProductRead, responses=problems(404, 422))
async def get_product(product_id: ProductId, products: ProductsReadDep) -> ProductRead:
    """Read one product, soft-deleted ones included (deleted: true)."""
    return ProductRead.of(await products.get(product_id))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ProductRead,
    responses=problems(400, 401, 403, 409, 422),
)
async def create_product(
    body: ProductCreate, products: ProductsDep, audit: AdminAuditDep, response: Response
) -> ProductRead:
    """Create a product (admin, audited); 409 when the sku is taken, 422 for an unknown category."""
    product = await products.create(
        NewProduct(
            sku=body.sku,
            title=body.title,
            description=body.description,
            price_cents=body.price_cents,
            category_id=body.category_id,
            image_url=body.image_url,
            stock=body.stock,
        ),
        audit=audit,
    )
    response.headers["Location"] = f"/api/v1/products/{product.id}"
    return ProductRead.of(product)


@router.patch(
    "/{product_id}", response_model=ProductRead, responses=problems(400, 401, 403, 404, 409, 422)
)
async def update_product(
    product_id: ProductId, body: ProductUpdate, products: ProductsDep, audit: AdminAuditDep
) -> ProductRead:
    """Change some fields of a product (admin, audited); 404 once it is deleted."""
    changes = cast(ProductChanges, body.model_dump(exclude_unset=True))
    return ProductRead.of(await products.update(product_id, changes, audit=audit))


@router.delete(
    "/{product_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problems(401, 403, 404, 422),
)
async def delete_product(
    product_id: ProductId, products: ProductsDep, audit: AdminAuditDep
) -> None:
    """Soft-delete a product (admin, audited): hidden from search, still readable by id."""
    await products.delete(product_id, audit=audit)


@router.put(
    "/{product_id}/stock",
    response_model=ProductRead,
    responses=problems(400, 401, 403, 404, 409, 422),
)
async def set_product_stock(
    product_id: ProductId, body: StockUpdate, products: ProductsDep, audit: AdminAuditDep
) -> ProductRead:
    """Set the units on hand (admin, audited); 409 when below the units reserved for orders."""
    return ProductRead.of(await products.set_stock(product_id, body.on_hand, audit=audit))
