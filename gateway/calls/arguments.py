"""The checks a call's arguments pass before anything is sent: the input schema, the tool's
rules, and the personal-data gates. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.auth.principal import require_scopes
from gateway.calls.derive import OPERATORS
from gateway.errors import INVALID_PARAMS, ProtocolError, ToolExecutionError
from gateway.spec.compiled import CompiledCheck, CompiledTool
from gateway.spec.templates import ABSENT, RenderContext, render_value

MAX_PROBLEM_TEXT = 200
"""A schema problem quotes the value, which may be huge: longer messages are cut."""


def validated_arguments(tool: CompiledTool, arguments: Any) -> dict[str, Any]:
    """The call's arguments with defaults applied, or every problem found with them.

    Raises:
        ProtocolError: -32602 listing every argument problem.
    """
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise ProtocolError(INVALID_PARAMS, "Invalid arguments: must be an object",
                            {"tool": tool.name, "problems": ["arguments: must be an object"]})
    merged = {**tool.defaults, **arguments} if tool.defaults else arguments
    problems = [_problem(e) for e in tool.validator.iter_errors(merged)]
    if problems:
        raise ProtocolError(INVALID_PARAMS, f"Invalid arguments for tool {tool.name}",
                            {"tool": tool.name, "problems": problems})
    if tool.whole_numbers and any(type(merged.get(name)) in (float, list)
                                  for name in tool.whole_numbers):
        return _whole_numbers(merged, tool.whole_numbers)
    return merged


def _whole_numbers(arguments: dict[str, Any], integers: Mapping[str, bool]) -> dict[str, Any]:
    """Integer arguments sent as 1.0 (valid JSON Schema integers) become 1, so an upstream that
    parses integers gets one. `integers`: argument -> whether it is a list of integers."""
    fixed = dict(arguments)
    for name, is_list in integers.items():
        value = arguments.get(name)
        if not is_list and type(value) is float and value.is_integer():
            fixed[name] = int(value)
        elif is_list and type(value) is list:
            fixed[name] = [int(v) if type(v) is float and v.is_integer() else v for v in value]
    return fixed


def _problem(error: Any) -> str:
    where = "/".join(str(p) for p in error.instance_path) or "arguments"
    message = str(error.message)
    if len(message) > MAX_PROBLEM_TEXT:
        message = message[:MAX_PROBLEM_TEXT] + "…"
    return f"{where}: {message}"


def gate_personal_data(tool: CompiledTool, scopes: frozenset[str],
                       arguments: dict[str, Any]) -> None:
    """Tools that are all personal data, and arguments that search by it, need the PII scope.

    Raises:
        InsufficientScope: naming the scope and what needed it.
    """
    pii = tool.pii
    if pii is None:
        return
    if pii.required:
        require_scopes(scopes, frozenset({pii.scope}), f"The tool {tool.name} (personal data)")
    for path, scope in pii.arguments.items():
        if _given(arguments, path):
            what = "Searching by" if scope == pii.scope else "Setting"
            require_scopes(scopes, frozenset({scope}), f"{what} {'.'.join(path)} in {tool.name}")


def _given(arguments: dict[str, Any], path: tuple[str, ...]) -> bool:
    """Whether the call gives a value at `path` (an argument, or a key of its objects)."""
    value = arguments.get(path[0])
    if len(path) == 1:
        return value not in (None, "", [])
    items = value if isinstance(value, list) else [value]
    return any(isinstance(item, dict) and item.get(path[1]) not in (None, "", [])
               for item in items)


def check_rules(tool: CompiledTool, ctx: RenderContext) -> None:
    """Raises:
        ToolExecutionError: the first rule the call breaks, in the rule's own words.
    """
    enforce_rules(tool.checks, ctx)


def enforce_rules(checks: Sequence[CompiledCheck], ctx: RenderContext) -> None:
    """Raises:
        ToolExecutionError: the first of `checks` the call breaks, in the rule's own words.
    """
    for check in checks:
        value = render_value(check.value, ctx)
        if value is ABSENT:
            continue
        than = render_value(check.than, ctx)
        if than is ABSENT:
            continue  # nothing to compare with (e.g. no grant list for this kind of token)
        if not OPERATORS[check.op](value, than):
            message = render_value(check.message, ctx)
            raise ToolExecutionError(f"Refused: {message}" if message is not ABSENT
                                     else "Refused: the arguments break a rule of this tool.")
