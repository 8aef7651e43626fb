"""The catalog of a service as Markdown: its tools, scopes, resources and prompts, rendered from a
loaded spec tree, and spliced between two markers of a hand-written page. Pure: text in, text out.

It reads only the public face of a compiled service (names, titles, descriptions, kinds, scopes);
`mcp-gateway docs` does the reading and writing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from gateway.spec.compiled import CompiledService
from gateway.spec.views import views_of

BEGIN = ("<!-- BEGIN GENERATED CATALOG: `mcp-gateway docs` writes this section from the specs; "
         "edit them, not this -->")
END = "<!-- END GENERATED CATALOG -->"
KINDS = ("read", "write", "meta")


def page_name(service: CompiledService) -> str:
    """The page a service's catalog lives on, relative to the docs folder."""
    return f"{service.name}.md"


def render_page(page: str | None, service: CompiledService) -> str:
    """`page` with its generated section replaced by the catalog of `service`. A page without
    the markers gets the section appended; no page at all (None) becomes a new one.

    Raises:
        ValueError: the page's markers are not one BEGIN line followed by one END line.
    """
    if page is None:
        page = f"# {service.spec.title} (`{service.spec.endpoint}`)\n\n## Catalog\n"
    return splice(page, BEGIN, END, render_catalog(service))


def splice(page: str, begin: str, end: str, content: str) -> str:
    """`page` with the lines between its `begin` and `end` marker lines replaced by `content`;
    a page without them gets the section appended.

    Raises:
        ValueError: the markers are not one `begin` line followed by one `end` line.
    """
    section = f"{begin}\n\n{content}\n{end}\n"
    lines = page.splitlines(keepends=True)
    begins = [i for i, line in enumerate(lines) if line.rstrip("\n") == begin]
    ends = [i for i, line in enumerate(lines) if line.rstrip("\n") == end]
    if not begins and not ends:
        return f"{page.rstrip()}\n\n{section}"
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise ValueError("the generated section needs exactly one BEGIN marker line followed "
                         "by one END marker line")
    return "".join(lines[:begins[0]]) + section + "".join(lines[ends[0] + 1:])


def render_catalog(service: CompiledService) -> str:
    """The catalog's Markdown: a summary line, then one table per kind of thing served."""
    parts = [_summary(service), _tools(service), _scopes(service)]
    if service.spec.endpoints:
        parts.append(_endpoints(service))
    if service.resources:
        parts.append(_resources(service))
    if service.prompts:
        parts.append(_prompts(service))
    return "\n".join(parts)


def _endpoints(service: CompiledService) -> str:
    rows = [f"| `{service.spec.endpoint}` | everything | {len(service.tools)} |"]
    for endpoint, view in zip(service.spec.endpoints, views_of(service), strict=True):
        chosen = ", ".join(f"`{s}`" for s in endpoint.include) or "everything"
        if endpoint.exclude:
            chosen += " except " + ", ".join(f"`{s}`" for s in endpoint.exclude)
        rows.append(f"| `{endpoint.path}` | {chosen} | {len(view.tools)} |")
    return ("### Endpoints\n\nVirtual servers share the service's upstream, auth and PII "
            "policy; scopes still filter what each caller sees.\n\n"
            "| endpoint | serves | tools |\n|---|---|---|\n" + "\n".join(rows) + "\n")


def _summary(service: CompiledService) -> str:
    kinds = [tool.spec.kind for tool in service.tools.values()]
    by_kind = ", ".join(f"{kinds.count(kind)} {kind}" for kind in KINDS if kind in kinds)
    counts = [f"{len(kinds)} tools ({by_kind})" if kinds else "no tools"]
    counts += [f"{len(service.resources)} resources"] if service.resources else []
    counts += [f"{len(service.prompts)} prompts"] if service.prompts else []
    counts.append(f"{len(service.spec.scopes)} scopes")
    things = "A tool or resource" if service.resources else "A tool"
    return (f"`{service.spec.endpoint}` serves {_and(counts)}. {things} needs every scope "
            "listed with it.\n")


def _tools(service: CompiledService) -> str:
    rows = [(f"`{tool.spec.name}`", tool.spec.kind, _codes(sorted(tool.scopes)),
             _cell(tool.spec.title or ""), _cell(tool.spec.description))
            for tool in service.tools.values()]
    return "### Tools\n\n" + _table(("tool", "kind", "scopes", "title", "description"), rows)


def _scopes(service: CompiledService) -> str:
    rows = []
    for scope in service.spec.scopes:
        users = [f"`{tool.spec.name}`" for tool in service.tools.values()
                 if scope.name in tool.scopes]
        users += [f"`{resource.spec.uri}`" for resource in service.resources.values()
                  if scope.name in resource.spec.scopes]
        rows.append((f"`{scope.name}`", _cell(scope.description), ", ".join(users) or "none"))
    return "### Scopes\n\n" + _table(("scope", "what it grants", "needed by"), rows)


def _resources(service: CompiledService) -> str:
    rows = [(f"`{r.spec.uri}`", f"`{r.spec.name}`", _cell(r.spec.title or ""),
             f"`{r.spec.mime_type}`", _codes(r.spec.scopes), _cell(r.spec.description))
            for r in service.resources.values()]
    return "### Resources\n\n" + _table(
        ("URI", "name", "title", "MIME type", "scopes", "description"), rows)


def _prompts(service: CompiledService) -> str:
    rows = []
    for prompt in service.prompts.values():
        arguments = "; ".join(
            (f"**`{a.name}`**" if a.required else f"`{a.name}`")
            + (f": {_cell(a.description)}" if a.description else "")
            for a in prompt.spec.arguments)
        rows.append((f"`{prompt.spec.name}`", _cell(prompt.spec.title or ""),
                     _cell(prompt.spec.description), arguments or "none"))
    return ("### Prompts\n\nArguments in bold are required.\n\n"
            + _table(("prompt", "title", "description", "arguments"), rows))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _codes(names: Sequence[str]) -> str:
    return " ".join(f"`{name}`" for name in names) or "none"


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


_CODE = re.compile(r"(`[^`]*`)")


def _cell(text: str) -> str:
    """Spec text as one table cell: one line, pipes escaped, and `<` outside code spans written
    as an entity so `<name>` shows instead of vanishing as an unknown HTML tag."""
    pieces = _CODE.split(" ".join(text.split()))
    return "".join(piece if index % 2 else piece.replace("<", "&lt;")
                   for index, piece in enumerate(pieces)).replace("|", "\\|")
