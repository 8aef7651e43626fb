"""Swagger 2.0 lifted into the shape of OpenAPI 3.0, so one mapping serves both. Pure.

Only what the importer reads is lifted: servers from `schemes`, `host` and `basePath`; security
schemes; and each operation's parameters (`body` becomes a JSON `requestBody`, `formData` a form
body, `collectionFormat` a `style`), responses (`schema` under each `produces` type) and the
rest of its keys as they are. `definitions` stay where they are, so `$ref`s keep pointing there.
"""

from __future__ import annotations

from typing import Any, Final

from gateway.importer.refs import Document

METHODS: Final = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
SCHEMA_KEYS: Final = ("type", "format", "items", "default", "maximum", "exclusiveMaximum",
                      "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern",
                      "maxItems", "minItems", "uniqueItems", "enum", "multipleOf")
STYLES: Final = {"csv": ("form", False), "multi": ("form", True), "ssv": ("spaceDelimited", False),
                 "pipes": ("pipeDelimited", False), "tsv": ("tabDelimited", False)}
FLOWS: Final = {"implicit": "implicit", "password": "password",
                "application": "clientCredentials", "accessCode": "authorizationCode"}


def lift(document: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI 3.0-shaped copy of a Swagger 2.0 document."""
    refs = Document(document)
    lifted = dict(document)
    lifted["servers"] = _servers(document)
    lifted["components"] = {"securitySchemes": {
        name: _scheme(scheme) for name, scheme in (document.get("securityDefinitions")
                                                   or {}).items() if isinstance(scheme, dict)}}
    paths: dict[str, Any] = {}
    for path, item in (document.get("paths") or {}).items():
        item = refs.mapping(item)
        shared = item.get("parameters") or []
        paths[path] = {method: _operation(refs, document, op, shared)
                       for method, op in item.items()
                       if method in METHODS and isinstance(op, dict)}
    lifted["paths"] = paths
    return lifted


def _servers(document: dict[str, Any]) -> list[dict[str, Any]]:
    schemes = [s for s in document.get("schemes") or [] if s in ("https", "http")]
    base = str(document.get("basePath") or "")
    host = document.get("host")
    if not host:
        return [{"url": base or "/"}]
    scheme = "https" if "https" in schemes or not schemes else schemes[0]
    return [{"url": f"{scheme}://{host}{base}"}]


def _scheme(scheme: dict[str, Any]) -> dict[str, Any]:
    kind = scheme.get("type")
    if kind == "basic":
        return {"type": "http", "scheme": "basic", "description": scheme.get("description")}
    if kind == "oauth2":
        flow: dict[str, Any] = {"scopes": scheme.get("scopes") or {}}
        for key in ("authorizationUrl", "tokenUrl"):
            if key in scheme:
                flow[key] = scheme[key]
        return {"type": "oauth2", "description": scheme.get("description"),
                "flows": {FLOWS.get(str(scheme.get("flow")), "implicit"): flow}}
    return dict(scheme)


def _operation(refs: Document, document: dict[str, Any], op: dict[str, Any],
               shared: list[Any]) -> dict[str, Any]:
    lifted = {k: v for k, v in op.items() if k not in ("parameters", "responses")}
    consumes = op.get("consumes") or document.get("consumes") or ["application/json"]
    produces = op.get("produces") or document.get("produces") or ["application/json"]
    params: dict[tuple[str, str], dict[str, Any]] = {}
    for raw in [*shared, *(op.get("parameters") or [])]:
        param = refs.mapping(raw)
        params[str(param.get("name")), str(param.get("in"))] = param
    form = {name: p for (name, where), p in params.items() if where == "formData"}
    lifted["parameters"] = [_parameter(p) for (_, where), p in params.items()
                            if where not in ("body", "formData")]
    body = next((p for (_, where), p in params.items() if where == "body"), None)
    if body is not None:
        lifted["requestBody"] = {
            "required": body.get("required") is True, "description": body.get("description"),
            "content": {media: {"schema": body.get("schema") or {}} for media in consumes}}
    elif form:
        lifted["requestBody"] = _form_body(form, consumes)
    lifted["responses"] = {
        str(code): _response(refs.mapping(answer), produces)
        for code, answer in (op.get("responses") or {}).items()}
    return lifted


def _parameter(param: dict[str, Any]) -> dict[str, Any]:
    schema = {k: param[k] for k in SCHEMA_KEYS if k in param}
    lifted: dict[str, Any] = {k: param[k] for k in ("name", "in", "required", "description")
                              if k in param}
    lifted["schema"] = schema
    if param.get("type") == "array":
        style, explode = STYLES.get(str(param.get("collectionFormat", "csv")), ("form", False))
        if param.get("in") in ("path", "header"):
            style = "simple" if style == "form" else style
        lifted["style"], lifted["explode"] = style, explode
    return lifted


def _form_body(form: dict[str, dict[str, Any]], consumes: list[str]) -> dict[str, Any]:
    upload = any(p.get("type") == "file" for p in form.values())
    media = "multipart/form-data" if upload or "multipart/form-data" in consumes else (
        "application/x-www-form-urlencoded")
    schema = {"type": "object",
              "properties": {name: {k: p[k] for k in SCHEMA_KEYS if k in p}
                             for name, p in form.items()},
              "required": [name for name, p in form.items() if p.get("required") is True]}
    return {"required": bool(schema["required"]), "content": {media: {"schema": schema}}}


def _response(answer: dict[str, Any], produces: list[str]) -> dict[str, Any]:
    lifted: dict[str, Any] = {"description": answer.get("description", "")}
    if "schema" in answer:
        lifted["content"] = {media: {"schema": answer["schema"]} for media in produces}
    return lifted
