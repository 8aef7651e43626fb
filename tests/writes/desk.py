"""The desk: a small service of notes behind an introspecting authorization server, the spec
tree the write tests build in tmp_path (their tools differ; the service, its tokens and its
clock do not)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

URL = "/desk/mcp"
API = "api.desk.test"
INTROSPECT = "https://auth.desk.test/introspect"
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FAR = int(START.timestamp()) + 365 * 86_400

WRITER = "desk_writer_a"
COLLEAGUE = "desk_colleague_a"
OTHER_ACCOUNT = "desk_writer_b"
READER = "desk_reader_a"


def tokens(scope: str) -> dict[str, dict[str, Any]]:
    """The desk's tokens: a writer, a colleague in the same account and the writer's user in
    another account, each with `scope`; a reader with notes:read only."""
    return {
        WRITER: {"scope": scope, "sub": "u_writer", "account_id": "acc_a"},
        COLLEAGUE: {"scope": scope, "sub": "u_colleague", "account_id": "acc_a"},
        OTHER_ACCOUNT: {"scope": scope, "sub": "u_writer", "account_id": "acc_b"},
        READER: {"scope": "notes:read", "sub": "u_reader", "account_id": "acc_a"},
    }


def service(scopes: list[str], writes: str) -> str:
    """The desk's service.yaml, with its `scopes` and its `writes:` policy (YAML flow)."""
    listed = "".join(f'  - {{name: "{scope}"}}\n' for scope in scopes)
    return f"""
version: 1
name: desk
title: Desk
endpoint: /desk/mcp
upstream:
  base_url: https://api.desk.test/v1
auth:
  resolver: introspection
  introspection_url: https://auth.desk.test/introspect
  token_pattern: '^desk_[a-z0-9_]+$'
scopes:
{listed}writes: {writes}
"""
