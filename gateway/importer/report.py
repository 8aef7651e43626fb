"""What an import did, for the operator: every operation accounted for as a tool or a skip,
every input left out, and what to check before serving. Pure.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from gateway.importer.source import dialect


@dataclass(frozen=True)
class Generated:
    tool: str
    kind: str
    operation: str
    file: str


@dataclass(frozen=True)
class Entry:
    operation: str
    """`GET /pets`."""
    text: str
    tool: str | None = None


@dataclass
class Report:
    source: str
    version: str
    out: str
    found: int = 0
    generated: list[Generated] = field(default_factory=list)
    skipped: list[Entry] = field(default_factory=list)
    unmapped: list[Entry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        kinds = Counter(g.kind for g in self.generated)
        files = len({g.file for g in self.generated})
        lines = [
            f"imported {self.source} ({dialect(self.version)}) into {self.out}",
            f"  operations found:   {self.found}",
            f"  tools generated:    {len(self.generated)} ({kinds['read']} read, "
            f"{kinds['write']} write) in {files} tool file(s)",
            f"  operations skipped: {len(self.skipped)}",
            f"  inputs left out:    {len(self.unmapped)}",
        ]
        if self.generated:
            lines.append("tools:")
            width = max(len(g.tool) for g in self.generated)
            lines.extend(f"  {g.tool:<{width}}  {g.kind:<5}  {g.operation}  ({g.file})"
                         for g in self.generated)
        if self.skipped:
            lines.append("skipped:")
            lines.extend(f"  {e.operation}: {e.text}" for e in self.skipped)
        if self.unmapped:
            lines.append("left out:")
            lines.extend(f"  {e.tool} ({e.operation}): {e.text}" for e in self.unmapped)
        if self.notes:
            lines.append("notes:")
            lines.extend(f"  {note}" for note in self.notes)
        lines.append(f"next: add `select` where a result is larger than the model needs, then "
                     f"`mcp-gateway check {self.out}`")
        return "\n".join(lines)
