"""Page-number pagination shared by every list endpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel

MAX_PAGE_SIZE = 100

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list: {items, total, page, page_size}."""

    items: list[T]
    total: int
    page: int
    page_size: int


@dataclass(frozen=True, slots=True)
class PageParams:
    """The requested page (1-based) and its size (bounded)."""

    page: int
    page_size: int

    @property
    def offset(self) -> int:
        """Rows to skip."""
        return (self.page - 1) * self.page_size


async def page_params(
    page: Annotated[int, Query(ge=1, le=1_000_000, description="1-based page number")] = 1,
    page_size: Annotated[
        int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"items per page, at most {MAX_PAGE_SIZE}")
    ] = 20,
) -> PageParams:
    """Query parameters page and page_size."""
    return PageParams(page=page, page_size=page_size)


PageDep = Annotated[PageParams, Depends(page_params)]
