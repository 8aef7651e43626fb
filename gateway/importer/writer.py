"""The imported service written as YAML a person can read and edit: block style, keys in the
order the format documents, lists indented under their key, long texts as literal blocks, and
a comment where each tool's `select` goes. The folder is the only thing written.

The emitter is this module's own, for JSON values only (mappings, lists, text, numbers,
booleans, null): PyYAML's pure-Python emitter takes seconds on a large API, and libyaml's
cannot indent lists. Text is written plain only when YAML reads it back as the same text, as a
literal block when it spans lines, and as a JSON string (which YAML reads too) otherwise.
"""

from __future__ import annotations

import json
import math
import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

SELECT_HINT: Final = ("select: a JMESPath keeping what the model needs; "
                      "then make output_schema match")
_WIDE: Final = "\u00a1-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd"
"""Letters of other scripts, without the ones YAML reads as a line break or a byte-order mark."""
_PLAIN: Final = re.compile(f"^[A-Za-z_/{_WIDE}][A-Za-z0-9_ .,/()+\\-:@'!?%&=*$;`#\"<>|~^{_WIDE}]*$")
_SPECIAL: Final = frozenset({"yes", "no", "true", "false", "on", "off", "null", "~"})
"""Plain words YAML 1.1 reads as booleans or null (in any letter case)."""
_UNPRINTABLE: Final = re.compile("[^\x09\x0a\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe"
                                 "\uff00-\ufffd\U00010000-\U0010ffff]")
"""What is written escaped: control characters, what YAML reads as a line break (NEL, the
Unicode line and paragraph separators), a byte-order mark."""
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
"""Half a character (JSON can spell one); no YAML parser takes it, so it becomes U+FFFD."""


def scalar(value: Any) -> str:
    """One value on one line."""
    if isinstance(value, str):
        return _text(value)
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    return "{}" if isinstance(value, dict) else "[]"


def _text(text: str) -> str:
    if (_PLAIN.fullmatch(text) and text.lower() not in _SPECIAL and ": " not in text
            and " #" not in text and not text.endswith((" ", ":"))):
        return text
    quoted = json.dumps(_SURROGATE.sub("\ufffd", text), ensure_ascii=False)
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)


def _float(value: float) -> str:
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    if "e" in text and "." not in text:  # YAML 1.1 reads 1e-05 as text, 1.0e-05 as a number
        mantissa, exponent = text.split("e")
        text = f"{mantissa}.0e{exponent if exponent[0] in '+-' else '+' + exponent}"
    return text


def _literal(value: Any) -> list[str] | None:
    """The lines of a literal block for a text that spans lines and reads back the same."""
    if not isinstance(value, str) or "\n" not in value.rstrip("\n"):
        return None
    body = value[:-1] if value.endswith("\n") else value
    lines = body.split("\n")
    if (value.endswith("\n\n") or not lines[0] or lines[0][0] == " "
            or "\t" in value or _UNPRINTABLE.search(value)
            or any(line != line.rstrip() for line in lines)):
        return None
    return ["|" if value.endswith("\n") else "|-", *lines]


def emit(value: Any, indent: int = 0) -> list[str]:
    """The lines of a mapping or list, at `indent` spaces."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            lines += _entry(f"{pad}{scalar(str(key))}:", item, indent, " ")
    else:
        for item in value:
            lines += _entry(f"{pad}-", item, indent, " ")
    return lines


def _entry(head: str, item: Any, indent: int, gap: str) -> list[str]:
    nested = isinstance(item, dict | list) and bool(item)
    if nested and head.endswith("-"):  # a list item: its first line follows the dash
        inner = emit(item, indent + 2)
        return [f"{head} {inner[0].lstrip()}", *inner[1:]]
    if nested:
        return [head, *emit(item, indent + 2)]
    block = _literal(item)
    if block is not None:
        return [f"{head}{gap}{block[0]}",
                *(" " * (indent + 2) + line if line else "" for line in block[1:])]
    return [f"{head}{gap}{scalar(item)}"]


def dump(value: Any) -> str:
    return "\n".join(emit(value)) + "\n"


def tool_file(header: Sequence[str], tools: Sequence[Mapping[str, Any]]) -> str:
    """A tool file: a comment header, then each tool with the `select` comment in its
    `response` (or, when it has none, after it)."""
    lines = _comment(header)
    lines += ["version: 1", "tools:"]
    for tool in tools:
        body = emit([dict(tool)], 2)
        if "    response:" in body:
            body.insert(body.index("    response:") + 1, "      # " + SELECT_HINT)
        else:
            body += ["    # response:", "    #   " + SELECT_HINT]
        lines += [*body, ""]
    return "\n".join(lines)


def service_file(header: Sequence[str], spec: Mapping[str, Any]) -> str:
    return "\n".join(_comment(header)) + "\n" + dump(dict(spec))


def _comment(paragraphs: Sequence[str]) -> list[str]:
    """Comment lines, each paragraph wrapped at 98 characters."""
    return [f"# {line}" for text in paragraphs
            for line in textwrap.wrap(text, 98, break_long_words=False, break_on_hyphens=False)]


def write_folder(out: Path, files: Mapping[str, str]) -> None:
    """Write each file (name -> text) into `out`, creating it.

    Raises:
        OSError: the folder or a file cannot be written.
    """
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
