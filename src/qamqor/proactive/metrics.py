"""``/metrics``: the proactive pipeline in the Prometheus text format (version 0.0.4).

Read from the database at each scrape, so every worker and API process reports the same:
the inbox depth and the age of its oldest pending event, events applied but not finished,
the event -> offer latency (p50, p99 over the most recent offers), offers by status and the
outbox. Counts only: no personal data, so the endpoint needs no sign-in.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from qamqor.kit.db import session_scope
from qamqor.proactive.models import Notification, Offer
from qamqor.registry.events import oldest_pending_age_seconds
from qamqor.registry.models import RegistryEvent
from qamqor.web.auth import Caller, authorize

router = APIRouter(tags=["ops"])
LATENCY_WINDOW = 10_000  # the most recent offers the latency quantiles are computed over


def _quantile(values: list[float], q: float) -> float:
    """The nearest-rank quantile (a value that occurred, as Prometheus summaries report)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 1))))
    return ordered[rank - 1]


def latencies(session: Session, limit: int = LATENCY_WINDOW) -> list[float]:
    rows = session.execute(
        select(Offer.created_at, Offer.event_received_at)
        .where(Offer.event_received_at.is_not(None))
        .order_by(Offer.id.desc())
        .limit(limit)
    ).all()
    return [
        max(0.0, (created - received).total_seconds())
        for created, received in rows
        if received is not None
    ]


def render(session: Session, now: dt.datetime) -> str:
    by_status = dict(
        session.execute(
            select(RegistryEvent.status, func.count()).group_by(RegistryEvent.status)
        ).all()
    )
    age = oldest_pending_age_seconds(session, now)
    offers = dict(session.execute(select(Offer.status, func.count()).group_by(Offer.status)).all())
    outbox = dict(
        session.execute(
            select(Notification.status, func.count()).group_by(Notification.status)
        ).all()
    )
    seen = latencies(session)
    lines = [
        "# HELP qamqor_inbox_pending_events Registry events received and not yet applied.",
        "# TYPE qamqor_inbox_pending_events gauge",
        f"qamqor_inbox_pending_events {by_status.get('pending', 0)}",
        "# HELP qamqor_inbox_oldest_pending_age_seconds Age of the oldest pending event.",
        "# TYPE qamqor_inbox_oldest_pending_age_seconds gauge",
        f"qamqor_inbox_oldest_pending_age_seconds {age:.3f}",
        "# HELP qamqor_inbox_events Registry events by state.",
        "# TYPE qamqor_inbox_events gauge",
    ]
    for status in ("pending", "applied", "done", "superseded", "failed"):
        lines.append(f'qamqor_inbox_events{{status="{status}"}} {by_status.get(status, 0)}')
    lines += [
        "# HELP qamqor_event_to_offer_latency_seconds From an event's receipt to the offer it"
        f" led to, over the latest {LATENCY_WINDOW} offers.",
        "# TYPE qamqor_event_to_offer_latency_seconds summary",
        f'qamqor_event_to_offer_latency_seconds{{quantile="0.5"}} {_quantile(seen, 0.5):.3f}',
        f'qamqor_event_to_offer_latency_seconds{{quantile="0.99"}} {_quantile(seen, 0.99):.3f}',
        f"qamqor_event_to_offer_latency_seconds_sum {sum(seen):.3f}",
        f"qamqor_event_to_offer_latency_seconds_count {len(seen)}",
        "# HELP qamqor_offers Offers by status.",
        "# TYPE qamqor_offers gauge",
    ]
    for status in ("created", "notified", "accepted", "declined", "expired"):
        lines.append(f'qamqor_offers{{status="{status}"}} {offers.get(status, 0)}')
    lines += [
        "# HELP qamqor_outbox_notifications Notifications by status.",
        "# TYPE qamqor_outbox_notifications gauge",
    ]
    for status in ("pending", "sent", "failed"):
        lines.append(f'qamqor_outbox_notifications{{status="{status}"}} {outbox.get(status, 0)}')
    return "\n".join(lines) + "\n"


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Inbox depth, oldest pending event, event -> offer latency (Prometheus format)",
)
def metrics(caller: Annotated[Caller, Depends(authorize("ops.read_metrics"))]) -> str:
    del caller
    with session_scope() as session:
        return render(session, dt.datetime.now(dt.UTC))
