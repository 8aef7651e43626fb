"""Each operation of the document made one tool of the spec format. Pure.

A GET is a `read` tool; POST, PUT, PATCH and DELETE are `write` tools, two-phase like every
write. The result is the upstream's whole JSON body: `select` is left to the operator.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urljoin

from gateway.importer.arguments import input_block
from gateway.importer.naming import Names, file_slug, tag_label, tool_name
from gateway.importer.parameters import Inputs, Skip, json_media, map_inputs
from gateway.importer.refs import Document
from gateway.importer.schemas import Converter, is_object

METHODS: Final = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
SENT: Final = frozenset({"get", "post", "put", "patch", "delete"})
MAX_DESCRIPTION: Final = 1000
MAX_TITLE: Final = 100
MAX_OUTPUT_SCHEMA: Final = 64_000
"""Characters of JSON an output schema may take; a larger one is left out (and reported)."""
SUCCESS: Final = re.compile(r"^2(\d\d|XX|xx)$")


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    item: dict[str, Any]
    op: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.method.upper()} {self.path}"

    @property
    def tags(self) -> list[str]:
        return [t for t in self.op.get("tags") or [] if isinstance(t, str)]


@dataclass
class Tool:
    """One generated tool: its spec, the tool file it goes in, and what it left out."""

    spec: dict[str, Any]
    file: str
    operation: Operation
    unmapped: list[str] = field(default_factory=list)
    anonymous: bool = False
    inputs: Inputs | None = None
    """What its arguments were made from, to write them again as a full input_schema."""


def operations(document: Document) -> list[Operation]:
    """Every operation under `paths`, in the document's order."""
    found: list[Operation] = []
    for path, raw in (document.root.get("paths") or {}).items():
        item = document.mapping(raw)
        found.extend(Operation(method, str(path), item, item[method]) for method in METHODS
                     if isinstance(item.get(method), dict))
    return found


@dataclass
class Mapper:
    """Maps the operations of one document, handing out unique tool names."""

    document: Document
    requests: Converter
    responses: Converter
    base_url: str
    names: Names = field(default_factory=Names)

    def tool(self, operation: Operation) -> Tool:
        """Raises: Skip when the operation cannot become a tool."""
        if operation.method not in SENT:
            raise Skip(f"{operation.method.upper()} is not a method the gateway sends "
                       "(GET, POST, PUT, PATCH, DELETE)")
        prefix = self._server_prefix(operation)
        inputs = map_inputs(self.document, self.requests, operation.path, operation.item,
                            operation.op)
        inputs.path = prefix + inputs.path
        kind = "read" if operation.method == "get" else "write"
        title, description = describe(operation)
        spec: dict[str, Any] = {
            "name": self.names.claim(tool_name(operation.op.get("operationId"),
                                               operation.method, operation.path)),
            "title": title, "kind": kind, "description": description,
            "tags": [label for t in operation.tags if (label := tag_label(t))],
            "scopes": scopes_of(self.document, operation),
        }
        block, value = input_block(inputs.arguments)
        spec[block] = value
        spec["request"] = request_of(operation, inputs)
        if kind == "write" and (preview := self._preview(operation, inputs)) is not None:
            spec["write"] = {"preview": preview}
        unmapped = list(inputs.unmapped)
        if kind == "read":
            schema = self.output_schema(operation.op)
            if schema is not None and len(json.dumps(schema)) > MAX_OUTPUT_SCHEMA:
                unmapped.append("its 2xx response schema is too large to publish: left out")
                schema = None
            spec["response"] = {"output_schema": schema} if schema is not None else {}
        security = operation.op.get("security")
        return Tool(spec={k: v for k, v in spec.items() if v not in (None, [], {})},
                    file=file_slug(operation.tags[0]) if operation.tags else "untagged",
                    operation=operation, unmapped=unmapped, inputs=inputs,
                    anonymous=isinstance(security, list) and (not security or {} in security))

    def _server_prefix(self, operation: Operation) -> str:
        servers = operation.op.get("servers") or operation.item.get("servers")
        if not isinstance(servers, list) or not servers or not isinstance(servers[0], dict):
            return ""
        url = urljoin(self.base_url + "/", server_url(servers[0])).rstrip("/")
        if url == self.base_url or url.startswith(self.base_url + "/"):
            return url[len(self.base_url):]
        raise Skip(f"its own server {url} is not under the service's base URL "
                   f"{self.base_url}: one service calls one base URL")

    def _preview(self, operation: Operation, inputs: Inputs) -> dict[str, Any] | None:
        """A GET on the same path, when it needs nothing but the path: the current state."""
        if operation.method not in ("put", "patch", "delete"):
            return None
        read = operation.item.get("get")
        if not isinstance(read, dict) or operation.op.get("servers") or read.get("servers"):
            return None
        for raw in [*(operation.item.get("parameters") or []), *(read.get("parameters") or [])]:
            param = self.document.mapping(raw)
            if param.get("required") is True and param.get("in") != "path":
                return None
        return {"method": "GET", "path": inputs.path}

    def output_schema(self, op: dict[str, Any]) -> dict[str, Any] | None:
        """The schema of the first 2xx JSON answer, when it is an object."""
        answers = self.document.mapping(op.get("responses"))
        for code in sorted(c for c in answers if SUCCESS.match(c)):
            content = self.document.mapping(answers[code]).get("content") or {}
            media = json_media(content) if isinstance(content, dict) else None
            if media is None:
                continue
            schema = self.responses.convert(self.document.mapping(content[media]).get("schema"))
            if not is_object(schema):
                return None
            schema = {"type": "object", **schema}
            for closed in ("additionalProperties", "unevaluatedProperties"):
                if schema.get(closed) is False:  # the result may gain a `truncated` note
                    del schema[closed]
            return schema
        return None


def request_of(operation: Operation, inputs: Inputs) -> dict[str, Any]:
    request: dict[str, Any] = {"method": operation.method.upper(), "path": inputs.path}
    if inputs.query:
        request["query"] = inputs.query
    if inputs.headers:
        request["headers"] = inputs.headers
    if inputs.body is not None:
        request["body"] = inputs.body
    if inputs.arrays == "comma":
        request["query_style"] = {"arrays": "comma"}
    return request


def describe(operation: Operation) -> tuple[str | None, str]:
    """The title (the summary) and the description (summary and description, within budget)."""
    summary = " ".join(str(operation.op.get("summary") or "").split())
    text = str(operation.op.get("description") or "").strip()
    title = _cut(summary, MAX_TITLE) or None
    parts = [summary if summary and not text.startswith(summary) else "", text]
    description = "\n\n".join(p for p in parts if p) or operation.label
    if operation.op.get("deprecated") is True:
        description = f"Deprecated. {description}"
    return title, _cut(description, MAX_DESCRIPTION)


def _cut(text: str, most: int) -> str:
    if len(text) <= most:
        return text
    head = text[: most - 1]
    space = head.rfind(" ")
    return (head[:space] if space > most // 2 else head).rstrip() + "…"


def scopes_of(document: Document, operation: Operation) -> list[str]:
    """The OAuth scopes of the first security requirement that names any."""
    security = operation.op.get("security", document.root.get("security"))
    for requirement in security if isinstance(security, list) else []:
        if not isinstance(requirement, dict):
            continue
        found = [s for scopes in requirement.values() if isinstance(scopes, list)
                 for s in scopes if isinstance(s, str)]
        if found:
            return list(dict.fromkeys(found))
    return []


def server_url(server: dict[str, Any]) -> str:
    """A server's URL with its variables at their defaults."""
    url = str(server.get("url") or "/")
    for name, variable in (server.get("variables") or {}).items():
        if isinstance(variable, dict):
            default = variable.get("default", (variable.get("enum") or [""])[0])
            url = url.replace(f"{{{name}}}", str(default))
    return url
