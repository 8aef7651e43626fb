"""OAuth discovery and login with the mcp SDK client's own OAuth support, against the demo stack:
401 challenge -> protected-resource metadata -> authorization-server metadata -> dynamic client
registration -> PKCE authorization -> token -> a successful tool call. No token is given up front.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

from tests.e2e.stack import MODES, running_stack


class MemoryStorage:
    """Token storage for one client run."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


class Browser:
    """Plays the user's browser: opens the authorization URL (the demo authorization server
    approves at once) and hands the code from the redirect back to the client."""

    def __init__(self) -> None:
        self.visited: list[str] = []
        self.result: AuthorizationCodeResult | None = None

    async def open(self, url: str) -> None:
        self.visited.append(url)
        async with httpx2.AsyncClient(follow_redirects=False, timeout=10) as browser:
            answer = await browser.get(url)
        assert answer.status_code in (302, 303), answer.text
        query = parse_qs(urlsplit(answer.headers["location"]).query)
        self.result = AuthorizationCodeResult(code=query["code"][0],
                                              state=query.get("state", [None])[0],
                                              iss=query.get("iss", [None])[0])

    async def callback(self) -> AuthorizationCodeResult:
        assert self.result is not None, "the client never opened the authorization URL"
        return self.result


@pytest.mark.parametrize("mode", MODES)
async def test_the_sdk_client_discovers_logs_in_with_pkce_and_calls_a_tool(mode: str) -> None:
    async with running_stack() as stack:
        url = stack.endpoint("refiner")
        browser = Browser()
        storage = MemoryStorage()
        oauth = OAuthClientProvider(
            server_url=url,
            client_metadata=OAuthClientMetadata(
                client_name="gateway end-to-end test",
                redirect_uris=["http://127.0.0.1:9/callback"],
                grant_types=["authorization_code", "refresh_token"],
                response_types=["code"],
            ),
            storage=storage,
            redirect_handler=browser.open,
            callback_handler=browser.callback,
        )
        async with httpx2.AsyncClient(auth=oauth, timeout=30) as http:
            async with Client(streamable_http_client(url, http_client=http), mode=mode,
                              cache=None) as client:
                listed = await client.list_tools()
                projects = await client.call_tool("get-projects", {})

    authorize = parse_qs(urlsplit(browser.visited[0]).query)
    assert authorize["code_challenge_method"] == ["S256"]
    assert authorize["resource"] == [url]
    assert storage.tokens is not None and storage.client is not None
    # The client asks for the scopes the 401 challenge named, and the token grants them.
    assert set(authorize["scope"][0].split()) == {"mcp:projects-read", "mcp:forms-read",
                                                  "mcp:responses-read", "mcp:reporting-read"}
    assert len(listed.tools) == 7
    assert projects.is_error is False
    assert projects.structured_content is not None
    assert {p["name"] for p in projects.structured_content["items"]} >= {"Production"}
