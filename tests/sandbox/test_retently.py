"""The sandbox's Retently REST v2 emulation: auth, envelopes, paging, filters, writes, extensions,
introspection, date rebasing and the rate limit, against the committed fixtures.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from sandbox import DEMO_TOKENS, FIXTURES_DIR, create_sandbox_app
from tests.support import AiohttpClient, Clock

ANCHOR = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ADMIN = "rtly_mcp_pat_demoadmin_s3cr3t"
ANALYST = "rtly_mcp_pat_demoanalyst_s3cr3t"
WRITER = "rtly_mcp_pat_demowriter_s3cr3t"
OTHER = "rtly_mcp_pat_otheradmin_s3cr3t"
EXPIRED = "rtly_mcp_pat_expired_s3cr3t"
REVOKED = "rtly_mcp_pat_revoked_s3cr3t"
V2 = "/api/v2"
ZERO_ID = "0" * 24

UNAUTHORIZED = {
    "message": "Please check your API Key to make sure it's valid.",
    "code": 401,
    "data": None,
}
FORBIDDEN = {"message": "Forbidden.", "code": 403, "data": None}
NOT_FOUND = {"message": "Not found.", "code": 404, "data": None}
BAD_REQUEST = {"message": "Bad request.", "code": 400, "data": None}


def table(name: str, account: str = "acc_demo") -> Any:
    return json.loads((FIXTURES_DIR / "retently" / f"{name}.json").read_text("utf-8"))[account]


FEEDBACK: list[dict[str, Any]] = table("feedback")
CUSTOMERS: list[dict[str, Any]] = table("customers")
CAMPAIGNS: list[dict[str, Any]] = table("campaigns")
OUTBOX: list[dict[str, Any]] = table("outbox")


def key(token: str = ADMIN) -> dict[str, str]:
    return {"Authorization": f"api_key={token}"}


@pytest.fixture
async def client(aiohttp_client: AiohttpClient) -> TestClient[Any, Any]:
    return await aiohttp_client(create_sandbox_app(rebase_dates=False, now=lambda: ANCHOR))


async def get(client: TestClient[Any, Any], path: str, token: str = ADMIN, **params: Any) -> Any:
    response = await client.get(V2 + path, headers=key(token), params=params or None)
    assert response.status == 200, await response.text()
    return await response.json()


async def post(client: TestClient[Any, Any], path: str, body: Any, token: str = ADMIN) -> Any:
    response = await client.post(V2 + path, headers=key(token), json=body)
    assert response.status == 200, await response.text()
    return await response.json()


async def every_page(
    client: TestClient[Any, Any], path: str, collection: str, **params: Any
) -> list[Any]:
    """Follow the documented stop rule: stop when page >= pages."""
    rows: list[Any] = []
    page = 1
    while True:
        data = (await get(client, path, page=page, **params))["data"]
        rows += data[collection]
        if page >= data["pages"]:
            return rows
        page += 1


# --- auth -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({"Authorization": f"api_key={ADMIN}"}, {}),
        ({"Authorization": f"Bearer {ADMIN}"}, {}),
        ({"X-Api-Key": ADMIN}, {}),
        ({}, {"api_key": ADMIN}),
    ],
    ids=["authorization-api-key", "bearer", "x-api-key", "query"],
)
async def test_every_documented_credential_form_reaches_the_token_account(
    client: TestClient[Any, Any], headers: dict[str, str], query: dict[str, str]
) -> None:
    response = await client.get(f"{V2}/feedback", headers=headers, params=query)
    assert response.status == 200
    assert (await response.json())["data"]["total"] == len(FEEDBACK)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        key("rtly_mcp_pat_nobody_s3cr3t"),
        key(EXPIRED),
        key(REVOKED),
        {"Authorization": f"Basic {ADMIN}"},
    ],
    ids=["missing", "unknown", "expired", "revoked", "other-scheme"],
)
async def test_bad_credentials_get_the_documented_401_body(
    client: TestClient[Any, Any], headers: dict[str, str]
) -> None:
    response = await client.get(f"{V2}/feedback", headers=headers)
    assert response.status == 401
    assert await response.json() == UNAUTHORIZED


async def test_a_read_only_token_reads_but_gets_403_on_post_and_delete(
    client: TestClient[Any, Any],
) -> None:
    row = FEEDBACK[0]
    assert (await get(client, "/feedback", ANALYST))["data"]["total"] == len(FEEDBACK)
    tagged = await client.post(
        f"{V2}/response/tags",
        headers=key(ANALYST),
        json={"id": row["id"], "tags": ["x"], "op": "append"},
    )
    deleted = await client.delete(
        f"{V2}/customers",
        headers=key(ANALYST),
        json={"subscribers": [{"email": CUSTOMERS[0]["email"]}]},
    )
    assert (tagged.status, await tagged.json()) == (403, FORBIDDEN)
    assert (deleted.status, await deleted.json()) == (403, FORBIDDEN)
    after = (await get(client, f"/feedback/{row['id']}"))["data"]["responses"][0]
    assert after["feedbackTags"] == row["feedbackTags"]
    assert (await get(client, "/customers"))["data"]["total"] == len(CUSTOMERS)


async def test_each_token_sees_only_its_own_account(client: TestClient[Any, Any]) -> None:
    other = await get(client, "/feedback", OTHER)
    assert other["data"]["total"] == len(table("feedback", "acc_other"))
    response = await client.get(f"{V2}/feedback/{FEEDBACK[0]['id']}", headers=key(OTHER))
    assert response.status == 404


async def test_companies_need_the_b2b_feature(client: TestClient[Any, Any]) -> None:
    response = await client.get(f"{V2}/companies", headers=key(OTHER))
    assert response.status == 403
    assert await response.json() == {
        "message": "Companies require the B2B Account-CX feature.",
        "code": 403,
        "data": None,
    }


# --- envelopes and paging -------------------------------------------------------------------------


async def test_lists_use_the_envelope_with_paging_keys_inside_data(
    client: TestClient[Any, Any],
) -> None:
    body = await get(client, "/feedback")
    assert (body["message"], body["code"]) == ("Success.", 200)
    data = body["data"]
    assert len(data["responses"]) == 20
    assert {k: data[k] for k in ("page", "limit", "sort", "total")} == {
        "page": 1,
        "limit": 20,
        "sort": "-createdDate",
        "total": len(FEEDBACK),
    }
    assert data["pages"] == -(-len(FEEDBACK) // 20)
    dates = [row["createdDate"] for row in data["responses"]]
    assert dates == sorted(dates, reverse=True)


async def test_paging_to_the_stop_rule_returns_every_row_once(client: TestClient[Any, Any]) -> None:
    rows = await every_page(client, "/feedback", "responses", limit=73)
    assert sorted(row["id"] for row in rows) == sorted(row["id"] for row in FEEDBACK)
    past_end = await get(client, "/feedback", limit=73, page=99)
    assert past_end["data"]["responses"] == []


async def test_ascending_sort_puts_the_oldest_first(client: TestClient[Any, Any]) -> None:
    data = (await get(client, "/feedback", sort="createdDate", limit=5))["data"]
    assert data["responses"][0]["createdDate"] == min(row["createdDate"] for row in FEEDBACK)
    assert data["sort"] == "createdDate"


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "1001"},
        {"limit": "0"},
        {"page": "0"},
        {"limit": "ten"},
        {"sort": "-favourite"},
        {"startDate": "yesterday"},
        {"customerId": "123"},
        {"match": "some"},
    ],
)
async def test_bad_parameters_get_the_400_body(
    client: TestClient[Any, Any], params: dict[str, str]
) -> None:
    response = await client.get(f"{V2}/feedback", headers=key(), params=params)
    assert response.status == 400
    assert await response.json() == BAD_REQUEST


async def test_a_limit_of_1000_is_accepted(client: TestClient[Any, Any]) -> None:
    data = (await get(client, "/feedback", limit=1000))["data"]
    assert (data["pages"], len(data["responses"])) == (1, len(FEEDBACK))


async def test_a_sandbox_with_a_page_size_cap_serves_smaller_pages_of_the_same_rows(
        aiohttp_client: AiohttpClient) -> None:
    capped = await aiohttp_client(create_sandbox_app(rebase_dates=False, now=lambda: ANCHOR,
                                                     max_page_size=100))
    data = (await get(capped, "/feedback", limit=1000))["data"]
    assert (data["pages"], data["limit"], len(data["responses"])) == (
        math.ceil(len(FEEDBACK) / 100), 100, 100)
    rows = await every_page(capped, "/feedback", "responses", limit=1000)
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in FEEDBACK)
    assert len((await get(capped, "/feedback", limit=30))["data"]["responses"]) == 30


@pytest.mark.parametrize(
    ("current", "legacy"),
    [
        ("/customers", "/nps/customers"),
        ("/outbox", "/nps/outbox"),
        ("/feedback", "/nps/customers/response"),
        (f"/customers/{CUSTOMERS[3]['id']}", f"/nps/customers/{CUSTOMERS[3]['id']}"),
    ],
)
async def test_legacy_aliases_serve_identical_output(
    client: TestClient[Any, Any], current: str, legacy: str
) -> None:
    assert await get(client, current) == await get(client, legacy)


async def test_nps_score_alias_is_the_metric_path(client: TestClient[Any, Any]) -> None:
    body = await get(client, "/nps/score")
    assert body["data"]["metricsType"] == "NPS"


# --- filters --------------------------------------------------------------------------------------


async def test_feedback_filters_by_email_customer_and_campaign(
    client: TestClient[Any, Any],
) -> None:
    row = FEEDBACK[10]
    for name, value, field in (
        ("email", row["email"].upper(), "email"),
        ("customerId", row["customerId"], "customerId"),
        ("campaignId", row["campaignId"], "campaignId"),
    ):
        got = await every_page(client, "/feedback", "responses", limit=200, **{name: value})
        expected = [r for r in FEEDBACK if str(r[field]).lower() == value.lower()]
        assert sorted(r["id"] for r in got) == sorted(r["id"] for r in expected)


async def test_date_window_accepts_iso_and_unix_seconds(client: TestClient[Any, Any]) -> None:
    start, end = ANCHOR - timedelta(days=60), ANCHOR - timedelta(days=30)
    iso = await every_page(
        client,
        "/feedback",
        "responses",
        limit=500,
        startDate=start.isoformat(),
        endDate=end.isoformat(),
    )
    unix = await every_page(
        client,
        "/feedback",
        "responses",
        limit=500,
        startDate=str(int(start.timestamp())),
        endDate=str(int(end.timestamp())),
    )
    expected = [r for r in FEEDBACK if start <= datetime.fromisoformat(r["createdDate"]) <= end]
    assert [r["id"] for r in iso] == [r["id"] for r in unix]
    assert sorted(r["id"] for r in iso) == sorted(r["id"] for r in expected)
    assert expected


def _prop(row: dict[str, Any], name: str, field: str = "customProps") -> Any:
    return next((p["value"] for p in row[field] if p["name"] == name), None)


@pytest.mark.parametrize("operator_key", ["op", "operator"])
async def test_attribute_filter_takes_op_or_operator(
    client: TestClient[Any, Any], operator_key: str
) -> None:
    params = {
        "attributes[0][name]": "plan",
        f"attributes[0][{operator_key}]": "contains",
        "attributes[0][value]": "ENTERP",
        "limit": "1000",
    }
    got = (await get(client, "/feedback", **params))["data"]["responses"]
    expected = [r for r in FEEDBACK if _prop(r, "plan") == "Enterprise"]
    assert sorted(r["id"] for r in got) == sorted(r["id"] for r in expected)
    assert expected


async def test_attribute_filters_compare_numbers_and_combine_with_match(
    client: TestClient[Any, Any],
) -> None:
    both = {
        "attributes[0][name]": "seats",
        "attributes[0][op]": "gte",
        "attributes[0][value]": "100",
        "attributes[1][name]": "region",
        "attributes[1][op]": "ne",
        "attributes[1][value]": "EU",
        "limit": "1000",
    }
    all_rows = (await get(client, "/customers", **both))["data"]["subscribers"]
    any_rows = (await get(client, "/customers", match="any", **both))["data"]["subscribers"]

    def seats(row: dict[str, Any]) -> int:
        return int(_prop(row, "seats", "properties"))

    expected_all = [
        c for c in CUSTOMERS if seats(c) >= 100 and _prop(c, "region", "properties") != "EU"
    ]
    expected_any = [
        c for c in CUSTOMERS if seats(c) >= 100 or _prop(c, "region", "properties") != "EU"
    ]
    assert sorted(c["id"] for c in all_rows) == sorted(c["id"] for c in expected_all)
    assert sorted(c["id"] for c in any_rows) == sorted(c["id"] for c in expected_any)
    assert len(any_rows) > len(all_rows) > 0


async def test_an_unknown_attribute_operator_is_a_bad_request(client: TestClient[Any, Any]) -> None:
    params = {
        "attributes[0][name]": "plan",
        "attributes[0][op]": "like",
        "attributes[0][value]": "Pro",
    }
    response = await client.get(f"{V2}/outbox", headers=key(), params=params)
    assert (response.status, await response.json()) == (400, BAD_REQUEST)


async def test_outbox_filters_by_channel_and_sender_newest_first(
    client: TestClient[Any, Any],
) -> None:
    got = (await get(client, "/outbox", channel="link", sentBy="campaign", limit=1000))["data"]
    expected = [r for r in OUTBOX if r["channel"] == "link" and r["sentBy"] == "campaign"]
    assert [r["surveyId"] for r in got["surveys"]] == [
        r["surveyId"] for r in sorted(expected, key=lambda r: r["sentDate"], reverse=True)
    ]
    assert got["sort"] == "-surveyCreatedDate" and expected


# --- by id ----------------------------------------------------------------------------------------


async def test_feedback_id_gives_one_item_and_campaign_id_gives_its_feedback(
    client: TestClient[Any, Any],
) -> None:
    one = (await get(client, f"/feedback/{FEEDBACK[5]['id']}"))["data"]
    assert one["responses"] == [FEEDBACK[5]] and one["total"] == 1
    campaign = CAMPAIGNS[2]
    many = (await get(client, f"/feedback/{campaign['id']}", limit=1000))["data"]
    assert many["total"] == sum(1 for r in FEEDBACK if r["campaignId"] == campaign["id"]) > 1
    assert {r["campaignId"] for r in many["responses"]} == {campaign["id"]}


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/customers/{ZERO_ID}", 404),
        (f"/feedback/{ZERO_ID}", 404),
        (f"/reports/{ZERO_ID}", 404),
        (f"/templates/{ZERO_ID}", 404),
        (f"/users/{ZERO_ID}", 404),
        (f"/digests/{ZERO_ID}", 404),
        (f"/trends/{ZERO_ID}", 404),
        (f"/feedback/{ZERO_ID}/replies", 404),
        ("/companies/unknown.example", 404),
        ("/integrations/nope/status", 404),
        ("/hours/score", 404),
        ("/no/such/path", 404),
        ("/customers/abc", 400),
        ("/feedback/5a9d595701c85b38114b5a1", 400),
        ("/users/me", 400),
    ],
)
async def test_unknown_ids_are_404_and_malformed_ids_400(
    client: TestClient[Any, Any], path: str, status: int
) -> None:
    response = await client.get(V2 + path, headers=key())
    assert response.status == status
    assert await response.json() == (NOT_FOUND if status == 404 else BAD_REQUEST)


async def test_customer_by_id_is_an_object_with_a_legacy_list_switch(
    client: TestClient[Any, Any],
) -> None:
    customer = CUSTOMERS[7]
    assert (await get(client, f"/customers/{customer['id']}"))["data"] == customer
    response = await client.get(
        f"{V2}/customers/{customer['id']}", headers={**key(), "X-Sandbox-Legacy-Shapes": "1"}
    )
    assert (await response.json())["data"] == {"subscribers": [customer]}


async def test_companies_resolve_by_id_or_domain(client: TestClient[Any, Any]) -> None:
    companies = (await get(client, "/companies", limit=100))["data"]["companies"]
    assert len(companies) == 15
    company = companies[3]
    by_id = (await get(client, f"/companies/{company['id']}"))["data"]
    by_domain = (await get(client, f"/companies/{company['domain'].upper()}"))["data"]
    assert by_id == by_domain == company
    assert company["contactsCount"] == sum(1 for c in CUSTOMERS if c["companyId"] == company["id"])


# --- computed figures -----------------------------------------------------------------------------

BANDS = {"NPS": (9, 7), "CSAT": (4, 3), "CES": (5, 4), "STAR": (4, 3)}


@pytest.mark.parametrize("metric", ["nps", "csat", "ces", "star"])
async def test_score_is_recomputable_from_the_feedback_rows(
    client: TestClient[Any, Any], metric: str
) -> None:
    data = (await get(client, f"/{metric}/score"))["data"]
    scores = [r["score"] for r in FEEDBACK if r["metricsType"] == metric.upper()]
    promoter, passive = BANDS[metric.upper()]
    promoters = sum(1 for s in scores if s >= promoter)
    detractors = sum(1 for s in scores if s < passive)
    assert data["metricsType"] == metric.upper()
    assert data["totalResponses"] == len(scores) == sum(data["ratingDistribution"].values())
    assert (data["promotersCount"], data["detractorsCount"]) == (promoters, detractors)
    assert data["scoreSum"] == sum(scores)
    if metric == "nps":
        assert data["score"] == math.floor(100 * (promoters - detractors) / len(scores) + 0.5)
    elif metric == "csat":
        assert data["score"] == pytest.approx(100 * promoters / len(scores), abs=0.05)
    else:
        assert data["score"] == pytest.approx(sum(scores) / len(scores), abs=0.05)


async def test_score_has_a_legacy_nps_key_switch(client: TestClient[Any, Any]) -> None:
    response = await client.get(
        f"{V2}/nps/score", headers={**key(), "X-Sandbox-Legacy-Shapes": "1"}
    )
    data = (await response.json())["data"]
    assert "score" not in data and isinstance(data["nps"], int)


async def test_reports_match_campaigns_feedback_and_outbox(client: TestClient[Any, Any]) -> None:
    body = await get(client, "/reports/")
    assert set(body) == {"message", "code", "data"} and isinstance(body["data"], list)
    reports = {r["campaignId"]: r for r in body["data"]}
    assert set(reports) == {c["id"] for c in CAMPAIGNS}
    for campaign in CAMPAIGNS:
        report = reports[campaign["id"]]
        assert {k: report[k] for k in ("name", "metric", "type", "channel", "isActive")} == {
            "name": campaign["name"],
            "metric": campaign["metric"],
            "type": campaign["type"],
            "channel": campaign["channel"],
            "isActive": campaign["isActive"],
        }
        rows = [r for r in FEEDBACK if r["campaignId"] == campaign["id"]]
        assert (
            report["last"]["total"] == len(rows) == sum(point["total"] for point in report["trend"])
        )
        sent = [
            o for o in OUTBOX if o["campaignId"] == campaign["id"] and o["status"] != "SCHEDULED"
        ]
        assert report["deliveryStats"]["totalCount"] == len(sent)
        assert report["deliveryStats"]["responded"] == sum(
            1 for o in sent if o["status"] == "RESPONDED"
        )
    one = (await get(client, f"/reports/{CAMPAIGNS[0]['id']}"))["data"]
    assert one == [reports[CAMPAIGNS[0]["id"]]]


async def test_trend_groups_list_and_compute_a_window(client: TestClient[Any, Any]) -> None:
    groups = (await get(client, "/trends"))["data"]
    default = next(g for g in groups if g["isDefault"])
    data = (await get(client, f"/trends/{default['id']}", date="past-year"))["data"]
    support = [
        r
        for r in FEEDBACK
        if r["metricsType"] == "NPS"
        and any(t["name"] == "Support" for t in r["feedbackTopics"])
        and datetime.fromisoformat(r["createdDate"]) >= ANCHOR - timedelta(days=365)
    ]
    assert data["current"]["total"] == len(support) == sum(data["distribution"].values())
    bad = await client.get(
        f"{V2}/trends/{default['id']}", headers=key(), params={"date": "fortnight"}
    )
    assert bad.status == 400


TREND_WINDOWS = [  # preset, extra query, first instant included (the end is always ANCHOR)
    ("today", {}, datetime(2026, 11, 20, tzinfo=UTC)),
    ("past-week", {}, ANCHOR - timedelta(days=7)),
    ("past-3-months", {}, ANCHOR - timedelta(days=91)),
    ("this-month-to-date", {}, datetime(2026, 11, 1, tzinfo=UTC)),
    ("this-quarter-to-date", {}, datetime(2026, 10, 1, tzinfo=UTC)),
    ("this-year-to-date", {}, datetime(2026, 1, 1, tzinfo=UTC)),
    ("custom", {"startDate": "2026-08-01"}, datetime(2026, 8, 1, tzinfo=UTC)),
]


@pytest.mark.parametrize(("period", "extra", "start"), TREND_WINDOWS)
async def test_trend_presets_cover_their_window(
    client: TestClient[Any, Any], period: str, extra: dict[str, str], start: datetime
) -> None:
    group = next(g for g in table("trends") if g["metric"] == "CES")
    data = (await get(client, f"/trends/{group['id']}", date=period, **extra))["data"]
    expected = [
        r
        for r in FEEDBACK
        if r["metricsType"] == "CES" and start <= datetime.fromisoformat(r["createdDate"]) <= ANCHOR
    ]
    assert (data["date"], data["current"]["total"]) == (period, len(expected))
    assert sum(point["total"] for point in data["trend"]) == len(expected)


async def test_a_custom_trend_window_needs_a_start(client: TestClient[Any, Any]) -> None:
    group = table("trends")[0]
    response = await client.get(
        f"{V2}/trends/{group['id']}", headers=key(), params={"date": "custom"}
    )
    assert (response.status, await response.json()) == (400, BAD_REQUEST)


def test_fixtures_name_only_known_people_and_reference_existing_records() -> None:
    for account in ("acc_demo", "acc_other"):
        customers = {c["id"]: c for c in table("customers", account)}
        emails = {c["email"] for c in customers.values()}
        team = {u["email"] for u in table("users", account)}
        campaigns = {c["id"] for c in table("campaigns", account)}
        feedback = table("feedback", account)
        for row in feedback:
            customer = customers[row["customerId"]]
            assert (row["email"], row["firstName"]) == (customer["email"], customer["firstName"])
            assert row["campaignId"] in campaigns and re.fullmatch(r"[0-9a-f]{24}", row["id"])
            assert {n["author"] for n in row["notes"]} <= team
            assert row["assigned"] is None or row["assigned"] in team
            kind = {"NPS": {"promoter", "passive", "detractor"}}.get(
                row["metricsType"], {"positive", "neutral", "negative"}
            )
            assert row["ratingCategory"] in kind
        for outbound in table("outbox", account):
            assert outbound["customerId"] in customers and outbound["email"] in emails
        for thread in table("replies", account).values():
            assert all({r["from"], r["to"]} <= emails | team for r in thread)
        assert {e["email"] for e in table("suppressions", account)["emails"]} <= emails
        assert all(set(d["recipients"]) <= team for d in table("digests", account))
        assert {f["createdBy"] for f in table("filters", account)["saved"]} <= team
        ids = [r["id"] for r in feedback] + list(customers)
        assert len(ids) == len(set(ids))
    assert len(FEEDBACK) >= 320 and len(CUSTOMERS) >= 100


async def test_campaigns_and_templates_use_top_level_arrays(client: TestClient[Any, Any]) -> None:
    campaigns = await get(client, "/campaigns")
    templates = await get(client, "/templates")
    assert "data" not in campaigns and campaigns["campaigns"] == CAMPAIGNS
    assert "data" not in templates and all(
        "surveyQuestions" not in t for t in templates["templates"]
    )
    detail = (await get(client, f"/templates/{templates['templates'][0]['id']}"))["data"]
    assert detail["surveyQuestions"][0]["metricsType"] == detail["metric"]


# --- writes ---------------------------------------------------------------------------------------


async def test_response_tags_append_then_replace_and_show_in_reads(
    client: TestClient[Any, Any],
) -> None:
    row = next(r for r in FEEDBACK if set(r["feedbackTags"]) - {"churn-risk", "new"})
    done = await post(
        client, "/response/tags", {"id": row["id"], "tags": ["churn-risk", "new"], "op": "append"}
    )
    assert done == {"code": 200, "message": "Success."}
    read = (await get(client, f"/feedback/{row['id']}"))["data"]["responses"][0]
    assert read["feedbackTags"] == list(dict.fromkeys([*row["feedbackTags"], "churn-risk", "new"]))
    await post(client, "/response/tags", {"id": row["id"], "tags": ["only"]})
    listed = (await get(client, "/feedback", limit=1000))["data"]["responses"]
    again = next(r for r in listed if r["id"] == row["id"])
    assert again["feedbackTags"] == again["feedbackTagsNew"] == ["only"]


async def test_response_topics_default_to_neutral_and_refuse_unknown_sentiments(
    client: TestClient[Any, Any],
) -> None:
    row = FEEDBACK[1]
    await post(client, "/response/topics", {"id": row["id"], "topics": [{"name": "Pricing"}]})
    read = (await get(client, f"/feedback/{row['id']}"))["data"]["responses"][0]
    assert read["feedbackTopics"] == [{"name": "Pricing", "sentiment": "neutral"}]
    bad = await client.post(
        f"{V2}/response/topics",
        headers=key(),
        json={"id": row["id"], "topics": [{"name": "UX", "sentiment": "angry"}]},
    )
    missing = await client.post(
        f"{V2}/response/tags", headers=key(), json={"id": ZERO_ID, "tags": ["x"]}
    )
    assert (bad.status, await bad.json()) == (400, BAD_REQUEST)
    assert (missing.status, await missing.json()) == (404, NOT_FOUND)


async def test_customer_upsert_creates_then_updates_with_either_name_spelling(
    client: TestClient[Any, Any],
) -> None:
    email = "new.person@example.net"
    created = await post(
        client,
        "/customers",
        {
            "subscribers": [
                {
                    "email": email,
                    "first_name": "Nova",
                    "last_name": "Quill",
                    "tags": ["trial"],
                    "properties": [{"label": "Plan", "type": "string", "value": "Pro"}],
                },
                {"email": email, "firstName": "Dup"},
            ]
        },
    )
    assert created["message"] == "Subscribers was successfully added"
    assert created["data"] == {email: {"status": "created", "id": created["data"][email]["id"]}}
    updated = await post(
        client,
        "/customers",
        {
            "subscribers": [
                {"email": email, "firstName": "Novella", "unset_tags": ["trial"], "tags": ["vip"]}
            ]
        },
    )
    assert updated["data"][email] == {"status": "updated", "id": created["data"][email]["id"]}
    found = (await get(client, "/customers", email=email))["data"]["subscribers"]
    assert [(c["firstName"], c["lastName"], c["tags"]) for c in found] == [
        ("Novella", "Quill", ["vip"])
    ]
    assert found[0]["id"] == created["data"][email]["id"]
    assert found[0]["properties"] == [
        {"label": "Plan", "name": "plan", "type": "text", "value": "Pro"}
    ]


async def test_customer_delete_and_unsubscribe_report_per_email(
    client: TestClient[Any, Any],
) -> None:
    gone, kept = CUSTOMERS[0]["email"], CUSTOMERS[1]["email"]
    deleted = await client.delete(
        f"{V2}/customers",
        headers=key(),
        json={"subscribers": [{"email": gone}, {"email": "ghost@example.net"}]},
    )
    assert (await deleted.json())["data"] == [
        {"email": gone, "deleted": True},
        {"email": "ghost@example.net", "deleted": False},
    ]
    assert (await get(client, "/customers", email=gone))["data"]["total"] == 0
    opted = await post(
        client, "/customers/unsubscribe", {"message": "CRM", "subscribers": [{"email": kept}]}
    )
    assert opted["data"] == [{"email": kept, "unsubscribed": True}]


def _deliverable(count: int) -> list[str]:
    """Customer emails that no suppression, domain rule or opt-out drops."""
    blocked = {e["email"] for e in table("suppressions")["emails"]}
    domains = {d["pattern"] for d in table("suppressions")["domains"]}
    return [
        c["email"]
        for c in CUSTOMERS
        if c["email"] not in blocked and c["email"].split("@")[1] not in domains
    ][:count]


def _transactional() -> dict[str, Any]:
    return next(c for c in CAMPAIGNS if c["type"] == "transactional" and c["isActive"])


async def test_survey_drops_suppressed_and_opted_out_recipients_and_queues_the_rest(
    client: TestClient[Any, Any],
) -> None:
    suppressed = table("suppressions")["emails"][0]["email"]
    opted_out, deliverable = _deliverable(2)
    await post(client, "/customers/unsubscribe", {"subscribers": [{"email": opted_out}]})
    before = (await get(client, "/outbox/queue"))["data"]
    recipients = [
        suppressed,
        opted_out,
        "someone@mailinator.com",
        "staff@yourco.com",
        "fresh.face@example.org",
        deliverable,
    ]
    body = await post(
        client,
        "/survey",
        {
            "campaign": _transactional()["id"],
            "delay": 2,
            "subscribers": [{"email": e} for e in recipients],
        },
    )
    assert body == {
        "code": 200,
        "message": "Success.",
        "status": "queued",
        "success": True,
        "dropped": recipients[:4],
    }
    queued = (await get(client, "/outbox", limit=1000))["data"]["surveys"]
    known = {r["surveyId"] for r in OUTBOX}
    scheduled = [r for r in queued if r["surveyId"] not in known]
    assert sorted(r["email"] for r in scheduled) == sorted(recipients[4:])
    assert {(r["status"], r["sentDate"]) for r in scheduled} == {
        ("SCHEDULED", "2026-11-22T12:00:00.000Z")
    }
    after = (await get(client, "/outbox/queue"))["data"]
    assert after["scheduled"] == before["scheduled"] + 2 and after["depth"] == before["depth"] + 2
    assert (await get(client, "/customers", email="fresh.face@example.org"))["data"]["total"] == 1


async def test_deprecated_survey_path_ignores_delay(client: TestClient[Any, Any]) -> None:
    email = _deliverable(3)[2]
    await post(
        client,
        "/nps/customers/survey",
        {"campaign": _transactional()["id"], "delay": 5, "subscribers": [{"email": email}]},
    )
    rows = (await get(client, "/outbox", email=email, limit=1000))["data"]["surveys"]
    assert [r["sentDate"] for r in rows if r["status"] == "SCHEDULED"] == [
        "2026-11-20T12:00:00.000Z"
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"campaign": CAMPAIGNS[0]["id"], "subscribers": [{"email": "a@example.net"}]},
        {
            "campaign": next(
                c["id"] for c in CAMPAIGNS if c["type"] == "transactional" and not c["isActive"]
            ),
            "subscribers": [{"email": "a@example.net"}],
        },
        {"campaign": _transactional()["id"], "subscribers": []},
        {
            "campaign": _transactional()["id"],
            "subscribers": [{"email": f"p{i}@example.net"} for i in range(101)],
        },
        {"campaign": _transactional()["id"], "subscribers": [{"email": "not-an-email"}]},
        {"campaign": "nope", "subscribers": [{"email": "a@example.net"}]},
    ],
    ids=["recurring", "inactive", "no-subscribers", "101-subscribers", "bad-email", "bad-id"],
)
async def test_survey_refuses_bad_campaigns_and_subscriber_lists(
    client: TestClient[Any, Any], body: dict[str, Any]
) -> None:
    response = await client.post(f"{V2}/survey", headers=key(), json=body)
    assert (response.status, await response.json()) == (400, BAD_REQUEST)


async def test_suppressions_can_be_added_and_removed(client: TestClient[Any, Any]) -> None:
    added = (
        await post(client, "/suppressions/emails", {"email": "bob@example.net", "note": "Legal"})
    )["data"]
    domain = (await post(client, "/suppressions/domains", {"pattern": "*.example.net"}))["data"]
    assert (added["email"], domain["category"]) == ("bob@example.net", "other")
    assert added in (await get(client, "/suppressions/emails"))["data"]
    removed = await client.delete(f"{V2}/suppressions/emails/{added['id']}", headers=key())
    assert await removed.json() == {"message": "Success.", "code": 200, "data": None}
    assert added not in (await get(client, "/suppressions/emails"))["data"]
    again = await client.delete(f"{V2}/suppressions/emails/{added['id']}", headers=key())
    assert again.status == 404


async def test_writes_stay_inside_their_app_instance(aiohttp_client: AiohttpClient) -> None:
    first = await aiohttp_client(create_sandbox_app(rebase_dates=False))
    second = await aiohttp_client(create_sandbox_app(rebase_dates=False))
    row = FEEDBACK[0]
    await post(first, "/response/tags", {"id": row["id"], "tags": ["leak-check"]})
    assert (await get(first, f"/feedback/{row['id']}"))["data"]["responses"][0]["feedbackTags"] == [
        "leak-check"
    ]
    assert (await get(second, f"/feedback/{row['id']}"))["data"]["responses"][0][
        "feedbackTags"
    ] == row["feedbackTags"]


# --- extension endpoints (§17.3) ------------------------------------------------------------------


async def test_statuses_include_the_custom_workflow_status(client: TestClient[Any, Any]) -> None:
    statuses = (await get(client, "/feedback/statuses"))["data"]["statuses"]
    assert [s["id"] for s in statuses] == ["open", "in_progress", "waiting_on_customer", "resolved"]
    assert [s["id"] for s in statuses if s["isDefault"]] == ["open"]


async def test_curation_writes_show_up_in_later_feedback_reads(
    client: TestClient[Any, Any],
) -> None:
    row = next(r for r in FEEDBACK if not r["assigned"] and "starred" not in r)
    path = f"/feedback/{row['id']}"
    assert (await post(client, f"{path}/star", {"starred": True}, WRITER))["data"] == {
        "id": row["id"],
        "starred": True,
    }
    assert (await post(client, f"{path}/assign", {"assignee": "Marco@yourco.com"}, WRITER))[
        "data"
    ] == {"id": row["id"], "assigned": "marco@yourco.com"}
    assert (await post(client, f"{path}/resolve", {"resolved": True}, WRITER))["data"] == {
        "id": row["id"],
        "resolved": True,
        "status": "resolved",
    }
    note = (await post(client, f"{path}/notes", {"content": "Called the customer."}, WRITER))[
        "data"
    ]["note"]
    assert note == {
        "author": "marco@yourco.com",
        "content": "Called the customer.",
        "date": "2026-11-20T12:00:00.000Z",
        "metricsType": row["metricsType"],
    }
    listed = (await get(client, "/feedback", limit=1000))["data"]["responses"]
    for read in (
        (await get(client, path))["data"]["responses"][0],
        next(r for r in listed if r["id"] == row["id"]),
    ):
        assert (read["starred"], read["assigned"], read["status"], read["resolved"]) == (
            True,
            "marco@yourco.com",
            "resolved",
            True,
        )
        assert read["notes"][-1] == note


async def test_resolve_reopens_to_the_default_status_and_takes_custom_statuses(
    client: TestClient[Any, Any],
) -> None:
    path = f"/feedback/{FEEDBACK[3]['id']}/resolve"
    custom = (await post(client, path, {"status": "waiting_on_customer"}))["data"]
    reopened = (await post(client, path, {"resolved": False}))["data"]
    assert (custom["status"], custom["resolved"]) == ("waiting_on_customer", False)
    assert (reopened["status"], reopened["resolved"]) == ("open", False)
    unknown = await client.post(V2 + path, headers=key(), json={"status": "archived"})
    assert unknown.status == 400


async def test_assign_refuses_strangers_and_null_unassigns(client: TestClient[Any, Any]) -> None:
    row = next(r for r in FEEDBACK if r["assigned"])
    path = f"{V2}/feedback/{row['id']}/assign"
    stranger = await client.post(path, headers=key(), json={"assignee": CUSTOMERS[0]["email"]})
    assert (stranger.status, await stranger.json()) == (400, BAD_REQUEST)
    assert (await post(client, f"/feedback/{row['id']}/assign", {"assignee": None}))["data"][
        "assigned"
    ] is None
    assert (await get(client, f"/feedback/{row['id']}"))["data"]["responses"][0]["assigned"] is None


async def test_replies_are_queued_and_join_the_thread(client: TestClient[Any, Any]) -> None:
    row = FEEDBACK[4]
    sent = (
        await post(
            client,
            f"/feedback/{row['id']}/replies",
            {"subject": "Re: your feedback", "body": "Thanks, we are on it."},
        )
    )["data"]["reply"]
    assert {k: sent[k] for k in ("direction", "from", "to", "status")} == {
        "direction": "outbound",
        "from": "anna@yourco.com",
        "to": row["email"],
        "status": "queued",
    }
    assert re.fullmatch(r"[0-9a-f]{24}", sent["id"])
    thread = (await get(client, f"/feedback/{row['id']}/replies"))["data"]
    assert thread["feedbackId"] == row["id"]
    assert thread["replies"][-1] == {k: v for k, v in sent.items() if k != "status"}


async def test_filter_vocabulary_saved_and_per_user_recent_filters(
    client: TestClient[Any, Any],
) -> None:
    fields = (await get(client, "/filters/fields"))["data"]
    assert fields["match"] == ["all", "any"]
    assert fields["fields"][-1]["ops"] == ["eq", "ne", "contains", "gt", "gte", "lt", "lte"]
    saved = (await get(client, "/filters/saved"))["data"]["filters"]
    assert saved[0]["name"] == "Detractors – EU" and saved[0]["createdBy"] == "anna@yourco.com"
    mine = (await get(client, "/filters/recent"))["data"]["filters"]
    theirs = (await get(client, "/filters/recent", WRITER))["data"]["filters"]
    assert len(mine) == 2 and len(theirs) == 1 and mine[0]["id"] != theirs[0]["id"]


async def test_digest_list_omits_the_detail_fields_the_detail_adds(
    client: TestClient[Any, Any],
) -> None:
    data = (await get(client, "/digests", limit=3))["data"]
    assert (data["page"], data["limit"], data["total"], len(data["digests"])) == (1, 3, 8, 3)
    assert "sort" not in data
    first = data["digests"][0]
    assert not {"deltas", "themes", "aiSummary"} & set(first)
    detail = (await get(client, f"/digests/{first['id']}"))["data"]
    assert {k: detail[k] for k in first} == first and detail["aiSummary"].startswith("NPS")


async def test_queue_status_counts_scheduled_and_throttled_surveys(
    client: TestClient[Any, Any],
) -> None:
    data = (await get(client, "/outbox/queue"))["data"]
    scheduled = sum(1 for r in OUTBOX if r["status"] == "SCHEDULED")
    assert (data["scheduled"], data["throttled"], data["depth"]) == (scheduled, 4, scheduled + 4)
    assert sum(c["queued"] for c in data["byCampaign"]) == data["depth"]


async def test_integrations_hide_credentials_and_status_shows_errors(
    client: TestClient[Any, Any],
) -> None:
    listed = (await get(client, "/integrations"))["data"]["integrations"]
    assert all(set(i) == {"id", "name", "isConnected", "health", "lastSyncDate"} for i in listed)
    status = (await get(client, "/integrations/salesforce/status"))["data"]
    assert (status["health"], status["lastError"]) == ("error", "Token expired")


async def test_team_members_and_plan_usage(client: TestClient[Any, Any]) -> None:
    users = (await get(client, "/users"))["data"]["users"]
    anna = next(u for u in users if u["email"] == "anna@yourco.com")
    assert (await get(client, f"/users/{anna['id']}"))["data"] == anna
    usage = (await get(client, "/account/usage"))["data"]
    contacts = next(u for u in usage["usage"] if u["dimension"] == "contacts")
    assert (usage["plan"], contacts["used"]) == ("Business", len(CUSTOMERS))


async def test_ping_answers_with_an_empty_envelope(client: TestClient[Any, Any]) -> None:
    assert await get(client, "/ping") == {"message": "Success.", "code": 200, "data": None}


async def test_unsupported_methods_answer_in_the_envelope(client: TestClient[Any, Any]) -> None:
    response = await client.put(f"{V2}/feedback", headers=key())
    assert response.status == 405
    assert await response.json() == {"message": "Method not allowed.", "code": 405, "data": None}


# --- introspection and metadata (§17.5) -----------------------------------------------------------


async def test_introspection_describes_an_active_token(client: TestClient[Any, Any]) -> None:
    response = await client.post(
        "/api/oauth/introspect",
        data={"token": WRITER, "resource": "http://127.0.0.1:9/retently/mcp"},
    )
    body = await response.json()
    assert body["active"] is True and body["account_id"] == "acc_demo"
    assert "surveys:send" in body["scope"].split() and "pii:read" not in body["scope"].split()
    assert body["sub"].startswith("user_") and body["exp"] == 4070908800
    assert body["token_type"] == "Bearer" and "http://127.0.0.1:9/retently/mcp" in body["aud"]


@pytest.mark.parametrize(
    "token", [EXPIRED, REVOKED, "rtly_mcp_pat_nobody_s3cr3t", "refiner_key_production"]
)
async def test_introspection_reports_unknown_expired_and_revoked_tokens_inactive(
    client: TestClient[Any, Any], token: str
) -> None:
    response = await client.post("/api/oauth/introspect", data={"token": token})
    assert (response.status, await response.json()) == (200, {"active": False})


async def test_introspection_without_a_token_is_an_invalid_request(
    client: TestClient[Any, Any],
) -> None:
    response = await client.post("/api/oauth/introspect", data={})
    assert response.status == 400 and (await response.json())["error"] == "invalid_request"


async def test_authorization_server_metadata_uses_the_public_url(
    aiohttp_client: AiohttpClient,
) -> None:
    client = await aiohttp_client(
        create_sandbox_app(rebase_dates=False, public_url="http://127.0.0.1:8081/")
    )
    body = await (await client.get("/.well-known/oauth-authorization-server")).json()
    assert body["issuer"] == "http://127.0.0.1:8081"
    assert body["introspection_endpoint"] == "http://127.0.0.1:8081/api/oauth/introspect"
    assert body["code_challenge_methods_supported"] == ["S256"]
    assert {"feedback:read", "pii:write", "mcp:reporting-read"} <= set(body["scopes_supported"])


CALLBACK = "http://127.0.0.1:9/callback"
VERIFIER = "sandbox-test-verifier-0123456789-abcdefghijklmnopqrstuvwxyz"


def challenge_of(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


async def authorization_code(client: TestClient[Any, Any], **extra: str) -> tuple[str, URL]:
    """Register a client and run `/authorize`; returns the client id and the redirect."""
    registered = await client.post(
        "/api/oauth/register", json={"redirect_uris": [CALLBACK], "client_name": "tests"}
    )
    assert registered.status == 201
    client_id = (await registered.json())["client_id"]
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": CALLBACK,
        "code_challenge": challenge_of(VERIFIER),
        "code_challenge_method": "S256",
        "state": "xyz",
        **extra,
    }
    response = await client.get("/api/oauth/authorize", params=params, allow_redirects=False)
    assert response.status == 302
    return client_id, URL(response.headers["Location"])


async def exchange(client: TestClient[Any, Any], **form: str) -> Any:
    response = await client.post("/api/oauth/token", data=form)
    return response.status, await response.json()


async def test_the_pkce_code_flow_issues_tokens_the_api_and_introspection_accept(
    client: TestClient[Any, Any],
) -> None:
    resource = "http://127.0.0.1:9/retently/mcp"
    client_id, back = await authorization_code(
        client, scope="feedback:read reports:read", resource=resource
    )
    assert (back.host, back.path, back.query["state"]) == ("127.0.0.1", "/callback", "xyz")
    code = back.query["code"]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": client_id,
        "redirect_uri": CALLBACK,
        "code_verifier": VERIFIER,
    }
    status, issued = await exchange(client, **form)
    assert (status, issued["token_type"], issued["expires_in"]) == (200, "Bearer", 21600)
    assert issued["scope"] == "feedback:read reports:read"
    feedback = await get(client, "/feedback", issued["access_token"])
    assert feedback["data"]["total"] == len(FEEDBACK)
    claims = await (
        await client.post("/api/oauth/introspect", data={"token": issued["access_token"]})
    ).json()
    assert (claims["active"], claims["scope"], claims["client_id"]) == (
        True,
        "feedback:read reports:read",
        client_id,
    )
    assert claims["aud"] == [resource] and claims["account_id"] == "acc_demo"
    assert (await exchange(client, **form))[1]["error"] == "invalid_grant"  # codes are single use
    status, refreshed = await exchange(
        client,
        grant_type="refresh_token",
        client_id=client_id,
        refresh_token=issued["refresh_token"],
    )
    assert status == 200 and refreshed["access_token"] != issued["access_token"]
    assert (await get(client, "/ping", refreshed["access_token"]))["code"] == 200
    reused = await exchange(
        client,
        grant_type="refresh_token",
        client_id=client_id,
        refresh_token=issued["refresh_token"],
    )
    assert reused == (
        400,
        {"error": "invalid_grant", "error_description": "The refresh token is unknown or used"},
    )


async def test_a_wrong_code_verifier_is_an_invalid_grant(client: TestClient[Any, Any]) -> None:
    client_id, back = await authorization_code(client)
    status, body = await exchange(
        client,
        grant_type="authorization_code",
        code=back.query["code"],
        client_id=client_id,
        redirect_uri=CALLBACK,
        code_verifier="not-the-verifier",
    )
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_login_hint_caps_scope_and_permission_at_the_hinted_token(
    client: TestClient[Any, Any],
) -> None:
    client_id, back = await authorization_code(
        client, scope="feedback:read pii:read", login_hint=ANALYST
    )
    _, issued = await exchange(
        client,
        grant_type="authorization_code",
        code=back.query["code"],
        client_id=client_id,
        redirect_uri=CALLBACK,
        code_verifier=VERIFIER,
    )
    assert issued["scope"] == "feedback:read"
    refused = await client.post(
        f"{V2}/response/tags",
        headers=key(issued["access_token"]),
        json={"id": FEEDBACK[0]["id"], "tags": ["x"]},
    )
    assert (refused.status, await refused.json()) == (403, FORBIDDEN)


async def test_authorize_never_redirects_to_an_unregistered_uri(
    client: TestClient[Any, Any],
) -> None:
    client_id, _ = await authorization_code(client)
    response = await client.get(
        "/api/oauth/authorize",
        params={
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": "http://evil.example/cb",
            "code_challenge": "x",
            "code_challenge_method": "S256",
        },
        allow_redirects=False,
    )
    assert response.status == 400 and (await response.json())["error"] == "invalid_request"
    _, back = await authorization_code(client, code_challenge_method="plain")
    assert (back.query["error"], "code" in back.query) == ("invalid_request", False)
    _, revoked = await authorization_code(client, login_hint=REVOKED)
    assert revoked.query["error"] == "access_denied"


def test_demo_tokens_describe_every_retently_token() -> None:
    assert {ADMIN, ANALYST, WRITER, OTHER, EXPIRED, REVOKED} <= set(DEMO_TOKENS)
    assert all(DEMO_TOKENS[token] for token in (ADMIN, EXPIRED))


# --- dates and rate limits ------------------------------------------------------------------------

RETENTLY_DATE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


async def test_rebasing_moves_every_date_by_whole_days_and_keeps_formats(
    aiohttp_client: AiohttpClient,
) -> None:
    now = ANCHOR + timedelta(days=40, hours=23)
    client = await aiohttp_client(create_sandbox_app(now=lambda: now))
    newest = (await get(client, "/feedback", limit=1))["data"]["responses"][0]
    original = max(FEEDBACK, key=lambda r: r["createdDate"])
    assert newest["id"] == original["id"]
    assert RETENTLY_DATE.fullmatch(newest["createdDate"])
    assert datetime.fromisoformat(newest["createdDate"]) - datetime.fromisoformat(
        original["createdDate"]
    ) == (timedelta(days=40))
    usage = (await get(client, "/account/usage"))["data"]
    assert usage["periodStart"] == "2026-12-11"
    window = await get(
        client, "/feedback", startDate=(now - timedelta(days=30)).isoformat(), limit=1000
    )
    cutoff = ANCHOR - timedelta(days=30) + timedelta(hours=23)
    assert window["data"]["total"] == sum(
        1 for r in FEEDBACK if datetime.fromisoformat(r["createdDate"]) >= cutoff
    )


async def test_rebasing_never_moves_a_row_past_now(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_sandbox_app(now=lambda: ANCHOR + timedelta(hours=20)))
    newest = (await get(client, "/feedback", limit=1))["data"]["responses"][0]
    assert newest["createdDate"] == max(r["createdDate"] for r in FEEDBACK)


async def test_rate_limit_allows_150_a_minute_per_token_then_429(
    aiohttp_client: AiohttpClient,
) -> None:
    clock = Clock(ANCHOR)
    client = await aiohttp_client(
        create_sandbox_app(rebase_dates=False, rate_limits=True, now=clock)
    )
    for _ in range(149):
        assert (await client.get(f"{V2}/ping", headers=key())).status == 200
    last = await client.get(f"{V2}/ping", headers=key())
    assert (
        last.status,
        last.headers["X-RateLimit-Remaining"],
        last.headers["X-RateLimit-Limit"],
    ) == (200, "0", "150")
    clock.advance(15)
    refused = await client.get(f"{V2}/ping", headers=key())
    assert refused.status == 429
    assert await refused.json() == {"message": "Too many requests.", "code": 429, "data": None}
    assert refused.headers["Retry-After"] == "45"
    assert (await client.get(f"{V2}/ping", headers=key(WRITER))).status == 200
    clock.advance(45)
    assert (await client.get(f"{V2}/ping", headers=key())).status == 200


async def test_rate_limits_are_off_unless_asked_for(client: TestClient[Any, Any]) -> None:
    statuses = {(await client.get(f"{V2}/ping", headers=key())).status for _ in range(160)}
    assert statuses == {200}


async def test_a_write_repeated_with_its_idempotency_key_is_answered_once_and_applied_once(
    client: TestClient[Any, Any],
) -> None:
    row = FEEDBACK[0]
    path = f"{V2}/feedback/{row['id']}/notes"
    headers = {**key(WRITER), "Idempotency-Key": "k-1"}
    answers = [await client.post(path, headers=headers, json={"content": "Once."})
               for _ in range(2)]
    other = await client.post(path, headers={**key(WRITER), "Idempotency-Key": "k-2"},
                              json={"content": "Once."})
    notes = (await get(client, f"/feedback/{row['id']}"))["data"]["responses"][0]["notes"]

    assert [a.status for a in answers] == [200, 200]
    assert [await a.json() for a in answers][0] == await answers[1].json()
    assert answers[1].headers.get("Idempotent-Replayed") == "true"
    assert other.headers.get("Idempotent-Replayed") is None
    assert [n["content"] for n in notes].count("Once.") == 2  # k-1 once, k-2 once
