"""Value templates of the spec format, compiled once at load and rendered per call. Pure.

A template string refers to values in braces: `{page}` (an argument), `{principal.account}`,
`{principal.subject}` (the verified caller), `{now}` (the current UTC time, ISO 8601),
`{now-30d}` / `{now+1h}` (offsets), `{now-(days)d}` (an offset counted by an argument),
`{now-30d:date}` (a date) and `{now-11mo:month}` (calendar months, as YYYY-MM). `{a ?? b}` takes
the first of several that is present (`{start_date ?? now-30d:date}`, `{form ?? 'every form'}`:
a quoted alternative is literal text); `{metric|lower}` and `|upper` change the case of text,
and `|list` makes a comma-separated text a list (a list stays as it is). `{input.<key>}` is the
client's answer to the input request `<key>` (`input_required`), and `{input.<key>.<field>}` one
field of it. `{{` and `}}` are literal braces.

An object `{$expr: "<JMESPath>"}` in a body computes a value from `args` (the arguments),
`current` (the write's preview read), `principal` and `input` (the answers), e.g.
`{$expr: "difference(current.tags, args.remove)"}`.

A string that is exactly one reference keeps the referenced value's type (`'{limit}'` -> 20);
a string that mixes text and references renders to text. A reference to an absent value makes
the whole template absent, so optional arguments simply drop out of the request.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import jmespath.exceptions

from gateway.records import record
from gateway.spec.jmes import Expression, compile_expression, search

_REF = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$")
_NOW = re.compile(
    r"^now(?:([+-])(\d{1,4}|\([A-Za-z_][A-Za-z0-9_]*\))(mo|[smhd]))?(?::(date|month))?$")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}

ABSENT: Final[Any] = type("Absent", (), {"__repr__": lambda self: "ABSENT"})()
"""Marker for a template whose referenced value is missing."""


class TemplateSyntaxError(ValueError):
    """A template string that cannot be compiled."""


@dataclass(frozen=True, slots=True)
class Ref:
    """One reference inside a template."""

    source: str
    """"arg", "principal", "input", "now" or "literal"."""
    name: str
    """Argument name, principal field, `<key>` or `<key>.<field>` of an answer ("now" for the
    clock)."""
    offset_s: int = 0
    date_only: bool = False
    offset_argument: str | None = None
    """For `{now-<argument>d}`: the argument holding the number of units."""
    offset_months: int = 0
    """Calendar months added after `offset_s` (`mo`): the day is kept, or the month's last."""
    month_only: bool = False
    """`:month`: the moment's year and month, YYYY-MM."""
    fallbacks: tuple[Ref, ...] = ()
    """Tried in order when this reference is absent."""
    case: str | None = None
    """The filter after `|`: "lower" or "upper" change a text's case, "list" splits a
    comma-separated text into a list."""


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled template string: literal text and references, in order."""

    parts: tuple[str | Ref, ...]

    @property
    def refs(self) -> tuple[Ref, ...]:
        """Every reference, fallbacks included; `{now-<argument>d}` counts as one to it."""
        found: list[Ref] = []
        for part in self.parts:
            if isinstance(part, Ref):
                for ref in (part, *part.fallbacks):
                    found.append(ref)
                    if ref.offset_argument is not None:
                        found.append(Ref("arg", ref.offset_argument))
        return tuple(found)

    @property
    def whole(self) -> Ref | None:
        """The single reference when the template is exactly one reference."""
        if len(self.parts) == 1 and isinstance(self.parts[0], Ref):
            return self.parts[0]
        return None


@dataclass(frozen=True, slots=True)
class Expr:
    """A computed value: a JMESPath over {args, current, principal}."""

    expression: Expression


@record
class RenderContext:
    """What a template may refer to during one call."""

    arguments: Mapping[str, Any]
    principal: Mapping[str, Any]
    now: datetime
    current: Any = None
    """The preview read of a write, when it has one."""
    inputs: Mapping[str, Any] = field(default_factory=dict)
    """The client's answers to the call's input requests, by key (see `answer_value`)."""


def compile_template(text: str) -> Template:
    """Compile a template string.

    Raises:
        TemplateSyntaxError: unbalanced braces or a reference that is not a known form.
    """
    parts: list[str | Ref] = []
    literal: list[str] = []
    pos = 0
    for match in _REF.finditer(text):
        literal.append(text[pos : match.start()])
        pos = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            literal.append(token[0])
            continue
        if literal and "".join(literal):
            parts.append("".join(literal))
        literal = []
        parts.append(_parse_alternatives(match.group(1)))
    tail = text[pos:]
    if "{" in tail or "}" in tail:
        raise TemplateSyntaxError(f"unbalanced brace in template {text!r}")
    literal.append(tail)
    if "".join(literal):
        parts.append("".join(literal))
    return Template(tuple(parts))


def _parse_alternatives(body: str) -> Ref:
    body, _, filter_name = body.partition("|")
    case = filter_name.strip() or None
    if case not in (None, "lower", "upper", "list"):
        raise TemplateSyntaxError(f"unknown filter |{case} (use |lower, |upper or |list)")
    first, *rest = [_parse_alternative(alt.strip()) for alt in body.split("??")]
    if first.source == "literal":
        raise TemplateSyntaxError(f"{{{body}}}: a quoted text may only be a fallback")
    return replace(first, fallbacks=tuple(rest), case=case)


def _parse_alternative(body: str) -> Ref:
    if len(body) >= 2 and body[0] == body[-1] == "'":
        return Ref("literal", body[1:-1])
    return _parse_ref(body)


def _parse_ref(body: str) -> Ref:
    if now := _NOW.match(body):
        sign, amount, unit, form = now.groups()
        direction = -1 if sign == "-" else 1
        count = int(amount) if amount and amount.isdigit() else 1
        argument = amount.strip("()") if amount and not amount.isdigit() else None
        months = direction * count if unit == "mo" else 0
        offset = direction * count * _UNITS[unit] if amount and unit != "mo" else 0
        return Ref("now", "now", offset, form == "date", offset_argument=argument,
                   offset_months=months, month_only=form == "month")
    if not _NAME.match(body):
        raise TemplateSyntaxError(f"{{{body}}} is not a valid reference")
    head, _, rest = body.partition(".")
    if head == "input":
        if not rest:
            raise TemplateSyntaxError(f"{{{body}}}: name the answer, {{input.<key>}}")
        return Ref("input", rest)
    if "." in rest:
        raise TemplateSyntaxError(f"{{{body}}}: only input.<key>.<field> has two dots")
    if head == "principal":
        if not rest:
            raise TemplateSyntaxError(f"{{{body}}}: name a field of the principal")
        return Ref("principal", rest)
    if rest:
        raise TemplateSyntaxError(f"{{{body}}}: only principal.<field> and input.<key> may "
                                  "contain a dot")
    return Ref("arg", head)


def resolve(ref: Ref, ctx: RenderContext) -> Any:
    """The value a reference (or its first present fallback) stands for, or ABSENT."""
    value = _resolve_one(ref, ctx)
    for fallback in ref.fallbacks:
        if value is not ABSENT:
            break
        value = _resolve_one(fallback, ctx)
    if ref.case == "list":
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value
    if ref.case is not None and isinstance(value, str):
        return value.lower() if ref.case == "lower" else value.upper()
    return value


def _resolve_one(ref: Ref, ctx: RenderContext) -> Any:
    if ref.source == "literal":
        return ref.name
    if ref.source == "arg":
        value = ctx.arguments.get(ref.name, ABSENT)
        return ABSENT if value is None else value
    if ref.source == "principal":
        value = ctx.principal.get(ref.name)
        return ABSENT if value is None else value
    if ref.source == "input":
        key, _, part = ref.name.partition(".")
        value = _field(ctx.inputs.get(key), part) if part else ctx.inputs.get(key)
        return ABSENT if value is None else value
    offset, months = ref.offset_s, ref.offset_months
    if ref.offset_argument is not None:
        count = ctx.arguments.get(ref.offset_argument)
        if not isinstance(count, int) or isinstance(count, bool):
            return ABSENT
        offset, months = offset * count, months * count
    moment = ctx.now + timedelta(seconds=offset)
    if months:
        moment = _add_months(moment, months)
    if ref.month_only:
        return moment.date().isoformat()[:7]
    if ref.date_only:
        return moment.date().isoformat()
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _add_months(moment: datetime, months: int) -> datetime:
    """The same day `months` calendar months away, or that month's last day when it is shorter."""
    year, month = divmod(moment.year * 12 + moment.month - 1 + months, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)
def _field(value: Any, name: str) -> Any:
    """One field of an answer: of an object, or of each object of a list (the roots' `uri`)."""
    if isinstance(value, dict):
        return value.get(name)
    if isinstance(value, list):
        found = [item.get(name) for item in value if isinstance(item, dict)]
        return [item for item in found if item is not None] or None
    return None


def render(template: Template, ctx: RenderContext) -> Any:
    """Render a compiled template: the typed value for a whole reference, else text, or ABSENT."""
    whole = template.whole
    if whole is not None:
        return resolve(whole, ctx)
    out: list[str] = []
    for part in template.parts:
        if isinstance(part, str):
            out.append(part)
            continue
        value = resolve(part, ctx)
        if value is ABSENT:
            return ABSENT
        out.append(scalar_text(value))
    return "".join(out)


def scalar_text(value: Any) -> str:
    """Text form of a value inside a mixed template."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(scalar_text(v) for v in value)
    return str(value)


def compile_value(value: Any) -> Any:
    """Compile every string inside a JSON-like value into a Template; other scalars stay.

    Raises:
        TemplateSyntaxError: from any string inside.
    """
    if isinstance(value, str):
        return compile_template(value)
    if isinstance(value, Mapping):
        if set(value) == {"$expr"}:
            text = value["$expr"]
            if not isinstance(text, str):
                raise TemplateSyntaxError("$expr must be a JMESPath string")
            try:
                return Expr(compile_expression(text))
            except (ValueError, jmespath.exceptions.JMESPathError) as exc:
                raise TemplateSyntaxError(f"$expr: {' '.join(str(exc).split())}") from exc
        return {str(k): compile_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [compile_value(v) for v in value]
    return value


def render_value(value: Any, ctx: RenderContext) -> Any:
    """Render a compiled JSON-like value; absent entries of objects and lists are dropped."""
    if isinstance(value, Template):
        return render(value, ctx)
    if isinstance(value, Expr):
        return search(value.expression, {"args": dict(ctx.arguments), "current": ctx.current,
                                          "principal": dict(ctx.principal),
                                          "input": dict(ctx.inputs)})
    if isinstance(value, dict):
        rendered = {k: render_value(v, ctx) for k, v in value.items()}
        return {k: v for k, v in rendered.items() if v is not ABSENT}
    if isinstance(value, list):
        items = [render_value(v, ctx) for v in value]
        return [v for v in items if v is not ABSENT]
    return value


def value_refs(value: Any) -> list[Ref]:
    """Every reference inside a compiled JSON-like value."""
    if isinstance(value, Template):
        return list(value.refs)
    if isinstance(value, dict):
        return [r for v in value.values() for r in value_refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in value_refs(v)]
    return []
