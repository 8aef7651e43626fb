"""The compiler of resources and prompts: a resource is a read compiled like a tool and addressed
by URI; a prompt is message templates. Pure, like compiler.py.
"""

from __future__ import annotations

import re
from typing import Any, Final

from gateway.spec.compiled import (
    CompiledPrompt,
    CompiledResource,
)
from gateway.spec.compiler import compile_rounds, compile_tool
from gateway.spec.located import located
from gateway.spec.models import ServiceSpec
from gateway.spec.templates import compile_template, compile_value
from gateway.spec.tools import (
    PromptSpec,
    ResourceSpec,
)

_URI_VARIABLE: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def compile_resource(resource: ResourceSpec, service: ServiceSpec) -> CompiledResource:
    """Raises:
        ValueError, TemplateSyntaxError, jmespath errors: reported by the loader.
    """
    variables = tuple(_URI_VARIABLE.findall(resource.uri))
    pieces = _URI_VARIABLE.split(resource.uri)
    regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/?#]+)"
                    for i, p in enumerate(pieces))
    wire: dict[str, Any] = {"name": resource.name, "mimeType": resource.mime_type}
    wire["uriTemplate" if variables else "uri"] = resource.uri
    if resource.title:
        wire["title"] = resource.title
    if resource.description:
        wire["description"] = resource.description
    read = compile_tool(resource.as_tool(), service)
    with located("text"):
        text = compile_template(resource.text) if resource.text is not None else None
    with located("blob"):
        blob = compile_template(resource.blob) if resource.blob is not None else None
    return CompiledResource(resource, read, re.compile(regex), variables, wire, text, blob)


def compile_prompt(prompt: PromptSpec) -> CompiledPrompt:
    """Raises:
        TemplateSyntaxError, re.error: reported by the loader.
    """
    wire: dict[str, Any] = {"name": prompt.name, "arguments": [
        {"name": a.name, "description": a.description, "required": a.required}
        for a in prompt.arguments]}
    if prompt.title:
        wire["title"] = prompt.title
    if prompt.description:
        wire["description"] = prompt.description
    messages = []
    for index, message in enumerate(prompt.messages):
        with located("messages", index, "text" if message.text is not None else "content"):
            messages.append((message.role, compile_template(message.text)
                             if message.text is not None else compile_value(message.content)))
    return CompiledPrompt(prompt, wire, tuple(messages),
                          {a.name: re.compile(a.pattern) for a in prompt.arguments if a.pattern},
                          frozenset(prompt.scopes), compile_rounds(prompt.input_required))
