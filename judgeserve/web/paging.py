"""Pagination: every list in the view is read one bounded page at a time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Query, Request

__all__ = ["Pager", "PageParam"]

PageParam = Annotated[int, Query(ge=1, le=10_000_000, description="1-based page number.")]


@dataclass(frozen=True)
class Pager:
    page: int
    per_page: int
    total: int | None
    shown: int
    base: str  # the page's path and query, without ``page``

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    @property
    def pages(self) -> int | None:
        if self.total is None:
            return None
        return max(1, -(-self.total // self.per_page))

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        if self.total is not None:
            return self.page * self.per_page < self.total
        return self.shown >= self.per_page

    def url(self, page: int) -> str:
        sep = "&" if "?" in self.base else "?"
        return self.base if page == 1 else f"{self.base}{sep}page={page}"

    @classmethod
    def start(cls, request: Request, page: int, per_page: int) -> Pager:
        """A pager before the page is read; call :meth:`done` with what was read."""
        url = request.url.remove_query_params("page")
        base = url.path + (f"?{url.query}" if url.query else "")
        return cls(page, per_page, None, 0, base)

    def done(self, shown: int, total: int | None = None) -> Pager:
        return Pager(self.page, self.per_page, total, shown, self.base)
