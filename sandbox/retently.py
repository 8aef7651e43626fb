"""Retently REST API v2 reads (§8) and the route table of every Retently path.

Serves customers, companies, feedback, scores, reports, trends, campaigns, templates and
outbox from the account of the calling token; writes live in `retently_writes`,
the §17.3 extensions in `retently_ext`, OAuth documents in `oauth`.
"""

from __future__ import annotations

from aiohttp import web

from sandbox import oauth, retently_ext, retently_writes
from sandbox.errors import retently_error
from sandbox.http import reply
from sandbox.retently_auth import RetentlyCall, endpoint, envelope
from sandbox.retently_query import (
    OBJECT_ID,
    attribute_conditions,
    date_window,
    first,
    in_window,
    matches_attributes,
    optional_object_id,
    page_of,
    paging,
    require_object_id,
    sort_rows,
)
from sandbox.retently_reports import (
    TREND_PERIODS,
    campaign_report,
    period_window,
    trend_group,
)
from sandbox.scoring import summary
from sandbox.store import RetentlyAccount, Row

PREFIX = "/api/v2"
LEGACY_HEADER = "X-Sandbox-Legacy-Shapes"
"""Send `1` to get the legacy shapes of §5.2: `data.subscribers[0]` and the `nps` score key."""

FEEDBACK_SORT = {
    key: key
    for key in (
        "createdDate",
        "score",
        "email",
        "firstName",
        "lastName",
        "companyName",
        "campaignName",
        "status",
        "metricsType",
        "channel",
    )
}
CUSTOMER_SORT = {
    key: key
    for key in ("createdDate", "updatedDate", "email", "firstName", "lastName", "companyName")
}
COMPANY_SORT = {
    key: key for key in ("createdDate", "companyName", "domain", "industryName", "contactsCount")
}
OUTBOX_SORT = {
    "surveyCreatedDate": "sentDate",
    "sentDate": "sentDate",
    "email": "email",
    "status": "status",
    "campaign": "campaign",
}


def _legacy(request: web.Request) -> bool:
    return request.headers.get(LEGACY_HEADER) == "1"


def _email_matches(row: Row, email: str | None) -> bool:
    return email is None or str(row.get("email", "")).lower() == email.lower()


async def ping(request: web.Request, call: RetentlyCall) -> web.Response:
    return reply(envelope(None))


# --- customers -------------------------------------------------------------------------


async def list_customers(request: web.Request, call: RetentlyCall) -> web.Response:
    page = paging(call.params, default_sort="-createdDate", sortable=CUSTOMER_SORT)
    start, end = date_window(call.params)
    conditions, match = attribute_conditions(call.params)
    email = first(call.params, "email")
    rows = [
        row
        for row in call.account.customers
        if _email_matches(row, email)
        and in_window(row.get("createdDate"), start, end)
        and matches_attributes(row.get("properties", []), conditions, match)
    ]
    rows = sort_rows(rows, page.field, descending=page.descending)
    return reply(envelope(page_of(rows, page, "subscribers")))


def find_customer(account: RetentlyAccount, customer_id: str) -> Row:
    """Raises: UpstreamError 400 for a malformed id, 404 for an unknown one."""
    require_object_id(customer_id)
    for row in account.customers:
        if row["id"] == customer_id:
            return row
    raise retently_error(404)


async def get_customer(request: web.Request, call: RetentlyCall) -> web.Response:
    customer = find_customer(call.account, request.match_info["id"])
    data: object = {"subscribers": [customer]} if _legacy(request) else customer
    return reply(envelope(data))


# --- companies -------------------------------------------------------------------------


def _require_b2b(account: RetentlyAccount) -> None:
    if not account.b2b:
        raise retently_error(403, "Companies require the B2B Account-CX feature.")


async def list_companies(request: web.Request, call: RetentlyCall) -> web.Response:
    _require_b2b(call.account)
    page = paging(call.params, default_sort="-createdDate", sortable=COMPANY_SORT)
    rows = sort_rows(call.account.companies, page.field, descending=page.descending)
    return reply(envelope(page_of(rows, page, "companies")))


async def get_company(request: web.Request, call: RetentlyCall) -> web.Response:
    _require_b2b(call.account)
    key = request.match_info["key"].lower()
    field = "id" if OBJECT_ID.fullmatch(key) else "domain"
    for row in call.account.companies:
        if str(row.get(field, "")).lower() == key:
            return reply(envelope(row))
    raise retently_error(404)


# --- feedback --------------------------------------------------------------------------


async def list_feedback(request: web.Request, call: RetentlyCall) -> web.Response:
    page = paging(call.params, default_sort="-createdDate", sortable=FEEDBACK_SORT)
    start, end = date_window(call.params)
    conditions, match = attribute_conditions(call.params)
    email = first(call.params, "email")
    customer_id = optional_object_id(call.params, "customerId")
    campaign_id = optional_object_id(call.params, "campaignId")
    rows = [
        row
        for row in call.account.feedback
        if _email_matches(row, email)
        and customer_id in (None, row.get("customerId"))
        and campaign_id in (None, row.get("campaignId"))
        and in_window(row.get("createdDate"), start, end)
        and matches_attributes(row.get("customProps", []), conditions, match)
    ]
    rows = sort_rows(rows, page.field, descending=page.descending)
    return reply(envelope(page_of(rows, page, "responses")))


async def get_feedback(request: web.Request, call: RetentlyCall) -> web.Response:
    """A feedback id gives a one-item list; a campaign id gives that campaign's feedback."""
    key = require_object_id(request.match_info["id"])
    page = paging(call.params, default_sort="-createdDate", sortable=FEEDBACK_SORT)
    rows = [row for row in call.account.feedback if row["id"] == key]
    if not rows:
        if not any(campaign["id"] == key for campaign in call.account.campaigns):
            raise retently_error(404)
        rows = [row for row in call.account.feedback if row["campaignId"] == key]
        rows = sort_rows(rows, page.field, descending=page.descending)
    return reply(envelope(page_of(rows, page, "responses")))


# --- scores, reports, trends -----------------------------------------------------------


async def get_score(request: web.Request, call: RetentlyCall) -> web.Response:
    metric = request.match_info["metric"].upper()
    if metric not in ("NPS", "CSAT", "CES", "STAR"):
        raise retently_error(404)
    # Not a documented parameter; lets a caller cross-check the gateway's windowed scores.
    start, end = date_window(call.params)
    scores = [
        row["score"]
        for row in call.account.feedback
        if row["metricsType"] == metric and in_window(row["createdDate"], start, end)
    ]
    data = summary(metric, scores)
    if _legacy(request):
        data = {("nps" if key == "score" else key): value for key, value in data.items()}
    return reply(envelope(data))


async def get_reports(request: web.Request, call: RetentlyCall) -> web.Response:
    campaign_id = request.match_info.get("id")
    campaigns = call.account.campaigns
    if campaign_id:
        require_object_id(campaign_id)
        campaigns = [row for row in campaigns if row["id"] == campaign_id]
        if not campaigns:
            raise retently_error(404)
    start, end = date_window(call.params)
    templates = {row["id"]: row for row in call.account.templates}
    reports = []
    for campaign in campaigns:
        feedback = [
            row
            for row in call.account.feedback
            if row["campaignId"] == campaign["id"] and in_window(row["createdDate"], start, end)
        ]
        outbox = [
            row
            for row in call.account.outbox
            if row["campaignId"] == campaign["id"] and in_window(row["sentDate"], start, end)
        ]
        template = templates.get(campaign["templateId"])
        reports.append(campaign_report(campaign, template, feedback, outbox))
    return reply(envelope(reports))


async def list_trends(request: web.Request, call: RetentlyCall) -> web.Response:
    groups = [
        {key: group[key] for key in ("id", "name", "isDefault", "metric")}
        for group in call.account.trends
    ]
    return reply(envelope(groups))


async def get_trend_group(request: web.Request, call: RetentlyCall) -> web.Response:
    group_id = require_object_id(request.match_info["id"])
    group = next((row for row in call.account.trends if row["id"] == group_id), None)
    if group is None:
        raise retently_error(404)
    period = first(call.params, "date") or "past-month"
    if period not in TREND_PERIODS:
        raise retently_error(400)
    start, end = date_window(call.params)
    window = period_window(period, call.sandbox.now(), start, end)
    data = trend_group(group, call.account.feedback, *window)
    data["date"] = period
    return reply(envelope(data))


# --- campaigns, templates, outbox ------------------------------------------------------


async def list_campaigns(request: web.Request, call: RetentlyCall) -> web.Response:
    return reply({"message": "Success.", "code": 200, "campaigns": call.account.campaigns})


async def list_templates(request: web.Request, call: RetentlyCall) -> web.Response:
    listed = [
        {key: value for key, value in row.items() if key != "surveyQuestions"}
        for row in call.account.templates
    ]
    return reply({"message": "Success.", "code": 200, "templates": listed})


async def get_template(request: web.Request, call: RetentlyCall) -> web.Response:
    template_id = require_object_id(request.match_info["id"])
    for row in call.account.templates:
        if row["id"] == template_id:
            return reply(envelope(row))
    raise retently_error(404)


async def list_outbox(request: web.Request, call: RetentlyCall) -> web.Response:
    page = paging(call.params, default_sort="-surveyCreatedDate", sortable=OUTBOX_SORT)
    start, end = date_window(call.params)
    conditions, match = attribute_conditions(call.params)
    email = first(call.params, "email")
    campaign_id = optional_object_id(call.params, "campaignId")
    channel = first(call.params, "channel")
    sent_by = first(call.params, "sentBy")
    rows = [
        row
        for row in call.account.outbox
        if _email_matches(row, email)
        and campaign_id in (None, row.get("campaignId"))
        and channel in (None, row.get("channel"))
        and sent_by in (None, row.get("sentBy"))
        and in_window(row.get("sentDate"), start, end)
        and matches_attributes(row["attributes"].get("customProps", []), conditions, match)
    ]
    rows = sort_rows(rows, page.field, descending=page.descending, tie="surveyId")
    return reply(envelope(page_of(rows, page, "surveys")))


# --- routes ----------------------------------------------------------------------------


def routes() -> list[web.RouteDef]:
    """Every Retently path. Literal paths come before `{id}` siblings (§17.3)."""
    p = PREFIX
    w = retently_writes
    x = retently_ext
    table = [
        web.get(f"{p}/ping", endpoint(ping)),
        # customers, with the legacy `/nps/...` aliases of §3
        web.get(f"{p}/customers", endpoint(list_customers)),
        web.get(f"{p}/nps/customers", endpoint(list_customers)),
        web.post(f"{p}/customers", endpoint(w.upsert_customers)),
        web.post(f"{p}/nps/customers", endpoint(w.upsert_customers)),
        web.delete(f"{p}/customers", endpoint(w.delete_customers)),
        web.delete(f"{p}/nps/customers", endpoint(w.delete_customers)),
        web.post(f"{p}/customers/unsubscribe", endpoint(w.unsubscribe_customers)),
        web.get(f"{p}/customers/{{id}}", endpoint(get_customer)),
        web.get(f"{p}/nps/customers/response", endpoint(list_feedback)),
        web.post(f"{p}/nps/customers/survey", endpoint(w.send_survey_deprecated)),
        web.get(f"{p}/nps/customers/{{id}}", endpoint(get_customer)),
        web.get(f"{p}/companies", endpoint(list_companies)),
        web.get(f"{p}/companies/{{key}}", endpoint(get_company)),
        # feedback and its extensions
        web.get(f"{p}/feedback", endpoint(list_feedback)),
        web.get(f"{p}/feedback/statuses", endpoint(x.list_statuses)),
        web.get(f"{p}/feedback/{{id}}", endpoint(get_feedback)),
        web.get(f"{p}/feedback/{{id}}/replies", endpoint(x.list_replies)),
        web.post(f"{p}/feedback/{{id}}/replies", endpoint(x.reply_feedback)),
        web.post(f"{p}/feedback/{{id}}/star", endpoint(x.star_feedback)),
        web.post(f"{p}/feedback/{{id}}/assign", endpoint(x.assign_feedback)),
        web.post(f"{p}/feedback/{{id}}/resolve", endpoint(x.resolve_feedback)),
        web.post(f"{p}/feedback/{{id}}/notes", endpoint(x.add_note)),
        web.post(f"{p}/response/tags", endpoint(w.set_response_tags)),
        web.post(f"{p}/response/topics", endpoint(w.set_response_topics)),
        web.get(f"{p}/filters/fields", endpoint(x.describe_filters)),
        web.get(f"{p}/filters/saved", endpoint(x.list_saved_filters)),
        web.get(f"{p}/filters/recent", endpoint(x.list_recent_filters)),
        # scores, reports, trends
        web.get(f"{p}/{{metric}}/score", endpoint(get_score)),
        web.get(f"{p}/reports", endpoint(get_reports)),
        web.get(f"{p}/reports/", endpoint(get_reports)),
        web.get(f"{p}/reports/{{id}}", endpoint(get_reports)),
        web.get(f"{p}/trends", endpoint(list_trends)),
        web.get(f"{p}/trends/{{id}}", endpoint(get_trend_group)),
        web.get(f"{p}/digests", endpoint(x.list_digests)),
        web.get(f"{p}/digests/{{id}}", endpoint(x.get_digest)),
        # campaigns, templates, outbox, surveys
        web.get(f"{p}/campaigns", endpoint(list_campaigns)),
        web.get(f"{p}/templates", endpoint(list_templates)),
        web.get(f"{p}/templates/{{id}}", endpoint(get_template)),
        web.get(f"{p}/outbox", endpoint(list_outbox)),
        web.get(f"{p}/nps/outbox", endpoint(list_outbox)),
        web.get(f"{p}/outbox/queue", endpoint(x.queue_status)),
        web.post(f"{p}/survey", endpoint(w.send_survey)),
        # suppressions
        web.get(f"{p}/suppressions/emails", endpoint(w.list_suppressed_emails)),
        web.post(f"{p}/suppressions/emails", endpoint(w.add_suppressed_email)),
        web.delete(f"{p}/suppressions/emails/{{id}}", endpoint(w.remove_suppressed_email)),
        web.get(f"{p}/suppressions/domains", endpoint(w.list_suppressed_domains)),
        web.post(f"{p}/suppressions/domains", endpoint(w.add_suppressed_domain)),
        web.delete(f"{p}/suppressions/domains/{{id}}", endpoint(w.remove_suppressed_domain)),
        # integrations, team, account
        web.get(f"{p}/integrations", endpoint(x.list_integrations)),
        web.get(f"{p}/integrations/{{id}}/status", endpoint(x.integration_status)),
        web.get(f"{p}/users", endpoint(x.list_users)),
        web.get(f"{p}/users/{{id}}", endpoint(x.get_user)),
        web.get(f"{p}/account/usage", endpoint(x.plan_usage)),
    ]
    return [*table, *oauth.routes()]
