"""The wide service: a catalog too big for one page of a list, the spec tree the paging tests
build in tmp_path. Its tools are written out of alphabetical order, so a listing in catalog order
cannot pass for a sorted one."""

from __future__ import annotations

from pathlib import Path

from tests.support import service_tree

URL = "/wide/mcp"
INTROSPECT = "https://auth.wide.test/introspect"
READER = "wide_reader"
ADMIN = "wide_admin"
TOKENS = {READER: {"scope": "items:read", "sub": "reader"},
          ADMIN: {"scope": "items:read items:admin", "sub": "admin"}}
"""What the authorization server says of each token: the admin sees the admin tools too."""

INTROSPECTION = f"""\
auth:
  resolver: introspection
  introspection_url: {INTROSPECT}
"""
PASSTHROUGH = """\
auth:
  resolver: passthrough
  default_scopes: ["items:read"]
"""


def tool_names(count: int, first: str = "tool") -> list[str]:
    """The tools' names in the order the tree lists them (a permutation of 0..count-1)."""
    step = next(s for s in (37, 41, 43, 47) if count % s)
    return [f"{first}_{(i * step) % count:03d}" for i in range(count)]


def wide_tree(root: Path, *, tools: int = 250, admin_tools: int = 0, prompts: int = 0,
              resources: int = 0, templates: int = 0, auth: str = INTROSPECTION,
              first: str = "tool") -> Path:
    """The wide service under `root/wide`: `tools` tools for items:read, then `admin_tools`
    that also need items:admin, then prompts, fixed resources and URI templates."""
    service = ("version: 1\nname: wide\ntitle: Wide\nendpoint: /wide/mcp\n"
               "upstream: {base_url: 'https://api.wide.test'}\n" + auth +
               'scopes:\n  - {name: "items:read"}\n  - {name: "items:admin"}\n')
    lines = ["version: 1", "tools:"]
    lines += [f'  - {{name: {name}, kind: read, description: "Read {name}.", '
              f'scopes: ["items:read"], request: {{path: /items}}}}'
              for name in tool_names(tools, first)]
    lines += [f'  - {{name: admin_{i:03d}, kind: read, description: "Admin {i}.", '
              f'scopes: ["items:read", "items:admin"], request: {{path: /admin}}}}'
              for i in range(admin_tools)]
    if prompts:
        lines += ["prompts:"] + [
            f'  - {{name: prompt_{i:03d}, scopes: ["items:read"], messages: [{{text: Hi.}}]}}'
            for i in range(prompts)]
    if resources or templates:
        lines += ["resources:"] + [
            f'  - {{uri: "wide://item/{i:03d}", name: item_{i:03d}, scopes: ["items:read"], '
            f'request: {{path: /items}}}}' for i in range(resources)] + [
            f'  - {{uri: "wide://thing_{i:03d}/{{id}}", name: thing_{i:03d}, '
            f'scopes: ["items:read"], input: {{id: {{type: string, required: true}}}}, '
            f"request: {{path: '/things/{{id}}'}}}}" for i in range(templates)]
    return service_tree(root, "wide", service, "\n".join(lines) + "\n")
