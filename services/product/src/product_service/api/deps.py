"""Dependencies of the product API: services on the request session, path ids, problems."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Request

from meshmart_common.db import ReadSessionDep, SessionDep
from meshmart_common.errors import problem_responses
from meshmart_common.messaging.outbox import EventPublisher
from product_service.api.schemas import MAX_ID
from product_service.domain.categories import CategoryService
from product_service.domain.products import ProductService
from product_service.domain.reviews import ReviewService

ProductId = Annotated[int, Path(ge=1, le=MAX_ID, description="product id")]


async def get_publisher(request: Request) -> EventPublisher:
    """The app's event publisher (its outbox; build_app sets it)."""
    publisher: EventPublisher = request.app.state.publisher
    return publisher


PublisherDep = Annotated[EventPublisher, Depends(get_publisher)]
"""The publisher whose events commit with the request's session."""


async def _categories(session: SessionDep, publisher: PublisherDep) -> CategoryService:
    return CategoryService(session, publisher)


async def _categories_read(session: ReadSessionDep) -> CategoryService:
    return CategoryService(session)


async def _products(session: SessionDep, publisher: PublisherDep) -> ProductService:
    return ProductService(session, publisher)


async def _products_read(session: ReadSessionDep) -> ProductService:
    return ProductService(session)


async def _reviews(session: SessionDep) -> ReviewService:
    return ReviewService(session)


async def _reviews_read(session: ReadSessionDep) -> ReviewService:
    return ReviewService(session)


CategoriesDep = Annotated[CategoryService, Depends(_categories)]
"""Categories on the read-write request session."""
CategoriesReadDep = Annotated[CategoryService, Depends(_categories_read)]
"""Categories on the read-only session (the replica when one is configured)."""
ProductsDep = Annotated[ProductService, Depends(_products)]
"""Products on the read-write request session."""
ProductsReadDep = Annotated[ProductService, Depends(_products_read)]
"""Products on the read-only session."""
ReviewsDep = Annotated[ReviewService, Depends(_reviews)]
"""Reviews on the read-write request session."""
ReviewsReadDep = Annotated[ReviewService, Depends(_reviews_read)]
"""Reviews on the read-only session."""

_PROBLEM_TEXT = {
    400: "The body could not be read (not UTF-8 JSON)",
    401: "No valid bearer token",
    403: "The caller is not an admin",
    404: "No such product",
    409: "Conflicts with the current state",
    422: "Invalid input (field errors in `errors`)",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem+json responses a route can give, in this API's words."""
    return problem_responses(*statuses, descriptions=_PROBLEM_TEXT)
