"""Virtual servers: a service's `endpoints:`, each a subset of its tools, resources and prompts
served at a path of its own, with the service's upstream, auth and PII policy. Pure.

A selector is a name, `kind:<read|write|meta>` (tools; `kind:read` takes resources too),
`kind:resource`, `kind:prompt`, or `tag:<tag>` (tools tagged so). `include` empty takes all;
`exclude` takes out of what was included.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from gateway.spec.compiled import CompiledService
from gateway.spec.models import EndpointSpec


def views_of(service: CompiledService) -> tuple[CompiledService, ...]:
    """The virtual servers of `service`, compiled."""
    return tuple(view_of(service, endpoint) for endpoint in service.spec.endpoints)


def view_of(service: CompiledService, endpoint: EndpointSpec) -> CompiledService:
    def chosen(name: str, labels: frozenset[str]) -> bool:
        included = not endpoint.include or bool(labels & {*endpoint.include})
        return included and not labels & {*endpoint.exclude}

    spec = service.spec.model_copy(update={
        "endpoint": endpoint.path, "endpoints": [],
        "title": endpoint.title or service.spec.title,
        "instructions": endpoint.instructions or service.spec.instructions})
    return CompiledService(
        spec=spec, folder=service.folder, lines=service.lines, view_of=service.spec.endpoint,
        tools={name: tool for name, tool in service.tools.items() if chosen(name, frozenset(
            {name, f"kind:{tool.spec.kind}", *(f"tag:{t}" for t in tool.spec.tags)}))},
        resources={name: resource for name, resource in service.resources.items()
                   if chosen(name, frozenset({name, "kind:read", "kind:resource"}))},
        prompts={name: prompt for name, prompt in service.prompts.items()
                 if chosen(name, frozenset({name, "kind:prompt"}))})


def unknown_selectors(service: CompiledService) -> Iterator[tuple[int, str, str]]:
    """(endpoint index, list, selector) for each name or tag that selects nothing the service
    has: a typo would silently serve less."""
    names = {*service.tools, *service.resources, *service.prompts}
    tags = {f"tag:{t}" for tool in service.tools.values() for t in tool.spec.tags}
    for index, endpoint in enumerate(service.spec.endpoints):
        for which, selectors in (("include", endpoint.include), ("exclude", endpoint.exclude)):
            yield from ((index, which, s) for s in _unknown(selectors, names, tags))


def _unknown(selectors: Iterable[str], names: set[str], tags: set[str]) -> Iterator[str]:
    for selector in selectors:
        if selector.startswith("kind:"):
            continue
        if selector not in (tags if selector.startswith("tag:") else names):
            yield selector
