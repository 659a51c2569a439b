"""One test event to one analytics target, through the exporters' own senders, so "send a test
event" in the dashboard proves the same path real calls take (credentials, endpoint, signature).

Rules:
- GA4 gets a `calltracking_test` event with `debug_mode` set: it shows in GA4's DebugView and
  stays out of reports (never a `phone_call`, which would count as a conversion).
- Metrika gets a one-row offline-conversion upload of a made-up client id, commented as a test:
  Metrika matches it to no visitor, so no report changes, yet token and counter are proven.
- A webhook gets a signed `test` event naming the site.
- The result is the sender's outcome; secrets never appear in it (the senders keep that rule).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import aiohttp

from calltracking.core.events import Event
from calltracking.core.kinds import AttributionKind, CallStatus
from calltracking.core.records import CallRecord, SessionInfo
from calltracking.core.settings import Ga4Target, MetrikaTarget, WebhookTarget
from calltracking.exporters import ga4, metrika, webhooks
from calltracking.exporters.outcome import Outcome, Sent

TEST_EVENT = "calltracking_test"
TEST_CLIENT_ID = "1000000000.1000000000"
TEST_YM_CLIENT_ID = "1000000000000000000"


def ga4_test_payload(now: datetime, site_id: str) -> dict[str, object]:
    return {
        "client_id": TEST_CLIENT_ID,
        "timestamp_micros": ga4.to_micros(now),
        "events": [
            {
                "name": TEST_EVENT,
                "params": {"debug_mode": 1, "site_id": site_id[:100], "engagement_time_msec": 1},
            }
        ],
    }


def metrika_test_call(now: datetime, site_id: str) -> CallRecord:
    return CallRecord(
        id=f"test-{uuid.uuid4().hex}",
        account_id=None,
        site_id=site_id,
        did="+10000000000",
        caller=None,
        started_at=now - timedelta(minutes=1),
        status=CallStatus.ANSWERED,
        kind=AttributionKind.DYNAMIC,
        confidence=1.0,
        answered_at=now - timedelta(seconds=50),
        ended_at=now,
        session=SessionInfo(source="calltracking", medium="test", ym_client_id=TEST_YM_CLIENT_ID),
    )


def webhook_test_event(now: datetime, site_id: str) -> Event:
    return Event("test", uuid.uuid4().hex, now, {"test": True, "site_id": site_id})


async def send_test(
    session: aiohttp.ClientSession,
    target: Ga4Target | MetrikaTarget | WebhookTarget,
    *,
    site_id: str,
    now: datetime,
    ga4_endpoint: str,
    metrika_endpoint: str,
) -> Outcome:
    if isinstance(target, Ga4Target):
        return await ga4.send_ga4(session, ga4_endpoint, target, ga4_test_payload(now, site_id))
    if isinstance(target, WebhookTarget):
        return await webhooks.deliver(session, target, webhook_test_event(now, site_id), now)
    csv_text, _, _ = metrika.build_calls_csv([metrika_test_call(now, site_id)], now)
    result = await metrika.upload_calls(
        session, metrika_endpoint, target, csv_text, comment="calltracking test event"
    )
    if isinstance(result, metrika.UploadResult):
        return Sent(f"metrika counter {target.counter_id}: upload {result.id} {result.status}")
    return result
