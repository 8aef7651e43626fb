"""The compiler's part for `filter` and `filter_match`: fixed conditions, conditions the caller
gives as data, and which arguments reach fields the PII policy hides through them. Pure.
"""

from __future__ import annotations

from typing import Any

from gateway.spec.compiled import CollectSource, CompiledCondition, CompiledGiven
from gateway.spec.derived_specs import GivenConditionsSpec
from gateway.spec.jmes import Expression, compile_expression
from gateway.spec.located import located
from gateway.spec.templates import Expr, Template, compile_value, value_refs
from gateway.spec.tools import ToolSpec


def compile_filter(tool: ToolSpec) -> tuple[tuple[CompiledCondition | CompiledGiven, ...], Any]:
    """The tool's filter entries and its compiled `filter_match` (None: all).

    Raises:
        CompileProblem: an expression, template or field name that does not compile.
    """
    entries: list[CompiledCondition | CompiledGiven] = []
    for index, entry in enumerate(tool.filter):
        with located("filter", index):
            if isinstance(entry, GivenConditionsSpec):
                entries.append(compile_given(entry))
            else:
                entries.append(CompiledCondition(compile_expression(entry.field), entry.op,
                                                 compile_value(entry.value)))
    with located("filter_match"):
        match = compile_value(tool.filter_match) if tool.filter_match is not None else None
    return tuple(entries), match


def compile_given(spec: GivenConditionsSpec) -> CompiledGiven:
    fields: dict[str, Expression] = {}
    families: dict[str, Expression] = {}
    for name, text in spec.fields.items():
        with located("fields", name):
            if "*" in name[:-1]:
                raise ValueError(f"field name {name!r}: `*` may only end a family's name")
            target = families if name.endswith("*") else fields
            target[name.removesuffix("*")] = compile_expression(text)
    with located("given"):
        given = compile_value(spec.given)
    with located("when"):
        when = compile_value(spec.when) if spec.when is not None else None
    return CompiledGiven(given, fields, families, when)


def filtered_personal_arguments(source: CollectSource, personal: frozenset[str]) -> set[str]:
    """The arguments that filter collected items on a field the PII policy hides: giving them
    needs the PII scope, or a caller could find hidden values by trying them (binary search on
    `gt` included). Read from the compiled conditions."""
    hidden = {key.casefold() for key in personal}
    names: set[str] = set()
    for entry in source.conditions:
        if isinstance(entry, CompiledCondition):
            if field_names(entry.field.parsed) & hidden:
                names |= given_arguments(entry.value)
        elif any(field_names(e.parsed) & hidden
                 for e in (*entry.fields.values(), *entry.families.values())):
            names |= given_arguments(entry.given)
    return names


def given_arguments(value: Any) -> set[str]:
    """The arguments a compiled value takes its data from: its references, and the
    `args.<name>` an `$expr` reads."""
    if isinstance(value, Template):
        return {ref.name for ref in value.refs if ref.source == "arg"}
    if isinstance(value, Expr):
        return _args_read(value.expression.parsed)
    if isinstance(value, dict | list):
        items = value.values() if isinstance(value, dict) else value
        return set().union(*(given_arguments(item) for item in items))
    return {ref.name for ref in value_refs(value) if ref.source == "arg"}


def _args_read(node: Any) -> set[str]:
    if not isinstance(node, dict):
        return set()
    children = node.get("children", [])
    found = set()
    if (node.get("type") == "subexpression" and len(children) == 2
            and children[0].get("type") == "field" and children[0].get("value") == "args"
            and children[1].get("type") == "field"):
        found.add(str(children[1]["value"]))
    for child in children:
        found |= _args_read(child)
    return found


def field_names(node: Any) -> set[str]:
    """Every field name a JMESPath parse tree reads, case-folded."""
    if isinstance(node, dict):
        names = {str(node["value"]).casefold()} if node.get("type") == "field" else set()
        for child in node.get("children", []):
            names |= field_names(child)
        return names
    if isinstance(node, list):
        return set().union(*(field_names(child) for child in node)) if node else set()
    return set()
