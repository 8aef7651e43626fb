"""Importing a document written by the test: the report, and the folder read back both as the
gateway loads it (load_tree) and as plain YAML (to look at what was written)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway.importer.report import Report
from gateway.importer.run import Options, import_openapi
from gateway.spec.compiled import Registry
from gateway.spec.loader import load_tree


@dataclass
class Imported:
    report: Report
    registry: Registry
    service: dict[str, Any]
    tools: dict[str, dict[str, Any]]
    files: dict[str, str]


def read_back(folder: Path, env: dict[str, str] | None = None) -> tuple[Registry, dict[str, Any],
                                                                        dict[str, Any]]:
    registry = load_tree(folder, env or {})
    service = yaml.safe_load((folder / "service.yaml").read_text())
    tools = {tool["name"]: tool for path in sorted(folder.glob("*.yaml"))
             if path.name != "service.yaml"
             for tool in yaml.safe_load(path.read_text())["tools"]}
    return registry, service, tools


def imported(tmp_path: Path, document: dict[str, Any] | str, *, name: str = "demo",
             **options: Any) -> Imported:
    source = tmp_path / "openapi.json"
    source.write_text(document if isinstance(document, str) else json.dumps(document))
    out = tmp_path / name
    report = import_openapi(Options(str(source), name, out, **options))
    registry, service, tools = read_back(out)
    files = {p.name: p.read_text() for p in sorted(out.iterdir())}
    return Imported(report, registry, service, tools, files)


def openapi(paths: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A minimal OpenAPI 3.0 document around `paths`."""
    return {"openapi": "3.0.3", "info": {"title": "Demo", "version": "1"},
            "servers": [{"url": "https://api.example.test/v1"}], "paths": paths, **extra}
