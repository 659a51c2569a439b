"""Site reports: what analytics cannot show (CONTRACT.md, the report endpoint and leads).

    inputs     VisitRecord, DisplayPeriod, PoolSample, PoolFacts: what reports read besides calls
    figures    calls by kind/status, accuracy (overall and per day), by_source, missed calls
    delays     when calls to the initial/expired numbers came, matched to what visitors saw
    advice     show_delay_s, idle_timeout_s and pool size recommendations, with reasons
    leads      is_lead / is_first_time_caller decisions, leads per month
    localtime  days and months in the account's time zone
    report     build_report -> SiteReport (its to_json is the endpoint's body)
    overview   a period's figures against the one before, presets in the account's zone

Everything here is pure: data and an explicit window and time zone in, figures out.
"""

from calltracking.core.reports.advice import (
    Advice,
    Recommendation,
    advise_idle_timeout,
    advise_pool_size,
    advise_show_delay,
)
from calltracking.core.reports.delays import (
    DelayBucket,
    DelayFigures,
    delay_figures,
    match_display,
    percentile,
)
from calltracking.core.reports.inputs import (
    DisplayPeriod,
    PoolFacts,
    PoolSample,
    VisitRecord,
    pool_facts,
)
from calltracking.core.reports.leads import (
    MonthLeads,
    is_first_time_caller,
    is_lead,
    month_leads,
)
from calltracking.core.reports.localtime import month_bounds, parse_month
from calltracking.core.reports.report import SiteReport, Untracked, build_report

__all__ = [
    "Advice",
    "DelayBucket",
    "DelayFigures",
    "DisplayPeriod",
    "MonthLeads",
    "PoolFacts",
    "PoolSample",
    "Recommendation",
    "SiteReport",
    "Untracked",
    "VisitRecord",
    "advise_idle_timeout",
    "advise_pool_size",
    "advise_show_delay",
    "build_report",
    "delay_figures",
    "is_first_time_caller",
    "is_lead",
    "match_display",
    "month_bounds",
    "month_leads",
    "parse_month",
    "percentile",
    "pool_facts",
]
