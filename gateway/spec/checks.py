"""Cross-field checks of a spec that a schema cannot express. Pure.

Two kinds: declarations checked before compiling (scopes in the vocabulary, valid regular
expressions, an object output schema), and the references of the compiled templates checked
after (every `{name}` is a declared argument or principal field, every path argument is always
present). Each problem comes back as (key path below the checked item, message).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from gateway.spec.compiled import (
    CollectSource,
    CompiledCheck,
    CompiledGiven,
    CompiledInput,
    CompiledPrompt,
    CompiledRequest,
    CompiledTool,
    RequestSource,
    ResultSource,
)
from gateway.spec.models import ServiceSpec
from gateway.spec.templates import Ref, value_refs
from gateway.spec.tools import PromptSpec, ToolSpec

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]


def check_service(service: ServiceSpec) -> list[Problem]:
    problems: list[Problem] = []
    auth = service.auth
    if auth.resolver == "introspection" and not auth.introspection_url:
        problems.append((("auth", "resolver"),
                         "auth.resolver introspection needs auth.introspection_url"))
    if auth.token_pattern is not None and (error := _regex_error(auth.token_pattern)):
        problems.append((("auth", "token_pattern"),
                         f"auth.token_pattern: invalid regular expression: {error}"))
    for index, refused in enumerate(auth.refuse_patterns):
        if error := _regex_error(refused.pattern):
            problems.append((("auth", "refuse_patterns", index, "pattern"),
                             f"auth.refuse_patterns: invalid regular expression: {error}"))
    return problems


def check_declarations(tool: ToolSpec, service: ServiceSpec) -> list[Problem]:
    """What must hold before the tool can be compiled at all."""
    problems: list[Problem] = []
    vocabulary = {s.name for s in service.scopes}
    problems.extend((("scopes",), f"scope {scope!r} is not declared in service.yaml scopes")
                    for scope in tool.scopes if vocabulary and scope not in vocabulary)
    for name, prop in tool.input.items():
        if prop.pattern is not None and (error := _regex_error(prop.pattern)):
            problems.append((("input", name, "pattern"), f"invalid pattern: {error}"))
    schema = tool.response.output_schema
    if schema is not None and schema.get("type") != "object":
        problems.append((("response", "output_schema"), "output_schema must have type: object"))
    return problems


@dataclass(frozen=True)
class _Names:
    """What the templates of one tool may refer to."""

    arguments: frozenset[str]
    principal: frozenset[str]
    always_given: frozenset[str]
    """Arguments that are required or have a default: the only ones a path may need."""
    looked_up: frozenset[str]
    inputs: frozenset[str] = frozenset()
    """Keys of the input requests whose answers are known by then (`{input.<key>}`)."""


def check_references(tool: CompiledTool, service: ServiceSpec) -> list[Problem]:
    """Every reference of the compiled tool names something that exists when it is rendered."""
    properties = tool.input_schema.get("properties") or {}
    looked_up = frozenset(lookup.name for lookup in tool.lookups)
    names = _Names(
        arguments=frozenset(properties) | looked_up,
        principal=frozenset({"account", "subject", *service.auth.claims.extra}),
        always_given=frozenset(tool.input_schema.get("required") or ()) | frozenset(
            name for name, schema in properties.items()
            if isinstance(schema, dict) and "default" in schema),
        looked_up=looked_up,
    )
    problems = _round_problems(tool.rounds, names)
    names = replace(names, inputs=frozenset(r.key for asked in tool.rounds for r in asked))
    for loc, request in _requests(tool):
        problems.extend(_request_problems(request, loc, names))
    for loc, value in _values(tool):
        problems.extend((loc, message) for ref in value_refs(value)
                        if (message := _ref_problem(ref, loc, names)))
    return problems


def _requests(tool: CompiledTool) -> Iterator[tuple[Loc, CompiledRequest]]:
    source = tool.source
    if isinstance(source, RequestSource):
        yield ("request",), source.request
    elif isinstance(source, CollectSource):
        yield ("collect", "request"), source.request
    if tool.preview is not None:
        yield ("write", "preview"), tool.preview.request
    if tool.verification is not None:
        yield ("write", "verify", "request"), tool.verification.request
    for lookup in tool.lookups:
        yield ("lookups", lookup.name, "request"), lookup.request


def _values(tool: CompiledTool) -> Iterator[tuple[Loc, Any]]:
    """Every compiled template of the tool outside its requests, with where it is written."""
    source, shape = tool.source, tool.shape
    if isinstance(source, ResultSource):
        yield ("result",), source.template
    if isinstance(source, CollectSource):
        yield ("collect", "limit"), source.limit
        for index, entry in enumerate(source.conditions):
            if isinstance(entry, CompiledGiven):
                yield ("filter", index, "given"), entry.given
                yield ("filter", index, "when"), entry.when
            else:
                yield ("filter", index, "value"), entry.value
        yield ("filter_match",), source.match
        if source.aggregate is not None:
            yield ("aggregate", "by"), source.aggregate.by
            yield ("aggregate", "compare", "days"), source.aggregate.compare_days
    yield ("response", "extra"), shape.extra
    yield ("response", "empty_message"), shape.empty_message
    yield ("response", "content"), shape.content
    rules: list[tuple[Loc, tuple[CompiledCheck, ...]]] = [(("checks",), tool.checks)]
    if tool.preview is not None:
        rules.append((("write", "preview_checks"), tool.preview.checks))
    for where, checks in rules:
        for index, check in enumerate(checks):
            yield (*where, index, "value"), check.value
            yield (*where, index, "than"), check.than
            yield (*where, index, "message"), check.message


def _request_problems(request: CompiledRequest, loc: Loc, names: _Names) -> Iterator[Problem]:
    in_lookup = loc[0] == "lookups"
    for part in request.path:
        ref = part.ref
        if ref is None:
            continue
        where = (*loc, "path")
        if ref.source != "arg":
            if message := _ref_problem(ref, where, names):
                yield where, message
        elif ref.name not in names.arguments:
            yield where, f"path names undeclared argument {{{ref.name}}}"
        elif in_lookup and ref.name in names.looked_up:
            yield where, f"a lookup's path cannot need a looked-up value {{{ref.name}}}"
        elif not (in_lookup or ref.name in names.looked_up or ref.name in names.always_given):
            # A lookup's own path runs only when every argument it names was given, and a
            # looked-up value is absent only when its lookup could not run.
            yield where, f"path argument {{{ref.name}}} must be required or have a default"
    for key, value in (("query", request.query), ("body", request.body),
                       ("headers", request.headers)):
        for ref in value_refs(value):
            if message := _ref_problem(ref, (*loc, key), names):
                yield (*loc, key), message


def _round_problems(rounds: tuple[tuple[CompiledInput, ...], ...],
                    names: _Names) -> list[Problem]:
    """The params of each round may use the arguments and the answers of earlier rounds."""
    problems: list[Problem] = []
    for index, asked in enumerate(rounds):
        for request in asked:
            loc: Loc = ("input_required", index, request.key, "params")
            problems.extend((loc, message) for ref in value_refs(request.params)
                            if (message := _ref_problem(ref, loc, names)))
        names = replace(names, inputs=names.inputs | {r.key for r in asked})
    return problems


def _ref_problem(ref: Ref, loc: Loc, names: _Names) -> str | None:
    if ref.source == "arg" and ref.name not in names.arguments:
        return f"{loc[-1]} names undeclared argument {{{ref.name}}}"
    if ref.source == "input" and ref.name.partition(".")[0] not in names.inputs:
        return (f"{{input.{ref.name}}} names no input request answered by then (input_required "
                "declares the keys, round by round)")
    if ref.source == "principal" and ref.name not in names.principal:
        known = ", ".join(sorted(names.principal))
        return f"{{principal.{ref.name}}}: the principal has only {known}"
    return None


def check_prompt_declarations(prompt: PromptSpec) -> list[Problem]:
    return [(("arguments", index, "pattern"), f"invalid pattern: {error}")
            for index, argument in enumerate(prompt.arguments)
            if argument.pattern is not None and (error := _regex_error(argument.pattern))]


def check_prompt_references(prompt: CompiledPrompt) -> list[Problem]:
    declared = frozenset(a.name for a in prompt.spec.arguments)
    names = _Names(declared, frozenset(), declared, frozenset())
    problems = _round_problems(prompt.rounds, names)
    names = replace(names, inputs=frozenset(r.key for asked in prompt.rounds for r in asked))
    for index, ((_, message), written) in enumerate(zip(prompt.messages, prompt.spec.messages,
                                                        strict=True)):
        loc: Loc = ("messages", index, "text" if written.text is not None else "content")
        problems.extend((loc, f"message names undeclared argument {{{ref.name}}}")
                        for ref in value_refs(message)
                        if ref.source == "arg" and ref.name not in declared)
        problems.extend((loc, problem) for ref in value_refs(message)
                        if ref.source == "input" and (problem := _ref_problem(ref, loc, names)))
    return problems


def check_resource_uri(uri: str, tool: ToolSpec) -> list[Problem]:
    """Every `{variable}` of a resource URI is a required argument of its read."""
    problems: list[Problem] = []
    for variable in re.findall(r"\{([^{}]*)\}", uri):
        declared = tool.input.get(variable)
        if declared is None or declared.required is not True:
            problems.append((("uri",), f"URI variable {{{variable}}} must be a required input"))
    return problems


def _regex_error(pattern: str) -> str | None:
    try:
        re.compile(pattern)
    except re.error as exc:
        return str(exc)
    return None
