"""The sandbox's Refiner REST v1 emulation: keys and multi-project tokens, project selection,
page and cursor paging, response filters, reporting recounts, extensions, writes, dates and limits.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from sandbox import DEMO_TOKENS, FIXTURES_DIR, create_sandbox_app
from tests.support import AiohttpClient, Clock

ANCHOR = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
PRODUCTION = "a1b2c3d0-1111-11ee-8c3a-3f2b1e2d4c5a"
TESTING = "b2c3d4e0-2222-11ee-9d4b-4a3c2f1e0d9b"
MOBILE = "c3d4e5f0-3333-11ee-ae5c-5b4d3e2f1a0c"
KEY = "refiner_key_production"
FULL = "refiner_demo_full"
REPORTING = "refiner_demo_reporting"
NPS_FORM = "3894dc20-8fe9-11ea-892e-d13af52e06ae"


def table(name: str) -> Any:
    return json.loads((FIXTURES_DIR / "refiner" / f"{name}.json").read_text("utf-8"))


RESPONSES: list[dict[str, Any]] = table("responses")[PRODUCTION]
COMPLETED = [r for r in RESPONSES if r["completed_at"]]
FORMS: list[dict[str, Any]] = table("forms")[PRODUCTION]
CONTACTS: list[dict[str, Any]] = table("contacts")[PRODUCTION]
TAGS: list[dict[str, Any]] = table("tags")[PRODUCTION]
RESPONSE_TAGS: dict[str, list[str]] = table("response_tags")[PRODUCTION]


def bearer(token: str = KEY, project: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if project:
        headers["X-Refiner-Project"] = project
    return headers


@pytest.fixture
async def client(aiohttp_client: AiohttpClient) -> TestClient[Any, Any]:
    return await aiohttp_client(create_sandbox_app(rebase_dates=False, now=lambda: ANCHOR))


async def get(
    client: TestClient[Any, Any],
    path: str,
    params: Any = None,
    headers: dict[str, str] | None = None,
) -> Any:
    response = await client.get(path, headers=headers or bearer(), params=params)
    assert response.status == 200, await response.text()
    return await response.json()


async def send(
    client: TestClient[Any, Any], method: str, path: str, body: dict[str, Any], token: str = KEY
) -> Any:
    response = await client.request(method, path, headers=bearer(token), json=body)
    assert response.status == 200, await response.text()
    return await response.json()


async def all_responses(client: TestClient[Any, Any], params: list[tuple[str, str]]) -> list[Any]:
    """Walk `/v1/responses` with cursors until `next_page_cursor` is null."""
    items: list[Any] = []
    cursor: str | None = None
    while True:
        query = [*params, ("page_length", "200")] + ([("page_cursor", cursor)] if cursor else [])
        body = await get(client, "/v1/responses", query)
        items += body["items"]
        cursor = body["pagination"]["next_page_cursor"]
        if cursor is None:
            return items


def stamp(value: str) -> datetime:
    return datetime.fromisoformat(value + "+00:00")


def test_fixtures_reference_existing_forms_contacts_tags_and_segments() -> None:
    total = recent = 0
    for project in (p["uuid"] for p in table("projects")):
        forms = {f["uuid"] for f in table("forms")[project]}
        contacts = {c["uuid"]: c for c in table("contacts")[project]}
        tags = {t["uuid"] for t in table("tags")[project]}
        segments = {s["uuid"] for s in table("segments")[project]}
        for row in table("responses")[project]:
            contact = contacts[row["contact"]["uuid"]]
            assert row["form"]["uuid"] in forms
            assert (row["contact"]["email"], row["contact"]["display_name"]) == (
                contact["email"],
                contact["display_name"],
            )
            if row["completed_at"]:
                total += 1
                recent += stamp(row["completed_at"]) >= ANCHOR - timedelta(days=30)
        assert all(set(linked) <= tags for linked in table("response_tags")[project].values())
        assert all({s["uuid"] for s in c["segments"]} <= segments for c in contacts.values())
    assert len(COMPLETED) > total / 2 and total >= 560 and recent >= 100
    assert "churn-risk" in {t["name"] for t in TAGS}


# --- auth and project selection -------------------------------------------------------------------


async def test_each_key_form_identifies_the_key_project(client: TestClient[Any, Any]) -> None:
    expected = {
        "project_uuid": PRODUCTION,
        "project_name": "Production",
        "message": "Authentication successful",
    }
    basic = base64.b64encode(f"{KEY}:".encode()).decode()
    assert await get(client, "/v1/") == expected
    assert await get(client, "/v1/", {"api_key": KEY}, headers={}) == expected
    assert await get(client, "/v1/", headers={"Authorization": f"Basic {basic}"}) == expected
    body_key = await client.post(
        "/v1/track-event",
        json={"api_key": KEY, "id": CONTACTS[0]["remote_id"], "event": "exported_report"},
    )
    assert (body_key.status, await body_key.json()) == (200, {"message": "ok"})
    mobile = await get(client, "/v1/", headers=bearer("refiner_key_mobile"))
    assert (mobile["project_uuid"], mobile["project_name"]) == (MOBILE, "Mobile app")


@pytest.mark.parametrize(
    ("headers", "status", "body"),
    [
        ({}, 401, {"error": "No API key found in headers"}),
        (bearer("short"), 401, {"error": "No API key found in headers"}),
        (
            {"Authorization": "Bearer refiner key with spaces"},
            401,
            {"error": "API key does not look valid"},
        ),
        ({"Authorization": "Basic ***"}, 401, {"error": "API key does not look valid"}),
        (bearer("refiner_key_unknown"), 404, {"message": "API key not valid or does not exist"}),
        (bearer("refiner_demo_expired"), 404, {"message": "API key not valid or does not exist"}),
    ],
    ids=["missing", "too-short", "malformed", "bad-basic", "unknown", "expired"],
)
async def test_bad_keys_get_the_measured_error_bodies(
    client: TestClient[Any, Any], headers: dict[str, str], status: int, body: dict[str, str]
) -> None:
    response = await client.get("/v1/forms", headers=headers)
    assert (response.status, await response.json()) == (status, body)


@pytest.mark.parametrize(
    ("token", "granted"),
    [(FULL, [PRODUCTION, TESTING, MOBILE]), (REPORTING, [PRODUCTION, TESTING])],
)
async def test_a_multi_project_token_lists_only_its_granted_projects(
    client: TestClient[Any, Any], token: str, granted: list[str]
) -> None:
    body = await get(client, "/v1/", headers=bearer(token))
    assert body["message"] == "Authentication successful"
    assert [p["uuid"] for p in body["projects"]] == granted
    account = await get(client, "/v1/account", headers=bearer(token))
    assert [e["uuid"] for e in account["environments"]] == granted


async def test_a_multi_project_token_must_name_its_project(client: TestClient[Any, Any]) -> None:
    response = await client.get("/v1/forms", headers=bearer(FULL))
    assert (response.status, await response.json()) == (
        400,
        {"error": "X-Refiner-Project header required"},
    )


@pytest.mark.parametrize(
    ("token", "project"),
    [(REPORTING, MOBILE), (FULL, "d4e5f6a0-4444-11ee-bf6d-6c5e4f3a2b1d"), (KEY, TESTING)],
    ids=["outside-grant", "unknown-project", "key-of-another-project"],
)
async def test_a_project_outside_the_grant_is_refused(
    client: TestClient[Any, Any], token: str, project: str
) -> None:
    response = await client.get(
        "/v1/reporting", headers=bearer(token, project), params={"type": "count"}
    )
    assert (response.status, await response.json()) == (
        403,
        {"error": "Project not accessible with this token"},
    )


async def test_the_project_header_selects_the_project_data(client: TestClient[Any, Any]) -> None:
    mobile = await get(client, "/v1/forms", {"list": "all_with_archived"}, bearer(FULL, MOBILE))
    production = await get(
        client, "/v1/forms", {"list": "all_with_archived"}, bearer(FULL, PRODUCTION)
    )
    assert {f["uuid"] for f in mobile["items"]} == {f["uuid"] for f in table("forms")[MOBILE]}
    assert {f["uuid"] for f in production["items"]} == {f["uuid"] for f in FORMS}


async def test_oauth_scopes_are_enforced_and_rest_keys_have_none(
    client: TestClient[Any, Any],
) -> None:
    refused = await client.get("/v1/responses", headers=bearer(REPORTING, PRODUCTION))
    assert (refused.status, await refused.json()) == (
        403,
        {"error": "Insufficient scope: mcp:responses-read required"},
    )
    allowed = await client.get(
        "/v1/reporting", headers=bearer(REPORTING, PRODUCTION), params={"type": "nps"}
    )
    assert allowed.status == 200
    assert (await client.get("/v1/responses", headers=bearer(KEY))).status == 200


async def test_oauth_tokens_cannot_write_or_read_contacts(client: TestClient[Any, Any]) -> None:
    write = await client.post(
        "/v1/responses/tags",
        headers=bearer(FULL, PRODUCTION),
        json={"uuid": COMPLETED[0]["uuid"], "tags": ["x"]},
    )
    contacts = await client.get("/v1/contacts", headers=bearer(FULL, PRODUCTION))
    assert (write.status, await write.json()) == (403, {"error": "This token is read-only"})
    assert contacts.status == 403


async def test_introspection_reports_the_refiner_grant(client: TestClient[Any, Any]) -> None:
    body = await (await client.post("/api/oauth/introspect", data={"token": REPORTING})).json()
    assert body["active"] is True and body["project_uuids"] == [PRODUCTION, TESTING]
    assert body["scope"] == "mcp:projects-read mcp:reporting-read"
    expired = await (
        await client.post("/api/oauth/introspect", data={"token": "refiner_demo_expired"})
    ).json()
    assert expired == {"active": False}


async def test_oauth_login_for_refiner_scopes_grants_every_project(
    client: TestClient[Any, Any],
) -> None:
    callback = "http://localhost:9/cb"
    verifier = "refiner-verifier-" + "x" * 40
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    registered = await client.post("/api/oauth/register", json={"redirect_uris": [callback]})
    client_id = (await registered.json())["client_id"]
    authorized = await client.get(
        "/api/oauth/authorize",
        params={
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": callback,
            "code_challenge": challenge.decode().rstrip("="),
            "code_challenge_method": "S256",
            "scope": "mcp:projects-read mcp:reporting-read",
        },
        allow_redirects=False,
    )
    code = URL(authorized.headers["Location"]).query["code"]
    issued = await (
        await client.post(
            "/api/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "client_id": client_id,
                "redirect_uri": callback,
                "code_verifier": verifier,
            },
        )
    ).json()
    token = issued["access_token"]
    listed = await get(client, "/v1/", headers=bearer(token))
    assert [p["uuid"] for p in listed["projects"]] == [PRODUCTION, TESTING, MOBILE]
    refused = await client.get("/v1/responses", headers=bearer(token, PRODUCTION))
    assert refused.status == 403


def test_demo_tokens_describe_the_refiner_credentials() -> None:
    expected = {
        FULL,
        REPORTING,
        "refiner_key_production",
        "refiner_key_testing",
        "refiner_key_mobile",
    }
    assert expected <= set(DEMO_TOKENS)


# --- envelopes and paging -------------------------------------------------------------------------


async def test_lists_use_the_items_and_pagination_envelope(client: TestClient[Any, Any]) -> None:
    body = await get(client, "/v1/responses")
    assert set(body) == {"items", "pagination"}
    assert len(body["items"]) == 100
    pagination = body["pagination"]
    assert {
        k: pagination[k] for k in ("items_count", "current_page", "last_page", "page_length")
    } == {
        "items_count": len(COMPLETED),
        "current_page": 1,
        "last_page": math.ceil(len(COMPLETED) / 100),
        "page_length": 100,
    }
    assert isinstance(pagination["next_page_cursor"], str)


async def test_page_mode_walks_to_the_last_page(client: TestClient[Any, Any]) -> None:
    seen: list[str] = []
    page = 1
    while True:
        body = await get(client, "/v1/responses", {"page": str(page), "page_length": "120"})
        seen += [item["uuid"] for item in body["items"]]
        if body["pagination"]["current_page"] >= body["pagination"]["last_page"]:
            break
        page += 1
    assert sorted(seen) == sorted(r["uuid"] for r in COMPLETED)
    assert body["pagination"]["next_page_cursor"] is None


@pytest.mark.parametrize(
    "params", [{"page_length": "1001"}, {"page_length": "0"}, {"page": "0"}, {"page": "two"}]
)
async def test_out_of_range_paging_is_a_bad_request(
    client: TestClient[Any, Any], params: dict[str, str]
) -> None:
    response = await client.get("/v1/responses", headers=bearer(), params=params)
    assert response.status == 400 and "error" in await response.json()


async def test_cursor_paging_returns_every_response_once_newest_first(
    client: TestClient[Any, Any],
) -> None:
    items = await all_responses(client, [])
    assert [i["uuid"] for i in items] == [
        r["uuid"]
        for r in sorted(
            COMPLETED, key=lambda r: (r["last_data_reception_at"], r["uuid"]), reverse=True
        )
    ]


async def test_a_cursor_survives_a_write_between_pages(client: TestClient[Any, Any]) -> None:
    first = await get(client, "/v1/responses", {"page_length": "50"})
    await send(
        client,
        "POST",
        "/v1/responses",
        {
            "form_uuid": NPS_FORM,
            "email": "late.comer@example.com",
            "nps": 10,
            "prevent_duplicates": False,
        },
    )
    rest = await get(
        client,
        "/v1/responses",
        {"page_length": "50", "page_cursor": first["pagination"]["next_page_cursor"]},
    )
    assert (
        rest["items"][0]["uuid"]
        == sorted(COMPLETED, key=lambda r: (r["last_data_reception_at"], r["uuid"]), reverse=True)[
            50
        ]["uuid"]
    )
    assert not {i["uuid"] for i in first["items"]} & {i["uuid"] for i in rest["items"]}


@pytest.mark.parametrize(
    "cursor",
    [
        "!!not-base64!!",
        base64.b64encode(b"plain text").decode(),
        base64.b64encode(b'{"id": 3}').decode(),
        base64.b64encode(b'{"after": [1, 2]}').decode(),
    ],
)
async def test_a_garbage_cursor_is_refused(client: TestClient[Any, Any], cursor: str) -> None:
    response = await client.get("/v1/responses", headers=bearer(), params={"page_cursor": cursor})
    assert (response.status, await response.json()) == (400, {"error": "Invalid page_cursor"})


@pytest.mark.parametrize("path", ["/v1/contacts", "/v1/segments", "/v1/tags"])
async def test_cursor_mode_also_pages_contacts_segments_and_tags(
    client: TestClient[Any, Any], path: str
) -> None:
    first = await get(client, path, {"page_length": "2"})
    second = await get(
        client, path, {"page_length": "2", "page_cursor": first["pagination"]["next_page_cursor"]}
    )
    page_two = await get(client, path, {"page_length": "2", "page": "2"})
    assert second["items"] == page_two["items"] and second["items"] != first["items"]


# --- response filters -----------------------------------------------------------------------------


async def test_form_filters_take_one_uuid_or_a_bracket_array(client: TestClient[Any, Any]) -> None:
    csat = next(f["uuid"] for f in FORMS if f["name"].startswith("CSAT"))
    one = await all_responses(client, [("form_uuid", NPS_FORM)])
    two = await all_responses(client, [("form_uuids[]", NPS_FORM), ("form_uuids[]", csat)])
    assert {i["form"]["uuid"] for i in one} == {NPS_FORM}
    assert len(one) == sum(1 for r in COMPLETED if r["form"]["uuid"] == NPS_FORM)
    assert len(two) == sum(1 for r in COMPLETED if r["form"]["uuid"] in (NPS_FORM, csat)) > len(one)


async def test_tag_filters_accept_tag_uuid_and_tag_uuids(client: TestClient[Any, Any]) -> None:
    churn = next(t["uuid"] for t in TAGS if t["name"] == "churn-risk")
    praise = next(t["uuid"] for t in TAGS if t["name"] == "praise")
    single = await all_responses(client, [("tag_uuid", churn)])
    both = await all_responses(client, [("tag_uuids[]", churn), ("tag_uuids[]", praise)])
    assert sorted(i["uuid"] for i in single) == sorted(
        u for u, tags in RESPONSE_TAGS.items() if churn in tags
    )
    assert len(both) == sum(1 for tags in RESPONSE_TAGS.values() if churn in tags or praise in tags)
    assert "tags" not in single[0]


async def test_segment_filter_follows_contact_membership(client: TestClient[Any, Any]) -> None:
    segment = next(s for s in table("segments")[PRODUCTION] if s["name"] == "EU customers")
    members = {
        c["uuid"] for c in CONTACTS if any(s["uuid"] == segment["uuid"] for s in c["segments"])
    }
    items = await all_responses(client, [("segment_uuids[]", segment["uuid"])])
    assert {i["contact"]["uuid"] for i in items} <= members
    assert len(items) == sum(1 for r in COMPLETED if r["contact"]["uuid"] in members) > 0


async def test_date_range_start_is_inclusive_and_end_exclusive(
    client: TestClient[Any, Any],
) -> None:
    pivot = sorted(COMPLETED, key=lambda r: r["last_data_reception_at"])[200][
        "last_data_reception_at"
    ]
    after = await all_responses(client, [("date_range_start", pivot)])
    before = await all_responses(client, [("date_range_end", pivot)])
    assert pivot in {i["last_data_reception_at"] for i in after}
    assert pivot not in {i["last_data_reception_at"] for i in before}
    assert len(after) + len(before) == len(COMPLETED)


async def test_search_matches_contact_fields_and_with_attributes_adds_traits(
    client: TestClient[Any, Any],
) -> None:
    contact = next(c for c in CONTACTS if any(r["contact"]["uuid"] == c["uuid"] for r in COMPLETED))
    found = await all_responses(
        client, [("search", contact["email"].upper()), ("with_attributes", "1")]
    )
    assert {i["contact"]["uuid"] for i in found} == {contact["uuid"]}
    assert found[0]["contact"]["attributes"] == contact["attributes"]
    plain = await get(client, "/v1/responses", {"page_length": "1"})
    assert "attributes" not in plain["items"][0]["contact"]


async def test_include_widens_to_partials_and_views(client: TestClient[Any, Any]) -> None:
    partials = await get(client, "/v1/responses", {"include": "partials", "page_length": "1"})
    everything = await get(client, "/v1/responses", {"include": "all", "page_length": "1"})
    partial_count = sum(
        1 for r in RESPONSES if not r["completed_at"] and r["last_data_reception_at"]
    )
    assert partials["pagination"]["items_count"] == len(COMPLETED) + partial_count
    assert everything["pagination"]["items_count"] == len(RESPONSES)


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"form_uuids[]": "nope"}, "Invalid form_uuids[]"),
        ({"tag_uuid": "123"}, "Invalid tag_uuid"),
        ({"date_range_start": "last week"}, "Invalid date_range_start"),
        ({"date_range_end": "2026-13-45"}, "Invalid date_range_end"),
        ({"include": "some"}, "Invalid include"),
    ],
)
async def test_invalid_filters_are_bad_requests(
    client: TestClient[Any, Any], params: dict[str, str], error: str
) -> None:
    response = await client.get("/v1/responses", headers=bearer(), params=params)
    assert (response.status, await response.json()) == (400, {"error": error})


# --- reporting ------------------------------------------------------------------------------------


def _window(rows: list[dict[str, Any]], start: str, end: str) -> list[dict[str, Any]]:
    return [r for r in rows if start <= r["last_data_reception_at"] < end]


async def test_reporting_recounts_what_responses_return(client: TestClient[Any, Any]) -> None:
    window = [("date_range_start", "2026-06-01"), ("date_range_end", "2026-11-01")]
    items = await all_responses(client, window)
    nps = await get(client, "/v1/reporting", [("type", "nps"), *window])
    scores = [i["data"]["nps"] for i in items if "nps" in i["data"]]
    counts = {
        "detractors": sum(s <= 6 for s in scores),
        "passives": sum(7 <= s <= 8 for s in scores),
        "promoters": sum(s >= 9 for s in scores),
    }
    assert nps["data"] == counts and nps["count"] == len(scores)
    assert nps["nps"] == math.floor(
        100 * (counts["promoters"] - counts["detractors"]) / len(scores) + 0.5
    )
    assert (nps["date_range_start"], nps["date_range_end"]) == (
        "2026-06-01 00:00:00",
        "2026-10-31 23:59:59",
    )
    csat = await get(client, "/v1/reporting", [("type", "csat"), *window])
    values = Counter(i["data"]["csat"] for i in items if "csat" in i["data"])
    assert list(csat["data"].values()) == [values[v] for v in range(1, 6)]
    ratings = await get(client, "/v1/reporting", [("type", "ratings"), *window])
    stars = [i["data"]["rating"] for i in items if "rating" in i["data"]]
    assert (ratings["count"], ratings["sum"]) == (len(stars), sum(stars))
    assert ratings["average"] == pytest.approx(sum(stars) / len(stars), abs=0.005)
    count = await get(client, "/v1/reporting", [("type", "count"), *window])
    assert count["responses"] == len(items) < count["views"]


async def test_distribution_counts_choices_per_question(client: TestClient[Any, Any]) -> None:
    window = [("date_range_start", "2025-11-01"), ("date_range_end", "2026-11-21")]
    body = await get(
        client,
        "/v1/reporting",
        [("type", "distribution"), ("question_identifiers[]", "features_used"), *window],
    )
    picks = [r["data"]["features_used"] for r in COMPLETED if "features_used" in r["data"]]
    assert body["data"] == {
        o: sum(o in p for p in picks)
        for o in ["Reporting", "Integrations", "Dashboards", "Alerts", "API"]
    }
    assert (body["responses"], body["datapoints"]) == (len(picks), sum(len(p) for p in picks))
    assert body["datapoints"] > body["responses"]


async def test_reporting_filters_by_form_segment_and_tag(client: TestClient[Any, Any]) -> None:
    churn = next(t["uuid"] for t in TAGS if t["name"] == "churn-risk")
    window = [("date_range_start", "2025-11-01"), ("date_range_end", "2026-11-21")]
    body = await get(
        client,
        "/v1/reporting",
        [("type", "nps"), ("tag_uuids[]", churn), ("form_uuids[]", NPS_FORM), *window],
    )
    tagged = [
        r
        for r in COMPLETED
        if churn in RESPONSE_TAGS.get(r["uuid"], []) and r["form"]["uuid"] == NPS_FORM
    ]
    assert body["count"] == len(tagged) > 0
    assert body["data"]["promoters"] == 0


async def test_reporting_defaults_to_the_last_seven_days_through_today(
    client: TestClient[Any, Any],
) -> None:
    body = await get(client, "/v1/reporting", {"type": "count"})
    assert (body["date_range_start"], body["date_range_end"]) == (
        "2026-11-13 00:00:00",
        "2026-11-20 23:59:59",
    )
    assert body["responses"] == len(
        _window(COMPLETED, "2026-11-13 00:00:00", "2026-11-21 00:00:00")
    )


@pytest.mark.parametrize(
    ("params", "error"), [({}, "type is required"), ({"type": "score"}, "Invalid type")]
)
async def test_reporting_needs_a_known_type(
    client: TestClient[Any, Any], params: dict[str, str], error: str
) -> None:
    response = await client.get("/v1/reporting", headers=bearer(), params=params)
    assert (response.status, await response.json()) == (400, {"error": error})


# --- forms, segments, tags, traits, contacts ------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "keep"),
    [
        ("all", lambda f: not f["archived_at"]),
        ("published", lambda f: f["published_at"] and not f["archived_at"]),
        ("drafts", lambda f: not f["published_at"] and not f["archived_at"]),
        ("archived", lambda f: f["archived_at"]),
        ("all_with_archived", lambda f: True),
    ],
)
async def test_form_lists_filter_by_state_and_order_by_name(
    client: TestClient[Any, Any], mode: str, keep: Callable[[dict[str, Any]], Any]
) -> None:
    body = await get(client, "/v1/forms", {"list": mode})
    expected = sorted((f for f in FORMS if keep(f)), key=lambda f: f["name"].lower())
    assert [f["uuid"] for f in body["items"]] == [f["uuid"] for f in expected]
    assert all(set(f) == {"uuid", "name"} for f in body["items"]) and expected


async def test_form_flags_add_info_and_config(client: TestClient[Any, Any]) -> None:
    body = await get(client, "/v1/forms", {"include_info": "1", "include_config": "1"})
    nps = next(f for f in body["items"] if f["uuid"] == NPS_FORM)
    assert nps["responses_count"] == sum(1 for r in COMPLETED if r["form"]["uuid"] == NPS_FORM)
    assert [e["identifier"] for e in nps["config"]["form_elements"]] == ["nps", "nps_reason"]
    assert "next_page_cursor" not in body["pagination"]


async def test_form_history_needs_a_known_form(client: TestClient[Any, Any]) -> None:
    body = await get(client, "/v1/forms/history", {"form_uuid": NPS_FORM})
    assert [i["action"] for i in body["items"]][-1] == "create"
    missing = await client.get("/v1/forms/history", headers=bearer(), params={"form_uuid": TESTING})
    assert (missing.status, await missing.json()) == (404, {"error": "Form not found"})


async def test_segments_and_tags_are_ordered_by_name(client: TestClient[Any, Any]) -> None:
    segments = (await get(client, "/v1/segments"))["items"]
    tags = (await get(client, "/v1/tags"))["items"]
    assert [s["name"] for s in segments] == sorted((s["name"] for s in segments), key=str.lower)
    assert any(s["is_manual"] for s in segments) and any(not s["is_manual"] for s in segments)
    assert [t["name"] for t in tags] == sorted(t["name"] for t in TAGS)
    assert set(tags[0]) == {"uuid", "name", "created_at"}


@pytest.mark.parametrize(
    ("include", "sources"),
    [("all", {"contact", "form", "account"}), ("contact", {"contact"}), ("form", {"form"})],
)
async def test_traits_filter_by_source(
    client: TestClient[Any, Any], include: str, sources: set[str]
) -> None:
    items = (await get(client, "/v1/traits", {"include": include}))["items"]
    assert {t["source"] for t in items} == sources
    assert {"slug", "name", "type", "source"} == set(items[0])


async def test_contacts_filter_and_single_contact_lookup(client: TestClient[Any, Any]) -> None:
    contact = CONTACTS[5]
    for given in (
        {"uuid": contact["uuid"]},
        {"id": contact["remote_id"]},
        {"email": contact["email"]},
    ):
        assert await get(client, "/v1/contact", given) == contact
    two = await client.get(
        "/v1/contact",
        headers=bearer(),
        params={"id": contact["remote_id"], "email": contact["email"]},
    )
    unknown = await client.get("/v1/contact", headers=bearer(), params={"id": "USR-0"})
    assert two.status == 400 and (unknown.status, await unknown.json()) == (
        404,
        {"error": "Contact not found"},
    )
    searched = await get(client, "/v1/contacts", {"search": contact["remote_id"]})
    assert [c["uuid"] for c in searched["items"]] == [contact["uuid"]]
    by_name = await get(client, "/v1/contacts", {"order_by": "display_name", "page_length": "1000"})
    names = [c["display_name"].lower() for c in by_name["items"]]
    assert names == sorted(names) and len(names) == len(CONTACTS)


# --- writes ---------------------------------------------------------------------------------------


async def test_tagging_a_response_creates_the_tag_and_filters_on_it(
    client: TestClient[Any, Any],
) -> None:
    target = COMPLETED[7]["uuid"]
    assert await send(
        client, "POST", "/v1/responses/tags", {"uuid": target, "tags": ["escalated"]}
    ) == {"message": "ok"}
    tag = next(t for t in (await get(client, "/v1/tags"))["items"] if t["name"] == "escalated")
    found = await all_responses(client, [("tag_uuid", tag["uuid"])])
    assert [i["uuid"] for i in found] == [target]
    report = await get(
        client,
        "/v1/reporting",
        [("type", "count"), ("tag_uuids[]", tag["uuid"]), ("date_range_start", "2025-01-01")],
    )
    assert report["responses"] == 1


async def test_stored_responses_respect_prevent_duplicates(client: TestClient[Any, Any]) -> None:
    body = {
        "form_uuid": NPS_FORM,
        "id": "USR-NEW-1",
        "email": "new.user@example.com",
        "nps": 3,
        "nps_reason": "Too slow",
        "date": "2026-11-20 10:00:00",
        "tags": ["churn-risk"],
    }
    first = await send(client, "POST", "/v1/responses", body)
    again = await send(client, "POST", "/v1/responses", {**body, "nps": 4})
    assert first["uuid"] == again["uuid"]
    extra = await send(client, "POST", "/v1/responses", {**body, "prevent_duplicates": False})
    assert extra["uuid"] != first["uuid"]
    mine = await all_responses(client, [("search", "USR-NEW-1")])
    assert {(i["uuid"], i["data"]["nps"]) for i in mine} == {(first["uuid"], 4), (extra["uuid"], 3)}
    assert mine[0]["contact"]["email"] == "new.user@example.com"
    missing = await client.post(
        "/v1/responses", headers=bearer(), json={"form_uuid": TESTING, "id": "x"}
    )
    assert (missing.status, await missing.json()) == (404, {"error": "Form not found"})


async def test_identify_user_creates_then_updates_a_contact(client: TestClient[Any, Any]) -> None:
    created = await send(
        client,
        "POST",
        "/v1/identify-user",
        {
            "id": "USR-ID-9",
            "email": "ida.new@example.com",
            "plan": "pro",
            "account": {"id": "ACC-NEW", "name": "New Account Ltd", "industry": "Software"},
        },
    )
    updated = await send(
        client, "POST", "/v1/identify-user", {"id": "USR-ID-9", "plan": "enterprise"}
    )
    assert created["contact_uuid"] == updated["contact_uuid"] and created["message"] == "ok"
    contact = await get(client, "/v1/contact", {"id": "USR-ID-9"})
    assert contact["attributes"] == {"plan": "enterprise"}
    assert (contact["account"]["remote_id"], contact["account"]["attributes"]) == (
        "ACC-NEW",
        {"industry": "Software"},
    )
    refused = await client.post("/v1/identify-user", headers=bearer(), json={"plan": "pro"})
    assert refused.status == 400


async def test_manual_segments_accept_members_and_automatic_ones_refuse(
    client: TestClient[Any, Any],
) -> None:
    segments = table("segments")[PRODUCTION]
    manual = next(s for s in segments if s["is_manual"])
    automatic = next(s for s in segments if not s["is_manual"])
    contact = next(
        c for c in CONTACTS if not any(s["uuid"] == manual["uuid"] for s in c["segments"])
    )
    added = await send(
        client,
        "POST",
        "/v1/sync-segment",
        {"uuid": contact["uuid"], "segment_uuid": manual["uuid"]},
    )
    assert added == {
        "message": "ok",
        "contact_uuid": contact["uuid"],
        "segment_uuid": manual["uuid"],
    }
    members = await get(
        client, "/v1/contacts", {"segment_uuid": manual["uuid"], "page_length": "1000"}
    )
    assert contact["uuid"] in {c["uuid"] for c in members["items"]}
    await send(
        client,
        "DELETE",
        "/v1/sync-segment",
        {"uuid": contact["uuid"], "segment_uuid": manual["uuid"]},
    )
    members = await get(
        client, "/v1/contacts", {"segment_uuid": manual["uuid"], "page_length": "1000"}
    )
    assert contact["uuid"] not in {c["uuid"] for c in members["items"]}
    refused = await client.post(
        "/v1/sync-segment",
        headers=bearer(),
        json={"uuid": contact["uuid"], "segment_uuid": automatic["uuid"]},
    )
    assert (refused.status, await refused.json()) == (400, {"error": "Segment is not manual"})


async def test_deleting_a_contact_deletes_their_responses(client: TestClient[Any, Any]) -> None:
    counts = Counter(r["contact"]["uuid"] for r in COMPLETED)
    contact_uuid, answered = counts.most_common(1)[0]
    await send(client, "DELETE", "/v1/contact", {"uuid": contact_uuid})
    remaining = await get(client, "/v1/responses", {"page_length": "1"})
    assert remaining["pagination"]["items_count"] == len(COMPLETED) - answered
    gone = await client.get("/v1/contact", headers=bearer(), params={"uuid": contact_uuid})
    assert gone.status == 404


async def test_forms_can_be_unpublished_duplicated_and_archived(
    client: TestClient[Any, Any],
) -> None:
    await send(client, "POST", "/v1/forms/publish", {"form_uuid": NPS_FORM, "published": 0})
    drafts = await get(client, "/v1/forms", {"list": "drafts"})
    assert NPS_FORM in {f["uuid"] for f in drafts["items"]}
    copy = await send(
        client, "POST", "/v1/forms/duplicate", {"form_uuid": NPS_FORM, "name": "NPS – copy"}
    )
    assert copy["source_form_uuid"] == NPS_FORM and re.fullmatch(
        r"[0-9a-f-]{36}", copy["new_form_uuid"]
    )
    await send(client, "DELETE", "/v1/forms", {"form_uuid": copy["new_form_uuid"]})
    archived = await get(client, "/v1/forms", {"list": "archived"})
    assert copy["new_form_uuid"] in {f["uuid"] for f in archived["items"]}


# --- dates, limits, routing -----------------------------------------------------------------------


async def test_rebasing_shifts_each_refiner_date_format(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(
        create_sandbox_app(now=lambda: ANCHOR + timedelta(days=3, hours=1))
    )
    newest = (await get(client, "/v1/responses", {"page_length": "1"}))["items"][0]
    original = max(COMPLETED, key=lambda r: (r["last_data_reception_at"], r["uuid"]))
    assert newest["uuid"] == original["uuid"]
    assert stamp(newest["completed_at"]) - stamp(original["completed_at"]) == timedelta(days=3)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", newest["completed_at"])
    contact = await get(client, "/v1/contact", {"uuid": CONTACTS[0]["uuid"]})
    assert contact["first_seen_at"][10:] == CONTACTS[0]["first_seen_at"][10:]
    assert contact["first_seen_at"] != CONTACTS[0]["first_seen_at"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z", contact["first_seen_at"])


async def test_a_thirty_day_window_is_well_populated_after_rebasing(
    aiohttp_client: AiohttpClient,
) -> None:
    now = datetime.now(UTC)
    client = await aiohttp_client(create_sandbox_app(now=lambda: now))
    start = (now - timedelta(days=30)).strftime("%Y-%m-%d")
    body = await get(client, "/v1/responses", {"date_range_start": start, "page_length": "1"})
    assert body["pagination"]["items_count"] >= 100


async def test_rate_limits_count_per_key_and_per_contact(aiohttp_client: AiohttpClient) -> None:
    clock = Clock(ANCHOR)
    client = await aiohttp_client(
        create_sandbox_app(rebase_dates=False, rate_limits=True, now=clock)
    )
    remote = CONTACTS[0]["remote_id"]
    for _ in range(100):
        assert (
            await client.get("/v1/contact", headers=bearer(), params={"id": remote})
        ).status == 200
    refused = await client.get("/v1/contact", headers=bearer(), params={"id": remote})
    assert refused.status == 429 and refused.headers["Retry-After"] == "60"
    assert "X-RateLimit-Remaining" not in refused.headers
    other = await client.get(
        "/v1/contact", headers=bearer(), params={"id": CONTACTS[1]["remote_id"]}
    )
    assert other.status == 200
    for _ in range(4000 - 102):
        await client.get("/v1/", headers=bearer())
    clock.advance(20)
    key_refused = await client.get("/v1/", headers=bearer())
    assert (key_refused.status, key_refused.headers["Retry-After"]) == (429, "40")
    assert (await client.get("/v1/", headers=bearer("refiner_key_testing"))).status == 200
    clock.advance(40)
    assert (await client.get("/v1/", headers=bearer())).status == 200


async def test_unknown_paths_answer_with_a_json_error(client: TestClient[Any, Any]) -> None:
    response = await client.get("/v1/surveys", headers=bearer())
    assert (response.status, await response.json()) == (404, {"error": "Not found"})
