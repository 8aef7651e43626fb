"""Score arithmetic shared by the Retently emulation and the fixture generator.

Pure functions over plain numbers: score bands per metric, the account score, the
`ratingCategory` labels (the sandbox value sets of upstream-retently.md §10).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

METRICS = ("NPS", "CSAT", "CES", "STAR")

SCALES: dict[str, tuple[int, int]] = {"NPS": (0, 10), "CSAT": (1, 5), "CES": (1, 7), "STAR": (1, 5)}
"""Lowest and highest answer per metric."""

# Lowest score counted as promoter and as passive; anything below is a detractor.
_BANDS: dict[str, tuple[int, int]] = {"NPS": (9, 7), "CSAT": (4, 3), "CES": (5, 4), "STAR": (4, 3)}


def band(metric: str, score: int) -> str:
    """`promoter`, `passive` or `detractor` for one answer."""
    promoter_from, passive_from = _BANDS[metric]
    if score >= promoter_from:
        return "promoter"
    if score >= passive_from:
        return "passive"
    return "detractor"


def rating_category(metric: str, score: int) -> str:
    """NPS keeps the promoter family; other metrics use positive/neutral/negative."""
    kind = band(metric, score)
    if metric == "NPS":
        return kind
    return {"promoter": "positive", "passive": "neutral", "detractor": "negative"}[kind]


def round_half_up(value: float, digits: int = 0) -> float:
    """Round away from zero on .5, so recomputing a score in another language agrees."""
    factor = 10**digits
    return math.copysign(math.floor(abs(value) * factor + 0.5) / factor, value)


def metric_score(metric: str, scores: Iterable[int], *, nps_digits: int = 0) -> float | int | None:
    """The headline score: NPS as an integer, CSAT as % satisfied, CES and STAR as an average.

    None when there are no answers. `nps_digits` keeps decimals for per-day trend points.
    """
    values = list(scores)
    if not values:
        return None
    total = len(values)
    if metric == "NPS":
        promoters = sum(1 for v in values if band(metric, v) == "promoter")
        detractors = sum(1 for v in values if band(metric, v) == "detractor")
        nps = round_half_up(100 * (promoters - detractors) / total, nps_digits)
        return int(nps) if nps_digits == 0 else nps
    if metric == "CSAT":
        satisfied = sum(1 for v in values if band(metric, v) == "promoter")
        return round_half_up(100 * satisfied / total, 1)
    return round_half_up(sum(values) / total, 1)


def summary(metric: str, scores: Iterable[int]) -> dict[str, Any]:
    """Counts, percentages, distribution and score: the body of `GET /{metric}/score`."""
    values = list(scores)
    low, high = SCALES[metric]
    counts = {"promoter": 0, "passive": 0, "detractor": 0}
    for value in values:
        counts[band(metric, value)] += 1
    total = len(values)

    def percent(count: int) -> int:
        return int(round_half_up(100 * count / total)) if total else 0

    distribution = {str(point): 0 for point in range(low, high + 1)}
    for value in values:
        distribution[str(value)] += 1
    score = metric_score(metric, values)
    return {
        "score": 0 if score is None else score,
        "scoreSum": sum(values),
        "metricsType": metric,
        "promoters": percent(counts["promoter"]),
        "passives": percent(counts["passive"]),
        "detractors": percent(counts["detractor"]),
        "promotersCount": counts["promoter"],
        "passivesCount": counts["passive"],
        "detractorsCount": counts["detractor"],
        "totalResponses": total,
        "ratingDistribution": distribution,
    }
