"""Retently figures computed from the feedback and outbox rows: reports (§8.5) and trends (§8.6).

Pure: every figure is recomputed from the rows it is given, so reports always agree with
`GET /feedback` and `GET /outbox` in the same app.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.dates import parse_stored
from sandbox.errors import retently_error
from sandbox.scoring import band, metric_score, summary

Row = dict[str, Any]

TREND_PERIODS = (
    "today",
    "yesterday",
    "past-week",
    "past-month",
    "past-3-months",
    "past-6-months",
    "past-year",
    "this-month-to-date",
    "this-quarter-to-date",
    "this-year-to-date",
    "custom",
)


def _point(metric: str, day: str, scores: list[int]) -> Row:
    counts = summary(metric, scores)
    return {
        "day": day,
        "promoters": counts["promotersCount"],
        "passives": counts["passivesCount"],
        "detractors": counts["detractorsCount"],
        "total": len(scores),
        "score": metric_score(metric, scores, nps_digits=1),
        "ratingDistribution": {k: v for k, v in counts["ratingDistribution"].items() if v},
    }


def daily_trend(metric: str, feedback: Iterable[Row]) -> list[Row]:
    """One point per day with answers, oldest first."""
    by_day: dict[str, list[int]] = defaultdict(list)
    for row in feedback:
        by_day[row["createdDate"][:10]].append(row["score"])
    return [_point(metric, day, by_day[day]) for day in sorted(by_day)]


def _month_stats(metric: str, month: str, scores: list[int], asked: int) -> Row:
    point = _point(metric, month, scores)
    point.pop("ratingDistribution")
    point["score"] = metric_score(metric, scores)
    point["scoreSum"] = sum(scores)
    point.update(opened=asked, responded=len(scores), skipped=asked - len(scores))
    return point


def _question_stats(template: Row | None, feedback: list[Row]) -> list[Row]:
    """Per follow-up question of the template: its first and last month with answers."""
    if template is None:
        return []
    stats = []
    for position, question in enumerate(template.get("surveyQuestions", [])[1:], start=2):
        metric = question.get("metricsType")
        if not metric:
            continue
        by_month: dict[str, list[int]] = defaultdict(list)
        asked: dict[str, int] = defaultdict(int)
        for row in feedback:
            month = row["createdDate"][:7] + "-01"
            asked[month] += 1
            for answer in row.get("additionalQuestions", []):
                if answer.get("questionText") == question["title"]:
                    by_month[month].append(int(answer["answer"]))
        if not by_month:
            continue
        months = sorted(by_month)
        first, last = months[0], months[-1]
        stats.append(
            {
                "uuid": question["uuid"],
                "title": question["title"],
                "position": position,
                "isOnMain": position == 2,
                "isStarred": False,
                "metricsType": metric,
                "stats": {
                    "first": _month_stats(metric, first, by_month[first], asked[first]),
                    "last": _month_stats(metric, last, by_month[last], asked[last]),
                },
            }
        )
    return stats


def campaign_report(
    campaign: Row, template: Row | None, feedback: list[Row], outbox: list[Row]
) -> Row:
    """One `/reports` item for a campaign from its feedback and outbox rows."""
    metric = campaign["metric"]
    scores = [row["score"] for row in feedback]
    overall = summary(metric, scores)
    sent = [row for row in outbox if row["status"] != "SCHEDULED"]
    flags = [row["detailedStatus"] for row in sent]
    return {
        "campaignId": campaign["id"],
        "name": campaign["name"],
        "isActive": campaign["isActive"],
        "metric": metric,
        "type": campaign["type"],
        "channel": campaign["channel"],
        "score": None if not scores else str(overall["score"]),
        "trend": daily_trend(metric, feedback),
        "last": {
            "promoters": overall["promoters"],
            "passives": overall["passives"],
            "detractors": overall["detractors"],
            "total": overall["totalResponses"],
            "score": metric_score(metric, scores),
            "ratingDistribution": {k: v for k, v in overall["ratingDistribution"].items() if v},
        },
        "deliveryStats": {
            "totalCount": len(sent),
            "opened": sum(1 for flag in flags if flag["isOpened"]),
            "responded": sum(1 for flag in flags if flag["isResponded"]),
            "optedOut": sum(1 for flag in flags if flag["isOptedOut"]),
            "isBounced": sum(1 for flag in flags if flag["isBounced"]),
        },
        "questionsStats": _question_stats(template, feedback),
    }


def period_window(
    period: str, now: datetime, start: datetime | None, end: datetime | None
) -> tuple[datetime, datetime]:
    """The `[start, end]` instants a trends `date` preset covers at `now`.

    Raises:
        UpstreamError: 400 for an unknown preset, or `custom` without `startDate`.
    """
    now = now.astimezone(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    spans = {
        "past-week": 7,
        "past-month": 30,
        "past-3-months": 91,
        "past-6-months": 182,
        "past-year": 365,
    }
    if period in spans:
        return now - timedelta(days=spans[period]), now
    if period == "today":
        return midnight, now
    if period == "yesterday":
        return midnight - timedelta(days=1), midnight - timedelta(microseconds=1)
    if period == "this-month-to-date":
        return midnight.replace(day=1), now
    if period == "this-quarter-to-date":
        return midnight.replace(month=(now.month - 1) // 3 * 3 + 1, day=1), now
    if period == "this-year-to-date":
        return midnight.replace(month=1, day=1), now
    if period == "custom" and start is not None:
        return start, end or now
    raise retently_error(400)


def _group_rows(group: Row, feedback: Iterable[Row]) -> list[Row]:
    topics = {topic.lower() for topic in group.get("topics", [])}
    campaigns = set(group.get("campaignIds", []))
    picked = []
    for row in feedback:
        if row["metricsType"] != group["metric"]:
            continue
        if campaigns and row["campaignId"] not in campaigns:
            continue
        names = {topic["name"].lower() for topic in row.get("feedbackTopics", [])}
        if topics and not topics & names:
            continue
        picked.append(row)
    return picked


def trend_group(group: Row, feedback: list[Row], start: datetime, end: datetime) -> Row:
    """Current versus the equally long preceding window, daily points and band counts."""
    rows = _group_rows(group, feedback)
    metric = group["metric"]
    baseline_start = start - (end - start)

    def between(low: datetime, high: datetime) -> list[Row]:
        return [row for row in rows if low <= parse_stored(row["createdDate"]) <= high]

    current = between(start, end)
    baseline = [row for row in between(baseline_start, start) if row not in current]
    bands = {"promoters": 0, "passives": 0, "detractors": 0}
    for row in current:
        bands[band(metric, row["score"]) + "s"] += 1
    return {
        "groupId": group["id"],
        "name": group["name"],
        "metric": metric,
        "current": {
            "score": metric_score(metric, [row["score"] for row in current]),
            "total": len(current),
        },
        "baseline": {
            "score": metric_score(metric, [row["score"] for row in baseline]),
            "total": len(baseline),
        },
        "trend": [
            {"day": point["day"], "score": point["score"], "total": point["total"]}
            for point in daily_trend(metric, current)
        ],
        "distribution": bands,
    }
