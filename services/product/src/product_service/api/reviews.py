"""Routes /api/v1/products/{id}/reviews."""

from __future__ import annotations

from fastapi import APIRouter, status

from meshmart_common.auth import CurrentUser
from meshmart_common.pagination import PageDep
from product_service.api.deps import ProductId, ReviewsDep, ReviewsReadDep, problems
from product_service.api.schemas import ReviewCreate, ReviewPage, ReviewRead
from product_service.domain.reviews import NewReview, Reviewer

router = APIRouter(prefix="/products/{product_id}/reviews", tags=["reviews"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ReviewRead,
    responses=problems(400, 401, 404, 409, 422),
)
async def create_review(
    product_id: ProductId, body: ReviewCreate, reviews: ReviewsDep, principal: CurrentUser
) -> ReviewRead:
    """Review a product with 1-5 stars, once per user; 409 for a second review."""
    review = await reviews.add(
        product_id,
        Reviewer(user_id=principal.user_id, email=principal.email),
        NewReview(rating=body.rating, title=body.title, body=body.body),
    )
    return ReviewRead.of(review)


@router.get("", response_model=ReviewPage, responses=problems(404, 422))
async def list_reviews(product_id: ProductId, page: PageDep, reviews: ReviewsReadDep) -> ReviewPage:
    """List a product's reviews, newest first."""
    items, total = await reviews.list_for_product(
        product_id, offset=page.offset, limit=page.page_size
    )
    return ReviewPage(
        items=[ReviewRead.of(review) for review in items],
        total=total,
        page=page.page,
        page_size=page.page_size,
    )
