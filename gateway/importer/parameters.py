"""An operation's parameters and JSON request body made tool arguments and the request that
sends them. Pure.

What cannot be sent the way the document says (a cookie, a pipe-delimited list, a form body) is
reported: an optional one is left out of the tool, a required one makes the operation skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.importer.naming import IDENTIFIER, RESERVED, Names, argument_name
from gateway.importer.refs import Document
from gateway.importer.schemas import Converter, object_properties

MAX_DESCRIPTION: Final = 300
"""Characters kept of a parameter's description."""
HEADER_NAME: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
GATEWAY_HEADERS: Final = frozenset({"accept", "content-type", "authorization"})
PATH_PARAMETER: Final = re.compile(r"^\{([^{}]+)\}$")


class Skip(Exception):
    """The operation cannot become a tool; the message says why."""


@dataclass
class Argument:
    name: str
    schema: Any
    required: bool


@dataclass
class Inputs:
    """What an operation's inputs became."""

    arguments: list[Argument] = field(default_factory=list)
    path: str = "/"
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    arrays: str | None = None
    """How the tool writes lists in the query (`repeat` or `comma`), once one decides it."""
    unmapped: list[str] = field(default_factory=list)
    names: Names = field(default_factory=Names)
    path_names: dict[str, str] = field(default_factory=dict)


def map_inputs(document: Document, converter: Converter, path: str,
               item: dict[str, Any], op: dict[str, Any]) -> Inputs:
    """Raises: Skip when a required input cannot be sent, or the path cannot be written."""
    inputs = Inputs()
    params: dict[tuple[str, str], dict[str, Any]] = {}
    for raw in [*(item.get("parameters") or []), *(op.get("parameters") or [])]:
        param = document.follow(raw)
        if not isinstance(param, dict) or not isinstance(param.get("name"), str):
            inputs.unmapped.append("a parameter that is not resolved (an external $ref?)")
            continue
        params[param["name"], str(param.get("in"))] = param
    for (_, where), param in params.items():
        problem = _parameter(inputs, converter, param, where)
        if problem is not None:
            ignored = where == "header" and param["name"].lower() in GATEWAY_HEADERS
            if (param.get("required") is True or where == "path") and not ignored:
                raise Skip(f"required {problem}")
            inputs.unmapped.append(problem)
    inputs.path = _path(inputs, path)
    _body(inputs, document, converter, document.mapping(op.get("requestBody")))
    return inputs


def _parameter(inputs: Inputs, converter: Converter, param: dict[str, Any],
               where: str) -> str | None:
    """Map one parameter; the problem when it cannot be."""
    name = param["name"]
    label = f"{where} parameter {name!r}"
    if "schema" not in param and "content" in param:
        return f"{label}: a parameter encoded as {', '.join(param['content'])} is not sent"
    schema = converter.convert(param.get("schema") or {})
    if isinstance(schema, dict):
        if isinstance(param.get("description"), str):
            schema = {**schema, "description": _short(param["description"])}
        if "example" in param and "examples" not in schema and _scalar(param["example"]):
            schema["examples"] = [param["example"]]
    shape = _shape(schema)
    style = str(param.get("style") or {"query": "form", "cookie": "form"}.get(where, "simple"))
    explode = param.get("explode", style == "form") is True
    if where == "query":
        problem = _query_problem(inputs, shape, style, explode)
    elif where == "header":
        problem = _header_problem(name, shape, schema)
    elif where == "path":
        problem = None if style == "simple" and shape == "scalar" else (
            f"style {style} for {_a(shape)}: a path value fills one segment as plain text")
    else:
        problem = ("the gateway sends no cookies" if where == "cookie"
                   else f"`in: {where}` is not a place the gateway sends values")
    if problem is not None:
        return f"{label}: {problem}"
    argument = argument_name(name, inputs.names, where)
    inputs.arguments.append(Argument(argument, schema, param.get("required") is True
                                     or where == "path"))
    if where == "query":
        inputs.query[name] = f"{{{argument}}}"
    elif where == "header":
        inputs.headers[name] = f"{{{argument}}}"
    else:
        inputs.path_names[name] = argument
    return None


def _query_problem(inputs: Inputs, shape: str, style: str, explode: bool) -> str | None:
    if shape == "object":
        return None if style == "deepObject" else (
            f"style {style} for an object: only deepObject (`a[key]=v`) is written")
    if shape != "array":
        return None
    if style != "form":
        return f"style {style}: lists are written repeated (`a=1&a=2`) or comma-separated"
    wanted = "repeat" if explode else "comma"
    if inputs.arrays not in (None, wanted):
        return f"its list is written {wanted}, another of the operation's is {inputs.arrays}"
    inputs.arrays = wanted
    return None


def _header_problem(name: str, shape: str, schema: Any) -> str | None:
    if name.lower() in GATEWAY_HEADERS:
        return "the gateway sets this header itself (and OpenAPI says to ignore the parameter)"
    if not HEADER_NAME.match(name):
        return "not a header name"
    kind = schema.get("type") if isinstance(schema, dict) else None
    if shape != "scalar" or kind == "boolean" or (isinstance(kind, list) and "boolean" in kind):
        what = _a(kind if shape == 'scalar' else shape)
        return f"{what} header is not written as the API reads it"
    return None


def _a(noun: object) -> str:
    return f"{'an' if str(noun)[:1] in ('a', 'e', 'i', 'o', 'u') else 'a'} {noun}"


def _shape(schema: Any) -> str:
    if not isinstance(schema, dict):
        return "scalar"
    kind = schema.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind}
    if "array" in kinds:
        return "array"
    if "object" in kinds or "properties" in schema:
        return "object"
    return "scalar"


def _path(inputs: Inputs, path: str) -> str:
    if "#" in path or "?" in path:
        raise Skip(f"the path {path!r} holds '#' or '?': not a path an API is called at")
    segments = []
    for segment in path.split("/"):
        if "{" not in segment and "}" not in segment:
            segments.append(segment)
            continue
        match = PATH_PARAMETER.match(segment)
        if match is None:
            raise Skip(f"path segment {segment!r} mixes text and a parameter: a path value "
                       "fills a whole segment")
        name = match.group(1)
        if name not in inputs.path_names:
            argument = argument_name(name, inputs.names, "path")
            inputs.arguments.append(Argument(argument, {"type": "string"}, True))
            inputs.path_names[name] = argument
            inputs.unmapped.append(f"path parameter {name!r} is not declared: taken as a "
                                   "required string")
        segments.append(f"{{{inputs.path_names[name]}}}")
    declared = {a for n, a in inputs.path_names.items() if f"{{{n}}}" not in path}
    for argument in declared:  # declared `in: path` but not in the path: nothing to fill
        inputs.arguments = [a for a in inputs.arguments if a.name != argument]
        inputs.unmapped.append(f"path parameter {argument!r} is not in the path: left out")
    written = "/".join(segments)
    return written if written.startswith("/") else f"/{written}"


def json_media(content: dict[str, Any]) -> str | None:
    """The JSON media type of a content map: application/json first, then any +json."""
    plain = [t for t in content if t.split(";")[0].strip().lower() == "application/json"]
    suffixed = [t for t in content if t.split(";")[0].strip().lower().endswith("+json")
                or t.strip() == "*/*"]
    found = plain or suffixed
    return found[0] if found else None


def _body(inputs: Inputs, document: Document, converter: Converter,
          body: dict[str, Any]) -> None:
    content = body.get("content") or {}
    if not body or not isinstance(content, dict) or not content:
        return
    media = json_media(content)
    if media is None:
        problem = f"request body: {', '.join(content)} is not sent (the gateway sends JSON)"
        if body.get("required") is True:
            raise Skip(f"required {problem}")
        inputs.unmapped.append(problem)
        return
    schema = converter.convert(document.mapping(content[media]).get("schema") or {})
    flat = object_properties(schema)
    if flat is not None and flat[0] and all(
            IDENTIFIER.match(name) and name not in RESERVED and name not in inputs.names.taken
            for name in flat[0]):
        props, required = flat
        for name, prop in props.items():
            inputs.names.claim(name)
            inputs.arguments.append(Argument(name, prop, name in required))
        inputs.body = {name: f"{{{name}}}" for name in props}
        return
    argument = argument_name("body", inputs.names, "json")
    if isinstance(schema, dict) and isinstance(body.get("description"), str):
        schema = {**schema, "description": _short(body["description"])}
    inputs.arguments.append(Argument(argument, schema, body.get("required") is True))
    inputs.body = f"{{{argument}}}"


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)
