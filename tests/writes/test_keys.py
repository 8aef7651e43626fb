"""One configured secret, a separate key for each use: pseudonyms (shown to every caller) and
confirmation tokens (which authorise writes) never share a key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from gateway.keys import derive_key
from gateway.server.app import create_app
from gateway.settings import Settings
from gateway.writes.confirmations import ConfirmationRefused, verify
from tests.support import MCP_HEADERS, AiohttpClient, rpc

SECRET = b"one-secret-for-the-whole-deployment"


def test_each_purpose_gets_its_own_stable_key() -> None:
    pseudonyms, confirmations = (derive_key(SECRET, "pseudonyms"),
                                 derive_key(SECRET, "confirmations"))

    assert pseudonyms != confirmations
    assert SECRET not in (pseudonyms, confirmations)
    assert derive_key(SECRET, "pseudonyms") == pseudonyms
    assert derive_key(b"another secret", "pseudonyms") != pseudonyms
    assert len(pseudonyms) == len(confirmations) == 32


async def test_a_confirmation_token_verifies_only_under_the_confirmation_key(
        aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    folder = tmp_path / "desk"
    folder.mkdir()
    (folder / "service.yaml").write_text(
        "name: desk\ntitle: Desk\nendpoint: /desk/mcp\nupstream: {base_url: https://desk.test}\n"
        "auth: {resolver: passthrough, default_scopes: [notes]}\nscopes: [{name: notes}]\n")
    (folder / "tools.yaml").write_text(
        "tools:\n  - name: add_note\n    kind: write\n    description: Add a note.\n"
        "    scopes: [notes]\n    input: {text: {type: string, required: true}}\n"
        "    request: {method: POST, path: /notes, body: {text: '{text}'}}\n")
    settings = Settings(specs_dir=tmp_path, log_json=True,
                        secret_key=SecretStr(SECRET.decode()))
    gateway = await aiohttp_client(create_app(settings))

    answer = await gateway.post("/desk/mcp", json=rpc("tools/call", {
        "name": "add_note", "arguments": {"text": "hello"}}),
        headers={**MCP_HEADERS, "Authorization": "Bearer desk_token"})
    token = (await answer.json())["result"]["structuredContent"]["confirmation_token"]

    def check(key: bytes) -> None:
        verify(key, token, tool="add_note", arguments={"text": "hello"}, subject=None,
               account=None, now=0)

    check(derive_key(SECRET, "confirmations"))
    for other in (SECRET, derive_key(SECRET, "pseudonyms")):
        with pytest.raises(ConfirmationRefused):
            check(other)
