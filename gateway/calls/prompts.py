"""prompts/get: a prompt's messages with its arguments checked and filled in. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from gateway.errors import INVALID_PARAMS, ProtocolError
from gateway.spec.compiled import CompiledPrompt
from gateway.spec.templates import ABSENT, RenderContext, Template, render, render_value


def prompt_messages(prompt: CompiledPrompt, given: Any, now: datetime,
                    inputs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The GetPromptResult of one prompt for these arguments (and the client's answers to what
    the prompt asked, `inputs`).

    Raises:
        ProtocolError: -32602 for a missing, unknown or malformed argument.
    """
    ctx = RenderContext(prompt_arguments(prompt, given), {}, now, inputs=inputs or {})
    messages = []
    for role, template in prompt.messages:
        if isinstance(template, Template):
            text = render(template, ctx)
            block: Any = {"type": "text", "text": "" if text is ABSENT else str(text)}
        else:
            block = render_value(template, ctx)
        messages.append({"role": role, "content": block})
    result: dict[str, Any] = {"messages": messages}
    if prompt.spec.description:
        result["description"] = prompt.spec.description
    return result


def prompt_arguments(prompt: CompiledPrompt, given: Any) -> dict[str, Any]:
    """The arguments a prompt is rendered with (empty texts left out).

    Raises:
        ProtocolError: -32602 for a missing, unknown or malformed argument.
    """
    given = given or {}
    problems = prompt_problems(prompt, given)
    if problems:
        raise ProtocolError(INVALID_PARAMS, f"Invalid arguments for prompt {prompt.spec.name}",
                            {"prompt": prompt.spec.name, "problems": problems})
    return {k: v for k, v in given.items() if v != ""}


def prompt_problems(prompt: CompiledPrompt, given: Any) -> list[str]:
    """Every problem with a prompt's arguments: unknown, missing, malformed."""
    given = given or {}
    if not isinstance(given, dict):
        return ["arguments: must be an object of strings"]
    declared = {a.name: a for a in prompt.spec.arguments}
    problems = [f"{name}: unknown argument" for name in given if name not in declared]
    for argument in prompt.spec.arguments:
        value = given.get(argument.name)
        if value is None or value == "":
            if argument.required:
                problems.append(f"{argument.name}: required")
            continue
        if not isinstance(value, str):
            problems.append(f"{argument.name}: must be a string")
        elif len(value) > argument.max_length:
            problems.append(f"{argument.name}: longer than {argument.max_length} characters")
        elif (pattern := prompt.patterns.get(argument.name)) and not pattern.fullmatch(value):
            problems.append(f"{argument.name}: does not match {pattern.pattern}")
    return problems
