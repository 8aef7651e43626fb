"""The spec compiler: validated spec models in, the immutable values of compiled.py out. Pure.

Everything that can be done once is done here: input schemas and their validators, templates,
JMESPath expressions, budgets, annotations, the wire form of each tool. The loader calls it once
per tool after the cross-field checks (checks.py) passed, and reports what it raises.
"""

from __future__ import annotations

from typing import Any, Final

import jsonschema_rs

from gateway.protocol.sdk_inbound import x_mcp_header_map
from gateway.spec.compile_filter import compile_filter, filtered_personal_arguments
from gateway.spec.compiled import (
    CollectSource,
    CompiledAggregate,
    CompiledCheck,
    CompiledInput,
    CompiledLookup,
    CompiledRequest,
    CompiledTool,
    PathPart,
    PiiRules,
    Preview,
    RedactionRules,
    RequestSource,
    ResultShape,
    ResultSource,
    Source,
    Verification,
)
from gateway.spec.derived_specs import AggregateSpec
from gateway.spec.inputs import InputRequestSpec, InputRound
from gateway.spec.jmes import Expression, compile_expression
from gateway.spec.located import located
from gateway.spec.models import Budget, ServiceSpec
from gateway.spec.pages import PageDecoder, page_decoder
from gateway.spec.reads import PrunedDecoder, pruning_decoder
from gateway.spec.schema import derived_annotations, input_schema, with_confirmation
from gateway.spec.templates import compile_template, compile_value, value_refs
from gateway.spec.tools import (
    CheckSpec,
    CollectSpec,
    LookupSpec,
    RequestSpec,
    ToolSpec,
    WriteSpec,
)

METRIC_FUNCTIONS: Final = frozenset({"count", "distinct", "nps", "avg", "sum", "min", "max",
                                     "count_if", "first"})


def compile_tool(tool: ToolSpec, service: ServiceSpec) -> CompiledTool:
    """Compile one validated tool spec.

    Raises:
        ValueError, TemplateSyntaxError, jmespath.exceptions.JMESPathError: reported by the loader.
    """
    with located("input_schema" if tool.input_schema is not None else "input"):
        schema = tool.input_schema if tool.input_schema is not None else input_schema(tool.input)
        if tool.kind == "write":
            schema = with_confirmation(schema)
        validator = jsonschema_rs.validator_for(schema, validate_formats=True)
    source = compile_source(tool, service)
    pii = compile_pii(tool, service, source)
    scopes = frozenset(tool.scopes)
    if pii is not None and pii.required:
        # A tool that returns nothing but personal data needs the PII scope like any other: it
        # is not listed without it, and calling it answers 403 naming it.
        scopes |= {pii.scope}
    return CompiledTool(
        spec=tool,
        service=service.name,
        source=source,
        input_schema=schema,
        validator=validator,
        wire=tool_wire(tool, schema),
        scopes=scopes,
        anonymous=tool.name in service.auth.anonymous_tools or not service.auth.required,
        defaults={k: p.default for k, p in tool.input.items() if "default" in p.model_fields_set},
        shape=compile_shape(tool, service),
        pii=pii,
        checks=tuple(compile_check(index, check) for index, check in enumerate(tool.checks)),
        lookups=tuple(compile_lookup(name, spec, service) for name, spec in tool.lookups.items()),
        preview=compile_preview(tool.write, service),
        verification=compile_verification(tool.write, service),
        max_in_flight=tool.max_in_flight or service.upstream.max_in_flight_per_tool,
        param_headers=bool(x_mcp_header_map(schema)),
        whole_numbers=integer_arguments(schema),
        rounds=compile_rounds(tool.input_required),
    )


def compile_rounds(rounds: list[InputRound]) -> tuple[tuple[CompiledInput, ...], ...]:
    """What a call asks of its client, round by round; each request's params are templates."""
    return tuple(tuple(compile_input(index, key, request) for key, request in asked.items())
                 for index, asked in enumerate(rounds))


def compile_input(index: int, key: str, request: InputRequestSpec) -> CompiledInput:
    with located("input_required", index, key, "params"):
        return CompiledInput(key, request.method, compile_value(request.params), request.required)


def integer_arguments(schema: dict[str, Any]) -> dict[str, bool]:
    """The schema's integer arguments: name -> whether it is a list of integers."""
    found = {}
    for name, prop in (schema.get("properties") or {}).items():
        if not isinstance(prop, dict):
            continue
        if _integer(prop):
            found[name] = False
        elif isinstance(prop.get("items"), dict) and _integer(prop["items"]):
            found[name] = True
    return found


def _integer(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    return kind == "integer" or (isinstance(kind, list) and "integer" in kind)


def compile_check(index: int, check: CheckSpec, *where: str) -> CompiledCheck:
    with located(*(where or ("checks",)), index):
        return CompiledCheck(compile_value(check.value), check.op, compile_value(check.than),
                             compile_value(check.message))


def compile_preview(write: WriteSpec | None, service: ServiceSpec) -> Preview | None:
    if write is None or write.preview is None:
        return None
    with located("write", "preview"):
        request = compile_request(write.preview, service)
    with located("write", "preview_select"):
        select = compile_expression(write.preview_select) if write.preview_select else None
    checks = tuple(compile_check(index, check, "write", "preview_checks")
                   for index, check in enumerate(write.preview_checks))
    return Preview(request, select, checks)


def compile_verification(write: WriteSpec | None, service: ServiceSpec) -> Verification | None:
    if write is None or write.verify is None:
        return None
    with located("write", "verify", "request"):
        request = compile_request(write.verify.request, service)
    with located("write", "verify", "applied"):
        applied = compile_expression(write.verify.applied)
    return Verification(request, applied, write.verify.baseline, write.verify.hint.rstrip("."))


def tool_wire(tool: ToolSpec, schema: dict[str, Any]) -> dict[str, Any]:
    """The Tool object as tools/list sends it."""
    wire: dict[str, Any] = {"name": tool.name, "description": tool.description,
                            "inputSchema": schema, "annotations": derived_annotations(tool)}
    if tool.title:
        wire["title"] = tool.title
    if tool.response.output_schema is not None:
        wire["outputSchema"] = tool.response.output_schema
    return wire


def compile_source(tool: ToolSpec, service: ServiceSpec) -> Source:
    """The one place the tool's answer comes from (the spec model guarantees exactly one)."""
    if tool.collect is not None:
        return compile_collect(tool, tool.collect, service)
    if tool.request is not None:
        with located("request"):
            return RequestSource(compile_request(tool.request, service))
    with located("result"):
        return ResultSource(compile_value(tool.result))


def compile_collect(tool: ToolSpec, collect: CollectSpec, service: ServiceSpec) -> CollectSource:
    pages = collect.pages
    with located("collect", "request"):
        request = compile_request(collect.request, service)
    with located("collect", "items"):
        items = compile_expression(collect.items)
    with located("collect", "pages", "stop_when"):
        stop_when = compile_expression(pages.stop_when) if pages and pages.stop_when else None
    with located("collect", "pages", "total"):
        page_total = compile_expression(pages.total) if pages and pages.total else None
    with located("collect", "limit"):
        limit = compile_value(collect.limit) if collect.limit is not None else None
    conditions, match = compile_filter(tool)
    with located("aggregate"):
        aggregate = compile_aggregate(tool.aggregate) if tool.aggregate else None
    return CollectSource(request=request, items=items,
                         page_param=pages.param if pages else None,
                         page_start=pages.start if pages else 1, stop_when=stop_when,
                         max_pages=pages.max_pages if pages else 1,
                         max_items=collect.max_items, limit=limit,
                         conditions=conditions, match=match, aggregate=aggregate,
                         page_total=page_total)


def _decoder(select: Expression | None, *, templated: bool
             ) -> PageDecoder | PrunedDecoder | None:
    """How a single answer is decoded: its rows kept as bytes for the one-pass page (not where
    content templates read the result's rows as objects), pruned to what is read, or (None)
    whole."""
    if select is None:
        return None
    page = None if templated else page_decoder(select.parsed)
    return page or pruning_decoder(select.parsed)


def compile_shape(tool: ToolSpec, service: ServiceSpec) -> ResultShape:
    response = tool.response
    with located("response", "select"):
        select = compile_expression(response.select) if response.select else None
    with located("response", "extra"):
        extra = compile_value(response.extra)
    with located("response", "empty_message"):
        empty = compile_template(response.empty_message) if response.empty_message else None
    with located("response", "content"):
        content = compile_value(response.content) if response.content else None
    return ResultShape(
        select=select,
        pruned=_decoder(select, templated=content is not None),
        extra=extra,
        empty_message=empty,
        content=content,
        budget=Budget(
            max_items=_first(response.budget, "max_items", service.budget.max_items),
            max_bytes=_first(response.budget, "max_bytes", service.budget.max_bytes),
        ),
        paging_hint=paging_hint(set(tool.input) | set(
            (tool.input_schema or {}).get("properties") or {})),
    )


def compile_pii(tool: ToolSpec, service: ServiceSpec, source: Source) -> PiiRules | None:
    """The service's PII policy joined with the tool's own additions; None without a policy."""
    policy = service.pii
    if policy is None:
        return None
    scopes = {"read": policy.scope, "write": policy.write_scope or policy.scope}
    arguments: dict[tuple[str, ...], str] = {}
    for name, prop in tool.input.items():
        if prop.pii is not None:
            arguments[(name,)] = scopes[prop.pii]
        nested = prop.items.properties if prop.items is not None else prop.properties
        for key, inner in (nested or {}).items():
            if inner.pii is not None:
                arguments[(name, key)] = scopes[inner.pii]
    rules = RedactionRules(pseudonymise=frozenset([*policy.fields, *tool.pii.fields]),
                           drop=frozenset([*policy.drop, *tool.pii.drop]),
                           scrub_text=policy.scrub_text)
    if isinstance(source, CollectSource):
        for name in filtered_personal_arguments(source, rules.pseudonymise | rules.drop):
            arguments.setdefault((name,), policy.scope)
    return PiiRules(policy.scope, rules, tool.pii.required, arguments)


def paging_hint(argument_names: set[str]) -> str:
    """How a caller of this tool gets the rest of a trimmed result."""
    for names, hint in (
        ({"page_cursor"}, "Call again with page_cursor set to next_cursor for the rest."),
        ({"page"}, "Call again with the next page for the rest, or a smaller limit."),
        ({"limit"}, "Call again with a smaller limit or narrower filters."),
    ):
        if names & argument_names:
            return hint
    return "Narrow the request (filters, ids) to get the rest."


def compile_path(path: str) -> tuple[PathPart, ...]:
    """Split a path template into literal pieces and whole-segment arguments.

    Raises:
        ValueError: an argument that is not a whole path segment, or a non-argument reference.
    """
    parts: list[PathPart] = []
    for segment in path.split("/")[1:]:
        parts.append(PathPart(literal="/"))
        template = compile_template(segment)
        ref = template.whole
        if ref is not None:
            if ref.source == "now":
                raise ValueError(f"path segment {segment!r} may only name an argument or "
                                 "principal field")
            parts.append(PathPart(ref=ref))
        elif template.refs:
            raise ValueError(f"path segment {segment!r} must be a whole {{argument}} or literal")
        elif segment:
            parts.append(PathPart(literal=segment))
    return tuple(parts)


def compile_request(request: RequestSpec, service: ServiceSpec) -> CompiledRequest:
    """Raises:
        ValueError, TemplateSyntaxError: reported by the loader.
    """
    with located("path"):
        path = compile_path(request.path)
    with located("query"):
        query = compile_value(request.query)
    with located("headers"):
        headers = {k: compile_template(v) for k, v in request.headers.items()}
    with located("body"):
        body = compile_value(request.body) if request.body is not None else None
    return CompiledRequest(method=request.method, path=path, query=query, headers=headers,
                           body=body, query_style=request.query_style
                           or service.upstream.query_style,
                           retryable=request.method in ("GET", "HEAD") or request.idempotent)


def compile_lookup(name: str, spec: LookupSpec, service: ServiceSpec) -> CompiledLookup:
    with located("lookups", name, "request"):
        request = compile_request(spec.request, service)
    refs = [p.ref for p in request.path if p.ref is not None]
    refs += value_refs(request.query) + value_refs(request.body)
    refs += [r for t in request.headers.values() for r in t.refs]
    with located("lookups", name, "select"):
        select = compile_expression(spec.select)
    return CompiledLookup(name, request, select,
                          frozenset(r.name for r in refs if r.source == "arg"))


def compile_aggregate(spec: AggregateSpec) -> CompiledAggregate:
    """Raises:
        ValueError: an unknown metric, or a sort key that names no metric.
    """
    metrics = {}
    for name, text in spec.metrics.items():
        function, field_text = parse_metric(text)
        metrics[name] = (function, compile_expression(field_text) if field_text else None)
    if spec.sort is not None and spec.sort not in metrics:
        raise ValueError(f"aggregate.sort names no metric: {spec.sort!r}")
    return CompiledAggregate(
        by=compile_value(spec.by),
        groups={name: compile_expression(expr) for name, expr in spec.groups.items()},
        metrics=metrics,
        sort=spec.sort,
        compare_field=compile_expression(spec.compare.field) if spec.compare else None,
        compare_days=compile_value(spec.compare.days) if spec.compare else None,
    )


def parse_metric(text: str) -> tuple[str, str | None]:
    """`count` or `avg(score)` -> (function, field expression).

    Raises:
        ValueError: an unknown function or a missing field.
    """
    text = text.strip()
    if text == "count":
        return "count", None
    name, paren, rest = text.partition("(")
    if not paren or not rest.endswith(")") or name not in METRIC_FUNCTIONS - {"count"}:
        raise ValueError(f"metric {text!r} must be count or one of "
                         f"{', '.join(sorted(METRIC_FUNCTIONS - {'count'}))}(field)")
    return name, rest[:-1].strip()


def _first(budget: Budget | None, key: str, fallback: int | None) -> int | None:
    value = getattr(budget, key) if budget is not None else None
    return value if value is not None else fallback
