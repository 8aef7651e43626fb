"""Derived tools through the endpoint: bounded paged collection, filters, group-by aggregates with
period-over-period comparison, lookups, computed request values; then the JMESPath extras.

A small spec tree of its own (tmp_path), upstream pages faked at the network edge, a fixed clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import respx
from aiohttp.test_utils import TestClient

from gateway.spec.jmes import compile_expression, search
from gateway.upstream.mock_wire import MockWire
from tests.support import AiohttpClient, auth, gateway_app, rpc, service_tree

URL = "/shop/mcp"
API = "https://api.shop.test"
TOKEN = "shop_token_1"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

SERVICE = """
version: 1
name: shop
title: Shop
endpoint: /shop/mcp
upstream: {base_url: "https://api.shop.test"}
auth:
  resolver: introspection
  introspection_url: https://auth.shop.test/introspect
scopes:
  - {name: "rows:read"}
"""
TOOLS = """
version: 1
tools:
  - name: scan_rows
    kind: read
    description: Rows read page by page.
    scopes: ["rows:read"]
    input:
      limit: {type: integer, minimum: 0}
    collect:
      request: {method: GET, path: /rows, query: {per_page: 5}}
      items: data.rows
      pages: {param: page, start: 1, stop_when: 'data.page >= data.pages', max_pages: 3}
      max_items: 7
      limit: '{limit}'

  - name: one_request
    kind: read
    description: Rows of one request, no paging.
    scopes: ["rows:read"]
    collect:
      request: {method: GET, path: /rows}
      items: data.rows

  - name: filter_rows
    kind: read
    description: Rows kept by every condition whose argument is given.
    scopes: ["rows:read"]
    input:
      status: {type: string}
      not_channel: {type: string}
      text: {type: string}
      tags: {type: array, items: {type: string}}
      min_score: {type: integer}
      max_score: {type: integer}
      above: {type: integer}
      below: {type: integer}
      after: {type: string}
      before: {type: string}
      has_customer: {type: boolean}
    collect:
      request: {method: GET, path: /filter-rows}
      items: rows
    filter:
      - {field: status, op: eq, value: '{status}'}
      - {field: channel, op: ne, value: '{not_channel}'}
      - {field: comment, op: contains, value: '{text}'}
      - {field: tags, op: in, value: '{tags}'}
      - {field: score, op: gte, value: '{min_score}'}
      - {field: score, op: lte, value: '{max_score}'}
      - {field: score, op: gt, value: '{above}'}
      - {field: score, op: lt, value: '{below}'}
      - {field: createdAt, op: gt, value: '{after}'}
      - {field: createdAt, op: lt, value: '{before}'}
      - {field: customer, op: exists, value: '{has_customer}'}

  - name: aggregate_rows
    kind: read
    description: Group rows and summarise each group.
    scopes: ["rows:read"]
    input:
      group_by: {type: string, required: true}
    collect:
      request: {method: GET, path: /agg-rows}
      items: rows
    aggregate:
      by: '{group_by}'
      groups: {channel: channel, tag: 'tags', customer: customer}
      metrics:
        count: count
        average: avg(score)
        total: sum(score)
        lowest: min(score)
        highest: max(score)
        nps: nps(score)
        customers: distinct(customer)
        with_customer: count_if(customer)
        first_comment: first(comment)

  - name: rank_channels
    kind: read
    description: Channels ranked by total score.
    scopes: ["rows:read"]
    collect:
      request: {method: GET, path: /agg-rows}
      items: rows
    aggregate:
      by: channel
      groups: {channel: channel}
      metrics: {count: count, total: sum(score)}
      sort: total

  - name: compare_channels
    kind: read
    description: Each channel over the last `days` against the `days` before.
    scopes: ["rows:read"]
    input:
      days: {type: integer, default: 7}
    collect:
      request: {method: GET, path: /compare-rows}
      items: rows
    aggregate:
      by: channel
      groups: {channel: channel}
      metrics: {count: count, average: avg(score)}
      compare: {field: createdAt, days: '{days}'}

  - name: topic_summary
    kind: read
    description: One row per topic of each feedback, grouped by topic.
    scopes: ["rows:read"]
    collect:
      request: {method: GET, path: /topic-rows}
      items: "explode(rows, 'topics')"
    aggregate:
      by: topic
      groups: {topic: topics.name}
      metrics: {count: count, average: avg(score)}

  - name: group_notes
    kind: read
    description: Notes of a group (the default group unless given), optionally by one member.
    scopes: ["rows:read"]
    input:
      group_id: {type: string}
      member_id: {type: string}
    lookups:
      group_id:
        request: {method: GET, path: /groups/default}
        select: data.id
      member_email:
        request: {method: GET, path: /members, query: {id: '{member_id}'}}
        select: 'data[0].email'
    request:
      method: GET
      path: '/groups/{group_id}/notes'
      query: {author: '{member_email}'}

  - name: recent
    kind: read
    description: Rows of the last `days` days.
    scopes: ["rows:read"]
    input:
      days: {type: integer, minimum: 1}
      hours: {type: integer, minimum: 1}
      start: {type: string, format: date}
    request:
      method: GET
      path: /recent
      query:
        since: '{now-(days)d:date}'
        since_time: '{now-(days)d}'
        until: '{now+(hours)h}'
        window_start: '{start ?? now-(days)d:date}'
        fixed: '{now-30d:date}'

  - name: bulk_lookup
    kind: read
    description: Look up many ids at once.
    scopes: ["rows:read"]
    input:
      ids: {type: array, items: {type: string}, required: true}
      extra: {type: array, items: {type: string}}
    request:
      method: POST
      path: /lookup
      body:
        ids: {$expr: 'unique(union(args.ids, args.extra))'}
        count: {$expr: 'length(args.ids)'}
        first: {$expr: 'upper(args.ids[0])'}
        account: {$expr: 'principal.account'}
        missing: {$expr: 'args.nothing'}
        label: 'ids of {principal.account}'
"""


def row(n: int) -> dict[str, Any]:
    return {"id": f"r{n}"}


@dataclass
class Pages:
    """The paged upstream: rows per page and the page count it claims."""

    rows: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    declared: int = 1
    asked: list[int] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        page = int(request.url.params.get("page", "0"))
        self.asked.append(page)
        return httpx.Response(200, json={"data": {
            "rows": self.rows.get(page, []), "page": page, "pages": self.declared}})


FILTER_ROWS: list[dict[str, Any]] = [
    {"id": "r1", "status": "Open", "channel": "email", "comment": "Plan a.*b pricing",
     "tags": ["vip"], "score": 9, "createdAt": "2026-02-01T10:00:00Z", "customer": "c1"},
    {"id": "r2", "status": "closed", "channel": "web", "comment": "Price (high) again",
     "tags": ["b2b", "vip"], "score": 6, "createdAt": "2026-02-10T10:00:00Z", "customer": "c2"},
    {"id": "r3", "status": "open", "channel": "sms", "comment": "[urgent] call back",
     "tags": [], "score": "7", "createdAt": "2026-02-20T10:00:00Z", "customer": None},
    {"id": "r4", "status": "pending", "channel": "email", "comment": "AXXB nothing special",
     "tags": ["churn"], "score": 10, "createdAt": "2026-02-25T10:00:00Z"},
    {"id": "r5", "status": "open", "channel": "web", "comment": None, "tags": None,
     "score": None, "createdAt": "2026-02-28T10:00:00Z", "customer": "c5"},
]
AGG_ROWS: list[dict[str, Any]] = [
    {"channel": "email", "tags": ["vip", "b2b"], "score": 10, "customer": "c1",
     "comment": None},
    {"channel": "email", "tags": ["vip"], "score": 6, "customer": "c1", "comment": "slow"},
    {"channel": "web", "tags": ["b2b"], "score": 8, "customer": "c2", "comment": "ok"},
    {"channel": "web", "tags": [], "score": "9", "customer": None, "comment": "fine"},
    {"tags": ["vip"], "score": None, "customer": "c3", "comment": "meh"},
]
COMPARE_ROWS: list[dict[str, Any]] = [
    {"channel": "email", "createdAt": "2026-02-28T09:00:00Z", "score": 10},
    {"channel": "email", "createdAt": "2026-02-25", "score": 6},
    {"channel": "email", "createdAt": "2026-02-20T00:00:00+00:00", "score": 9},
    {"channel": "web", "createdAt": "2026-02-16T12:00:00Z", "score": 5},
    {"channel": "web", "createdAt": "2026-01-01T00:00:00Z", "score": 1},
    {"channel": "web", "createdAt": "2026-03-05T00:00:00Z", "score": 1},
    {"channel": "sms", "createdAt": "not a date", "score": 1},
]
TOPIC_ROWS: list[dict[str, Any]] = [
    {"id": "t1", "score": 9, "topics": [{"name": "price"}, {"name": "speed"}]},
    {"id": "t2", "score": 3, "topics": [{"name": "price"}]},
    {"id": "t3", "score": 5, "topics": []},
    {"id": "t4", "score": 5},
]


@dataclass
class Upstream:
    router: respx.MockRouter
    pages: Pages

    def requests(self, path: str) -> list[httpx.Request]:
        return [c.request for c in self.router.calls
                if c.request.url.host == "api.shop.test" and c.request.url.path == path]

    def paths(self) -> list[str]:
        return [c.request.url.path for c in self.router.calls
                if c.request.url.host == "api.shop.test"]


@pytest.fixture
def upstream(router: respx.MockRouter) -> Upstream:
    pages = Pages()
    router.post("https://auth.shop.test/introspect").mock(return_value=httpx.Response(
        200, json={"active": True, "scope": "rows:read", "sub": "u1",
                   "account_id": "acc_shop", "exp": 4_102_444_800}))
    router.get(f"{API}/rows").mock(side_effect=pages)
    for path, rows in (("/filter-rows", FILTER_ROWS), ("/agg-rows", AGG_ROWS),
                       ("/compare-rows", COMPARE_ROWS), ("/topic-rows", TOPIC_ROWS)):
        router.get(API + path).mock(return_value=httpx.Response(200, json={"rows": rows}))
    router.get(f"{API}/groups/default").mock(
        return_value=httpx.Response(200, json={"data": {"id": "g-default"}}))
    router.get(f"{API}/members").mock(
        return_value=httpx.Response(200, json={"data": [{"email": "mia@shop.test"}]}))
    router.get(url__regex=rf"^{API}/groups/[^/]+/notes").mock(
        return_value=httpx.Response(200, json={"notes": []}))
    router.get(f"{API}/recent").mock(return_value=httpx.Response(200, json={}))
    router.post(f"{API}/lookup").mock(return_value=httpx.Response(200, json={}))
    return Upstream(router, pages)


@pytest.fixture
async def gateway(aiohttp_client: AiohttpClient, tmp_path: Path, upstream: Upstream,
                  wire: MockWire) -> TestClient[Any, Any]:
    specs = service_tree(tmp_path, "shop", SERVICE, TOOLS)
    return await aiohttp_client(gateway_app(wire, specs_dir=specs, clock=lambda: NOW))


async def call(client: TestClient[Any, Any], name: str,
               arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    response = await client.post(URL, headers=auth(TOKEN), json=rpc(
        "tools/call", {"name": name, "arguments": arguments or {}}))
    assert response.status == 200
    result: dict[str, Any] = (await response.json())["result"]
    return result


async def structured(client: TestClient[Any, Any], name: str,
                     arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    result = await call(client, name, arguments)
    assert result["isError"] is False, result
    content: dict[str, Any] = result["structuredContent"]
    return content


# --- collect: bounded paging ----------------------------------------------------------------


async def test_paging_stops_when_stop_when_is_true(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    upstream.pages.rows = {1: [row(1), row(2)], 2: [row(3), row(4)], 3: [row(5)]}
    upstream.pages.declared = 2
    found = await structured(gateway, "scan_rows")
    assert upstream.pages.asked == [1, 2]
    assert [r["id"] for r in found["items"]] == ["r1", "r2", "r3", "r4"]
    assert (found["pages_read"], found["items_scanned"], found["complete"]) == (2, 4, True)
    assert "note" not in found
    assert all(r.url.params["per_page"] == "5" for r in upstream.requests("/rows"))


async def test_paging_stops_at_an_empty_page(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    upstream.pages.rows = {1: [row(1), row(2)], 3: [row(3)]}
    upstream.pages.declared = 9
    found = await structured(gateway, "scan_rows")
    assert upstream.pages.asked == [1, 2]
    assert (found["pages_read"], found["items_matched"], found["complete"]) == (2, 2, True)


async def test_paging_stops_at_max_pages_and_says_the_answer_is_incomplete(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    upstream.pages.rows = {p: [row(2 * p), row(2 * p + 1)] for p in range(1, 10)}
    upstream.pages.declared = 9
    found = await structured(gateway, "scan_rows")
    assert upstream.pages.asked == [1, 2, 3]
    assert (found["pages_read"], found["items_scanned"], found["complete"]) == (3, 6, False)
    assert "3 page(s)" in found["note"]


async def test_paging_stops_at_max_items(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    upstream.pages.rows = {p: [row(10 * p + i) for i in range(5)] for p in range(1, 10)}
    upstream.pages.declared = 9
    found = await structured(gateway, "scan_rows")
    assert upstream.pages.asked == [1, 2]
    assert found["items_scanned"] == 7 and len(found["items"]) == 7
    assert found["items"][-1] == {"id": "r21"}
    assert found["complete"] is False


@pytest.mark.parametrize(("limit", "shown"), [(2, 2), (0, 0), (10, 4)])
async def test_limit_cuts_the_items_returned_but_items_matched_counts_them_all(
        gateway: TestClient[Any, Any], upstream: Upstream, limit: int, shown: int) -> None:
    upstream.pages.rows = {1: [row(1), row(2), row(3), row(4)]}
    found = await structured(gateway, "scan_rows", {"limit": limit})
    assert len(found["items"]) == shown
    assert found["items_matched"] == 4


async def test_a_collect_without_pages_makes_one_request_without_a_page_parameter(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    upstream.pages.rows = {0: [row(1)]}
    upstream.pages.declared = 9
    found = await structured(gateway, "one_request")
    [sent] = upstream.requests("/rows")
    assert "page" not in sent.url.params
    assert (found["pages_read"], found["complete"], found["items"]) == (1, True, [row(1)])


# --- filter -------------------------------------------------------------------------------


@pytest.mark.parametrize(("arguments", "kept"), [
    ({}, ["r1", "r2", "r3", "r4", "r5"]),
    ({"status": "OPEN"}, ["r1", "r3", "r5"]),
    ({"not_channel": "email"}, ["r2", "r3", "r5"]),
    ({"text": "call"}, ["r3"]),
    ({"tags": ["vip"]}, ["r1", "r2"]),
    ({"tags": ["churn", "b2b"]}, ["r2", "r4"]),
    ({"min_score": 9}, ["r1", "r4"]),
    ({"max_score": 7}, ["r2", "r3"]),
    ({"above": 9}, ["r4"]),
    ({"below": 7}, ["r2"]),
    ({"after": "2026-02-15"}, ["r3", "r4", "r5"]),
    ({"before": "2026-02-10"}, ["r1"]),
    ({"has_customer": True}, ["r1", "r2", "r5"]),
    ({"has_customer": False}, ["r3", "r4"]),
    ({"status": "open", "min_score": 7}, ["r1", "r3"]),
], ids=["no arguments", "eq ignores case", "ne", "contains", "in", "in any of",
        "gte", "lte (a numeric string is a number)", "gt", "lt", "gt on dates", "lt on dates",
        "exists", "not exists", "conditions combine"])
async def test_filter_keeps_the_items_matching_every_given_condition(
        gateway: TestClient[Any, Any], arguments: dict[str, Any], kept: list[str]) -> None:
    found = await structured(gateway, "filter_rows", arguments)
    assert [r["id"] for r in found["items"]] == kept
    assert found["items_matched"] == len(kept)
    assert found["items_scanned"] == 5


@pytest.mark.parametrize(("text", "kept"), [
    (".*", ["r1"]),
    ("a.*b", ["r1"]),
    ("(", ["r2"]),
    ("(high)", ["r2"]),
    ("[", ["r3"]),
    ("[urgent]", ["r3"]),
    ("PRICE (HIGH)", ["r2"]),
    ("axxb", ["r4"]),
    ("^Plan", []),
    ("\\", []),
])
async def test_contains_is_literal_and_ignores_case(
        gateway: TestClient[Any, Any], text: str, kept: list[str]) -> None:
    found = await structured(gateway, "filter_rows", {"text": text})
    assert [r["id"] for r in found["items"]] == kept


# --- aggregate ----------------------------------------------------------------------------


async def test_aggregate_computes_every_metric_per_group(gateway: TestClient[Any, Any]) -> None:
    summary = await structured(gateway, "aggregate_rows", {"group_by": "channel"})
    assert summary["group_by"] == "channel"
    assert summary["groups"] == [
        {"key": "email", "count": 2, "average": 8.0, "total": 16, "lowest": 6, "highest": 10,
         "nps": 0.0, "customers": 1, "with_customer": 2, "first_comment": "slow"},
        {"key": "web", "count": 2, "average": 8.5, "total": 17, "lowest": 8, "highest": 9,
         "nps": 50.0, "customers": 1, "with_customer": 1, "first_comment": "ok"},
        {"key": "(none)", "count": 1, "average": None, "total": None, "lowest": None,
         "highest": None, "nps": None, "customers": 1, "with_customer": 1,
         "first_comment": "meh"},
    ]
    assert summary["items_matched"] == 5 and summary["complete"] is True


async def test_a_list_key_puts_an_item_in_each_of_its_groups(
        gateway: TestClient[Any, Any]) -> None:
    summary = await structured(gateway, "aggregate_rows", {"group_by": "tag"})
    counts = {g["key"]: g["count"] for g in summary["groups"]}
    assert counts == {"vip": 3, "b2b": 2}  # the row with no tags is in no group
    assert [g["key"] for g in summary["groups"]] == ["vip", "b2b"]


async def test_groups_are_sorted_by_the_sort_metric_descending(
        gateway: TestClient[Any, Any]) -> None:
    summary = await structured(gateway, "rank_channels")
    assert [(g["key"], g["total"]) for g in summary["groups"]] == [
        ("web", 17), ("email", 16), ("(none)", None)]


async def test_ties_in_the_sort_metric_are_ordered_by_key(
        gateway: TestClient[Any, Any]) -> None:
    summary = await structured(gateway, "aggregate_rows", {"group_by": "customer"})
    assert [(g["key"], g["count"]) for g in summary["groups"]] == [
        ("c1", 2), ("(none)", 1), ("c2", 1), ("c3", 1)]


async def test_grouping_by_an_undeclared_group_is_a_tool_error_naming_the_groups(
        gateway: TestClient[Any, Any]) -> None:
    result = await call(gateway, "aggregate_rows", {"group_by": "colour"})
    assert result["isError"] is True
    assert "channel, tag, customer" in result["content"][0]["text"]


async def test_explode_gives_one_row_per_list_element(gateway: TestClient[Any, Any]) -> None:
    summary = await structured(gateway, "topic_summary")
    assert summary["groups"] == [{"key": "price", "count": 2, "average": 6.0},
                                 {"key": "speed", "count": 1, "average": 9.0}]
    assert summary["items_scanned"] == 3


async def test_compare_splits_items_into_this_period_and_the_one_before(
        gateway: TestClient[Any, Any]) -> None:
    summary = await structured(gateway, "compare_channels")
    assert summary["period"] == {"from": "2026-02-22T12:00:00+00:00",
                                 "to": "2026-03-01T12:00:00+00:00"}
    assert summary["previous_period"] == {"from": "2026-02-15T12:00:00+00:00",
                                          "to": "2026-02-22T12:00:00+00:00"}
    assert summary["groups"] == [
        {"key": "email", "count": 2, "average": 8.0, "previous_count": 1,
         "previous_average": 9.0, "change_count": 1, "change_average": -1.0},
        {"key": "web", "count": 0, "average": None, "previous_count": 1,
         "previous_average": 5.0, "change_count": -1},
    ]


async def test_compare_follows_the_days_argument(gateway: TestClient[Any, Any]) -> None:
    summary = await structured(gateway, "compare_channels", {"days": 3})
    assert summary["period"]["from"] == "2026-02-26T12:00:00+00:00"
    assert summary["groups"][0] == {
        "key": "email", "count": 1, "average": 10.0, "previous_count": 1,
        "previous_average": 6.0, "change_count": 0, "change_average": 4.0}


@pytest.mark.parametrize("days", [0, -7])
async def test_compare_needs_a_positive_number_of_days(
        gateway: TestClient[Any, Any], days: int) -> None:
    result = await call(gateway, "compare_channels", {"days": days})
    assert result["isError"] is True
    assert "whole number of days" in result["content"][0]["text"]


# --- lookups --------------------------------------------------------------------------------


async def test_a_lookup_fills_a_value_the_call_did_not_give(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    await structured(gateway, "group_notes")
    assert upstream.paths() == ["/groups/default", "/groups/g-default/notes"]
    assert "author" not in upstream.requests("/groups/g-default/notes")[0].url.params


async def test_a_lookup_is_skipped_when_the_value_is_given(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    await structured(gateway, "group_notes", {"group_id": "g7"})
    assert upstream.paths() == ["/groups/g7/notes"]


async def test_a_lookup_runs_when_the_arguments_its_request_names_are_given(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    await structured(gateway, "group_notes", {"group_id": "g7", "member_id": "m1"})
    [member] = upstream.requests("/members")
    [notes] = upstream.requests("/groups/g7/notes")
    assert member.url.params["id"] == "m1"
    assert notes.url.params["author"] == "mia@shop.test"
    assert upstream.paths() == ["/members", "/groups/g7/notes"]


# --- templates: offsets counted by an argument, fallbacks, computed bodies ---------------


async def test_now_minus_an_argument_of_days(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    await structured(gateway, "recent", {"days": 7, "hours": 2})
    params = upstream.requests("/recent")[0].url.params
    assert params["since"] == "2026-02-22"
    assert params["since_time"] == "2026-02-22T12:00:00Z"
    assert params["until"] == "2026-03-01T14:00:00Z"
    assert params["window_start"] == "2026-02-22"
    assert params["fixed"] == "2026-01-30"


async def test_now_minus_an_absent_argument_is_absent(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    await structured(gateway, "recent", {"start": "2026-01-05"})
    params = upstream.requests("/recent")[0].url.params
    assert set(params) == {"window_start", "fixed"}
    assert params["window_start"] == "2026-01-05"


async def test_expr_computes_body_values_from_arguments_and_principal(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    await structured(gateway, "bulk_lookup", {"ids": ["a", "b", "a"], "extra": ["c", "b"]})
    body = orjson.loads(upstream.requests("/lookup")[0].content)
    assert body == {"ids": ["a", "b", "c"], "count": 3, "first": "A", "account": "acc_shop",
                    "missing": None, "label": "ids of acc_shop"}


async def test_expr_over_an_absent_argument_sees_null(
        gateway: TestClient[Any, Any], upstream: Upstream) -> None:
    await structured(gateway, "bulk_lookup", {"ids": ["b", "a"]})
    body = orjson.loads(upstream.requests("/lookup")[0].content)
    assert body["ids"] == ["b", "a"]


# --- the JMESPath extras (pure) -------------------------------------------------------------


@pytest.mark.parametrize(("expression", "data", "expected"), [
    ("lower(@)", "MiXed", "mixed"),
    ("upper(@)", "MiXed", "MIXED"),
    ("lower(@)", None, None),
    ("month(@)", "2026-02-17T10:00:00Z", "2026-02"),
    ("month(@)", "17/02/2026", None),
    ("day(@)", "2026-02-17T10:00:00Z", "2026-02-17"),
    ("day(@)", "2026-02", None),
    ("union(a, b)", {"a": [1, 2, 2], "b": [3, 1]}, [1, 2, 3]),
    ("union(a, b)", {"a": None, "b": [3]}, [3]),
    ("difference(a, b)", {"a": [1, 2, 3, 2], "b": [2]}, [1, 3]),
    ("difference(a, b)", {"a": [1], "b": None}, [1]),
    ("unique(@)", ["x", "y", "x"], ["x", "y"]),
    ("explode(@, 'tags')", [{"id": 1, "tags": ["a", "b"]}, {"id": 2, "tags": []}, {"id": 3}],
     [{"id": 1, "tags": "a"}, {"id": 1, "tags": "b"}]),
    ("explode(@, 'tags')", None, []),
])
def test_gateway_jmespath_functions(expression: str, data: Any, expected: Any) -> None:
    assert search(compile_expression(expression), data) == expected


@pytest.mark.parametrize("expression", ["nonesuch(@)", "union(@)", "lower(a, b)"])
def test_unknown_functions_and_wrong_arity_are_refused_when_compiled(expression: str) -> None:
    with pytest.raises(ValueError, match=r"unknown JMESPath function|argument"):
        compile_expression(expression)
