"""Refiner `GET /v1/reporting` (§4.6), recomputed from the response rows for the same filters.

Pure: the figures for any filter set equal what a client gets by paging `/v1/responses`
with those filters (completed responses, `date_range_end` exclusive) and counting.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sandbox.dates import refiner_response_format
from sandbox.errors import refiner_error
from sandbox.refiner_query import (
    Params,
    end_of_window,
    first,
    response_filter,
    select_responses,
    strings,
)
from sandbox.scoring import round_half_up
from sandbox.store import RefinerProject

Row = dict[str, Any]

QUESTION_TYPES = {
    "nps": "nps",
    "csat": "csat",
    "ratings": "rating",
    "distribution": "multiple_choice",
}
REPORT_TYPES = (*QUESTION_TYPES, "count")
CSAT_KEYS = ("very_unsatisfied", "unsatisfied", "neutral", "satisfied", "very_satisfied")
DEFAULT_DAYS = 7
"""Without dates the REST default is the last 7 days through the end of today (W6W)."""


def _answers(
    project: RefinerProject, rows: list[Row], question_type: str, identifiers: list[str]
) -> list[tuple[Row, Any]]:
    """(question element, answer) for every answered question of the type in the rows."""
    forms = {form["uuid"]: form for form in project.forms}
    found = []
    for row in rows:
        form = forms.get(row["form"]["uuid"])
        elements = (form or {}).get("config", {}).get("form_elements", [])
        for element in elements:
            if element["type"] != question_type:
                continue
            if identifiers and element["identifier"] not in identifiers:
                continue
            value = row["data"].get(element["identifier"])
            if value is not None and value != "" and value != []:
                found.append((element, value))
    return found


def _nps(values: list[int]) -> Row:
    data = {
        "detractors": sum(1 for v in values if v <= 6),
        "passives": sum(1 for v in values if 7 <= v <= 8),
        "promoters": sum(1 for v in values if v >= 9),
    }
    score = 100 * (data["promoters"] - data["detractors"]) / len(values) if values else 0
    return {"data": data, "count": len(values), "nps": int(round_half_up(score))}


def _csat(values: list[int]) -> Row:
    data = {key: sum(1 for v in values if v == point) for point, key in enumerate(CSAT_KEYS, 1)}
    satisfied = data["satisfied"] + data["very_satisfied"]
    score = 100 * satisfied / len(values) if values else 0
    return {"data": data, "count": len(values), "csat": int(round_half_up(score))}


def _ratings(values: list[int]) -> Row:
    points = sorted({1, 2, 3, 4, 5} | set(values))
    data = {str(point): sum(1 for v in values if v == point) for point in points}
    average = round_half_up(sum(values) / len(values), 2) if values else 0
    return {"data": data, "count": len(values), "sum": sum(values), "average": average}


def _distribution(answers: list[tuple[Row, Any]]) -> Row:
    data: dict[str, int] = {}
    for element, _ in answers:
        for option in element.get("options", []):
            data.setdefault(option, 0)
    datapoints = 0
    for _, value in answers:
        for label in value if isinstance(value, list) else [value]:
            data[str(label)] = data.get(str(label), 0) + 1
            datapoints += 1
    return {"data": data, "datapoints": datapoints, "responses": len(answers)}


def report(project: RefinerProject, params: Params, now: datetime) -> Row:
    """Raises: UpstreamError 400 for a missing or unknown `type`, or bad filters."""
    kind = first(params, "type")
    if not kind:
        raise refiner_error(400, "type is required")
    if kind not in REPORT_TYPES:
        raise refiner_error(400, "Invalid type")
    wanted = response_filter(params)
    end = end_of_window(wanted.end, now)
    start = wanted.start or (end - timedelta(days=DEFAULT_DAYS + 1))
    wanted = replace(wanted, start=start, end=end, include="completed")
    completed = select_responses(project, wanted)
    body: Row
    if kind == "count":
        shown = select_responses(project, replace(wanted, include="all"))
        body = {"views": len(shown), "responses": len(completed)}
    else:
        identifiers = strings(params, "question_identifiers") + strings(
            params, "question_identifier"
        )
        answers = _answers(project, completed, QUESTION_TYPES[kind], identifiers)
        if kind == "distribution":
            body = _distribution(answers)
        else:
            numbers = [int(value) for _, value in answers]
            body = {"nps": _nps, "csat": _csat, "ratings": _ratings}[kind](numbers)
    body["date_range_start"] = refiner_response_format(start)
    body["date_range_end"] = refiner_response_format(end - timedelta(seconds=1))
    return body
