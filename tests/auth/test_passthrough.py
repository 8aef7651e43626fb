"""A token the upstream judges (the passthrough resolver) is granted the service's default
scopes, else every scope it declares, else every scope its tools need; worked out once per
loaded service, so a reloaded tree's service is granted its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.auth.principal import passthrough_principal
from gateway.spec.compiled import CompiledService
from gateway.spec.loader import load_tree

TOOLS = ("tools:\n"
         "  - {name: read_note, kind: read, description: Read a note., scopes: [notes],\n"
         "     request: {method: GET, path: /notes}}\n"
         "  - {name: read_tag, kind: read, description: Read a tag., scopes: [tags],\n"
         "     request: {method: GET, path: /tags}}\n")


def service(folder: Path, auth_and_scopes: str) -> CompiledService:
    desk = folder / "desk"
    desk.mkdir(parents=True)
    (desk / "service.yaml").write_text(
        "name: desk\ntitle: Desk\nendpoint: /desk/mcp\nupstream: {base_url: https://desk.test}\n"
        + auth_and_scopes)
    (desk / "tools.yaml").write_text(TOOLS)
    return load_tree(folder, {}).services[0]


@pytest.mark.parametrize(("auth_and_scopes", "granted"), [
    ("auth: {resolver: passthrough, default_scopes: [notes]}\n"
     "scopes: [{name: notes}, {name: tags}]\n", {"notes"}),
    ("auth: {resolver: passthrough}\nscopes: [{name: notes}, {name: tags}]\n", {"notes", "tags"}),
    ("auth: {resolver: passthrough}\n", {"notes", "tags"}),
], ids=["default scopes", "declared scopes", "the tools' scopes"])
def test_a_passthrough_token_is_granted_what_the_service_says(
        tmp_path: Path, auth_and_scopes: str, granted: set[str]) -> None:
    desk = service(tmp_path, auth_and_scopes)
    assert passthrough_principal(desk, "any token").scopes == granted
    assert passthrough_principal(desk, "another").scopes == granted  # the same, remembered


def test_a_reloaded_service_is_granted_its_own_scopes(tmp_path: Path) -> None:
    before = service(tmp_path / "before", "auth: {resolver: passthrough, default_scopes: [notes]}\n"
                                          "scopes: [{name: notes}, {name: tags}]\n")
    assert passthrough_principal(before, "t").scopes == {"notes"}
    after = service(tmp_path / "after", "auth: {resolver: passthrough, default_scopes: [tags]}\n"
                                        "scopes: [{name: notes}, {name: tags}]\n")
    assert passthrough_principal(after, "t").scopes == {"tags"}
    assert passthrough_principal(before, "t").scopes == {"notes"}
