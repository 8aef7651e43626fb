"""The settings table of docs/operations.md, written from the Settings model itself (each field's
docstring is its meaning), so the table cannot drift from the code. Pure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from pydantic import SecretStr

from gateway.settings import SHIPPED_SPECS, Settings

BEGIN: Final = ("<!-- BEGIN GENERATED SETTINGS: `mcp-gateway docs` writes this table from "
                "gateway/settings.py; edit the docstrings there, not this -->")
END: Final = "<!-- END GENERATED SETTINGS -->"


def settings_table() -> str:
    """One row per `GATEWAY_*` variable: its name, default and meaning."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        meaning = " ".join((field.description or "").split()).replace("|", "\\|")
        rows.append(f"| `GATEWAY_{name.upper()}` | {_default(field.default)} | {meaning} |")
    return "\n".join(rows) + "\n"


def _default(value: Any) -> str:
    if isinstance(value, SecretStr):
        return "(empty)" if not value.get_secret_value() else "(set)"
    if value is None:
        return "(none)"
    if isinstance(value, Path) and value == SHIPPED_SPECS:
        return "the shipped specs"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list | tuple):
        return f"`{list(value)}`" if value else "`[]`"
    return f"`{value}`"
