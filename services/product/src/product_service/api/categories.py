"""Routes /api/v1/categories."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from meshmart_common.audit import AdminAuditDep
from product_service.api.deps import CategoriesDep, CategoriesReadDep, problems
from product_service.api.schemas import CategoryCreate, CategoryRead
from product_service.domain.categories import NewCategory

router = APIRouter(prefix="/categories", tags=["categories"])


@router.get("", response_model=list[CategoryRead])
async def list_categories(categories: CategoriesReadDep) -> list[CategoryRead]:
    """List every category, ordered by name."""
    return [CategoryRead.of(category) for category in await categories.list_all()]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=CategoryRead,
    responses=problems(400, 401, 403, 409, 422),
)
async def create_category(
    body: CategoryCreate, categories: CategoriesDep, audit: AdminAuditDep, response: Response
) -> CategoryRead:
    """Create a category (admin, audited); 409 when the slug is taken."""
    category = await categories.create(
        NewCategory(slug=body.slug, name=body.name, description=body.description), audit=audit
    )
    response.headers["Location"] = f"/api/v1/categories/{category.id}"
    return CategoryRead.of(category)
