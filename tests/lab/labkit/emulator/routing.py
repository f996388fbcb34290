"""A route table: method(s) and a path template to a handler, matched case-insensitively.

    route("GET PUT", "/subscriptions/{sub}/resourceGroups/{rg}", handler)

`{name}` takes one path segment, `{name*}` the rest of the path (possibly empty). The first route
whose template and method match wins; a path some route knows under other methods is reported
as such, so the caller can answer 405 rather than 404.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Route:
    methods: frozenset[str]
    template: str
    handler: Callable
    pattern: re.Pattern
    extra: dict[str, Any] = field(default_factory=dict)  # whatever the table's owner attaches


def route(methods: str, template: str, handler: Callable, **extra: Any) -> Route:
    regex = re.escape(template).replace(r"\{", "{").replace(r"\}", "}").replace(r"\*}", "*}")
    regex = re.sub(r"/\{(\w+)\*\}", r"(?:/(?P<\1>.*))?", regex)
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
    return Route(frozenset(methods.split()), template, handler, re.compile(f"^{regex}/?$", re.IGNORECASE), extra)


@dataclass
class Match:
    route: Route | None  # None: no route for this method (see `allowed`)
    params: dict[str, str]
    allowed: frozenset[str] = frozenset()


def match(routes: list[Route], method: str, path: str) -> Match | None:
    """The route for method and path, or a Match without route (path known, method not), or None."""
    allowed: set[str] = set()
    for candidate in routes:
        found = candidate.pattern.match(path)
        if not found:
            continue
        if method in candidate.methods:
            return Match(candidate, {k: v or "" for k, v in found.groupdict().items()})
        allowed |= candidate.methods
    return Match(None, {}, frozenset(allowed)) if allowed else None
