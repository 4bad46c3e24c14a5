"""Lists the way RabbitMQ's API serves them: filter, sort, columns and pagination.

`render(items, query)` applies the query string parameters rabbitmqadmin, Flower and the
web UI send: `name` (+ `use_regex`), `sort` (a dotted field) and `sort_reverse`, `columns`
(dotted fields to keep), and `page` / `page_size` (then the answer is RabbitMQ's envelope
with `items`, counts and page numbers). Invalid values raise a 400.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from amqpd.mgmt.errors import bad_request

MAX_PAGE_SIZE = 500


_MISSING = object()


def _get(item: Mapping[str, Any], path: list[str], missing: Any = None) -> Any:
    """The value at a dotted path, or `missing`."""
    value: Any = item
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return missing
        value = value[part]
    return value


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, bool | int | float):
        return (1, value)
    return (2, str(value))


def project(item: Mapping[str, Any], columns: list[list[str]]) -> dict[str, Any]:
    """The item with only these dotted fields (`columns_of` parses them)."""
    kept: dict[str, Any] = {}
    for path in columns:
        value = _get(item, path, _MISSING)
        if value is _MISSING:
            continue
        target = kept
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    return kept


def columns_of(query: Mapping[str, str]) -> list[list[str]]:
    return [column.split(".") for column in query.get("columns", "").split(",") if column]


def only_columns(query: Mapping[str, str]) -> bool:
    """Whether `columns` is the only parameter `render` acts on: then each item may be
    projected on its own as it is made (`project`), in the list's order."""
    return (
        bool(query.get("columns"))
        and not query.get("name")
        and not query.get("sort")
        and query.get("sort_reverse", "false").lower() != "true"
        and "page" not in query
        and "page_size" not in query
    )


def _int(query: Mapping[str, str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be an integer, got {raw!r}") from None
    if value < 1:
        raise bad_request(f"{name} must be at least 1")
    return value


def render(items: list[dict[str, Any]], query: Mapping[str, str]) -> Any:
    total = len(items)
    name = query.get("name")
    if name:
        if query.get("use_regex", "false").lower() == "true":
            try:
                pattern = re.compile(name)
            except re.error as error:
                raise bad_request(f"invalid regex {name!r}: {error}") from None
            items = [item for item in items if pattern.search(str(item.get("name", "")))]
        else:
            items = [item for item in items if name in str(item.get("name", ""))]
    sort = query.get("sort")
    if sort:
        path = sort.split(".")
        items = sorted(items, key=lambda item: _sort_key(_get(item, path)))
    if query.get("sort_reverse", "false").lower() == "true":
        items = list(reversed(items))
    columns = query.get("columns")
    paginated = "page" in query or "page_size" in query
    filtered = len(items)
    if paginated:
        page = _int(query, "page", 1)
        size = _int(query, "page_size", 100)
        if size > MAX_PAGE_SIZE:
            raise bad_request(f"page_size must not be above {MAX_PAGE_SIZE}")
        pages = max(1, math.ceil(filtered / size))
        if page > pages:
            raise bad_request(f"page {page} is beyond the last page ({pages})")
        items = items[(page - 1) * size : page * size]
    if columns:
        paths = columns_of(query)
        items = [project(item, paths) for item in items]
    if not paginated:
        return items
    return {
        "filtered_count": filtered,
        "item_count": len(items),
        "items": items,
        "page": page,
        "page_count": pages,
        "page_size": size,
        "total_count": total,
    }
