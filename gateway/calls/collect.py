"""Derived tools: read items page by page (bounded by the spec), then filter and aggregate them.

The paging loop is here; what a page is comes in as `fetch_page`, and where progress goes as
`progress`, so this module does no I/O of its own. Filtering and aggregation are the pure
functions of derive.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from gateway.calls.context import Progress
from gateway.calls.derive import active_conditions, aggregate, match_any, matches
from gateway.errors import ResponseShapeError, ToolExecutionError
from gateway.spec.compiled import CollectSource
from gateway.spec.jmes import search
from gateway.spec.templates import RenderContext, render_value

FetchPage = Callable[[Mapping[str, Any] | None], Awaitable[Any]]
"""Sends the source's request with extra query parameters (the page) and returns the body."""


async def collect_items(source: CollectSource, fetch_page: FetchPage,
                        progress: Progress | None = None) -> tuple[list[Any], int, bool]:
    """The items of the pages read, how many pages were read, and whether that was all of them.
    With `progress`, the pages read so far are reported before the first page and after each.

    Raises:
        ResponseShapeError: a page whose items are not a list.
        ToolExecutionError: any upstream failure of a page.
        StreamClosed: from `progress`, when nobody listens any more: no page is read after it.
    """
    items: list[Any] = []
    pages = 0
    page = source.page_start
    total = source.max_pages if source.page_param is None else None
    if progress is not None:
        await progress(0, total, "Reading the first page")
    while pages < source.max_pages:
        body = await fetch_page({source.page_param: page} if source.page_param else None)
        pages += 1
        if pages == 1 and source.page_total is not None:
            total = page_count(search(source.page_total, body), source.max_pages)
        found = search(source.items, body)
        if found is None:
            found = []
        if not isinstance(found, list):
            raise ResponseShapeError("The upstream page did not hold a list of items.")
        items.extend(found)
        last = (source.page_param is None or not found
                or (source.stop_when is not None and bool(search(source.stop_when, body))))
        if progress is not None:
            await progress(pages, total, f"Read page {pages} of {total}" if total
                           else f"Read {pages} page(s)")
        if last or len(items) >= source.max_items:
            return items[:source.max_items], pages, last and len(items) <= source.max_items
        page += 1
    return items, pages, False


def page_count(value: Any, max_pages: int) -> int | None:
    """How many pages will be read, from what the first page says there are: None when it says
    nothing usable (not a whole number), else at least 1 and at most `max_pages`."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return None
    return min(max(value, 1), max_pages)


async def derived(source: CollectSource, ctx: RenderContext, fetch_page: FetchPage,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Collect, keep the items the conditions match, then aggregate them or list them.

    Raises:
        ToolExecutionError: a page could not be read, a condition given is not one the spec
            offers, or the aggregation was asked for a group that does not exist.
        StreamClosed: see collect_items.
    """
    try:  # before any page is read: a bad condition costs no upstream request
        conditions = active_conditions(source.conditions, ctx)
        any_of = match_any(source.match, ctx)
    except ValueError as exc:
        raise ToolExecutionError(str(exc)) from exc
    items, pages, complete = await collect_items(source, fetch_page, progress)
    kept = [item for item in items if matches(item, conditions, any_of)]
    coverage: dict[str, Any] = {"pages_read": pages, "items_scanned": len(items),
                                "complete": complete}
    if not complete:
        coverage["note"] = (f"Only the first {pages} page(s) were read; narrow the date "
                            "window or filters for a complete answer.")
    if source.aggregate is not None:
        try:
            summary = aggregate(kept, source.aggregate, ctx)
        except ValueError as exc:
            raise ToolExecutionError(str(exc)) from exc
        return {**summary, "items_matched": len(kept), **coverage}
    limit = render_value(source.limit, ctx) if source.limit is not None else None
    shown = kept[:limit] if isinstance(limit, int) and limit >= 0 else kept
    return {"items": shown, "items_matched": len(kept), **coverage}
