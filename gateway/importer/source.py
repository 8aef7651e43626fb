"""Reading the document to import: a file or an http(s) URL, JSON or YAML, checked to be OpenAPI
3.x or Swagger 2.0. Its only I/O is that one read; parsing is pure.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Final

import yaml

MAX_BYTES: Final = 20_000_000
"""The largest document read: far above real API descriptions, far below a runaway download."""
FETCH_TIMEOUT_S: Final = 30.0
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class SourceError(Exception):
    """The document cannot be read, or is not an OpenAPI 3.x / Swagger 2.0 document. Its message
    is one line naming the source and what is wrong."""


def _loader_class() -> Any:
    """The safe loader (libyaml's when PyYAML was built with it) without implicit timestamps: a
    `2024-05-01` example or default stays the text it is in JSON, not a date that is no JSON."""
    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    resolvers = {first: [(tag, regexp) for tag, regexp in found if tag != _TIMESTAMP]
                 for first, found in base.yaml_implicit_resolvers.items()}
    return type("DocumentLoader", (base,), {"yaml_implicit_resolvers": resolvers})


_LOADER: Final = _loader_class()


def dialect(version: str) -> str:
    """`Swagger 2.0`, `OpenAPI 3.1.0`: how a version is named to people."""
    return f"Swagger {version}" if version == "2.0" else f"OpenAPI {version}"


def read_source(source: str) -> tuple[dict[str, Any], str]:
    """The parsed document and its version (`2.0`, `3.0.3`, `3.1.0`...).

    Raises:
        SourceError: unreadable, too large, not JSON or YAML, or not an OpenAPI document.
    """
    if source.startswith(("http://", "https://")):
        raw = _fetch(source)
    else:
        try:
            with Path(source).open("rb") as file:
                raw = file.read(MAX_BYTES + 1)
        except OSError as exc:
            raise SourceError(f"{source}: cannot read: {exc.strerror or exc}") from exc
    if len(raw) > MAX_BYTES:
        raise SourceError(f"{source}: larger than {MAX_BYTES} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{source}: not UTF-8 text") from exc
    document = parse(text, source)
    return document, version_of(document, source)


def _fetch(url: str) -> bytes:
    request = urllib.request.Request(  # noqa: S310 - the scheme is http(s), checked by the caller
        url, headers={"Accept": "application/json, application/yaml;q=0.9, */*;q=0.5"})
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as answer:  # noqa: S310 - as above
            body: bytes = answer.read(MAX_BYTES + 1)
            return body
    except urllib.error.HTTPError as exc:
        raise SourceError(f"{url}: the server answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise SourceError(f"{url}: cannot fetch: {reason}") from exc


def parse(text: str, name: str) -> dict[str, Any]:
    """JSON when the text starts with `{`, YAML otherwise; keys made text (YAML reads `200:` as
    a number).

    Raises:
        SourceError: not JSON or YAML, or not a mapping.
    """
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SourceError(f"{name}: not valid JSON: {exc}") from exc
    else:
        loader = _LOADER(text)
        try:
            data = loader.get_single_data()
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or "syntax error"
            raise SourceError(f"{name}: not valid YAML{where}: {problem}") from exc
        finally:
            loader.dispose()
        data = _text_keys(data)
    if not isinstance(data, dict):
        raise SourceError(f"{name}: not an OpenAPI document (the top level is not a mapping)")
    return data


def _text_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _text_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_text_keys(v) for v in value]
    return value


def version_of(document: dict[str, Any], name: str) -> str:
    """Raises: SourceError unless the document says `openapi: 3.x` or `swagger: "2.0"`."""
    openapi, swagger = document.get("openapi"), document.get("swagger")
    if isinstance(openapi, str) and openapi.startswith("3."):
        version = openapi
    elif str(swagger) == "2.0":
        version = "2.0"
    else:
        found = f"openapi: {openapi}" if openapi is not None else (
            f"swagger: {swagger}" if swagger is not None
            else "it has neither an `openapi` nor a `swagger` key")
        raise SourceError(f"{name}: not an OpenAPI 3.x or Swagger 2.0 document ({found})")
    paths = document.get("paths", {})
    if not isinstance(paths, dict):
        raise SourceError(f"{name}: `paths` is not a mapping")
    return version
