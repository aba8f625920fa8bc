"""Access anomalies: cheap checks run as each officer access event is recorded.

Three signals, each at most one alert per officer, kind and local day (the row counts the
matching events and points at the latest):

- ``volume``        more distinct households opened in one local day than
                    ``QAMQOR_ANOMALY_DAILY_HOUSEHOLDS``;
- ``out_of_region`` an attempt on a household outside the officer's region scope (these are
                    denied, and still counted: trying is the signal);
- ``off_hours``     access outside ``QAMQOR_ANOMALY_WORK_HOURS`` on a working day (Mon-Fri),
                    in ``QAMQOR_LOCAL_TIMEZONE`` (Asia/Almaty by default).

Each check is one indexed query on the officer's events of the day, in the recording
transaction: no background process. Citizens and machine clients raise no alerts.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from qamqor.kit.settings import get_settings
from qamqor.privacy.models import AccessEvent, Alert

KINDS = ("volume", "out_of_region", "off_hours")


def _zone() -> ZoneInfo:
    return ZoneInfo(get_settings().local_timezone)


def local_day_bounds(moment: dt.datetime) -> tuple[dt.date, dt.datetime, dt.datetime]:
    zone = _zone()
    local = moment.astimezone(zone)
    start = dt.datetime.combine(local.date(), dt.time(), tzinfo=zone)
    end = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), tzinfo=zone)
    return local.date(), start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def work_hours() -> tuple[dt.time, dt.time]:
    start, end = get_settings().anomaly_work_hours.split("-")
    return dt.time.fromisoformat(start), dt.time.fromisoformat(end)


def off_hours(moment: dt.datetime) -> bool:
    local = moment.astimezone(_zone())
    start, end = work_hours()
    return local.weekday() >= 5 or not start <= local.time().replace(tzinfo=None) < end


def _raise(session: Session, event: AccessEvent, kind: str, day: dt.date, detail: str) -> Alert:
    alert = session.scalars(
        select(Alert).where(
            Alert.account_id == event.account_id, Alert.kind == kind, Alert.day == day
        )
    ).first()
    if alert is None:
        alert = Alert(
            account_id=event.account_id,
            kind=kind,
            day=day,
            raised_at=event.occurred_at,
            updated_at=event.occurred_at,
            events=1,
            detail=detail,
            first_event_id=event.id,
            last_event_id=event.id,
        )
        session.add(alert)
    else:
        alert.events += 1
        alert.detail = detail
        alert.updated_at = event.occurred_at
        alert.last_event_id = event.id
    return alert


def check(session: Session, event: AccessEvent) -> list[Alert]:
    """Raise or update the alerts ``event`` triggers; returns them (flushed)."""
    if event.principal_kind != "officer" or event.account_id is None:
        return []
    raised = []
    day, start, end = local_day_bounds(event.occurred_at)
    if event.outcome == "allowed":
        opened = session.scalar(
            select(func.count(func.distinct(AccessEvent.household_id))).where(
                AccessEvent.account_id == event.account_id,
                AccessEvent.outcome == "allowed",
                AccessEvent.occurred_at >= start,
                AccessEvent.occurred_at < end,
            )
        )
        limit = get_settings().anomaly_daily_households
        if opened and opened > limit:
            raised.append(
                _raise(
                    session,
                    event,
                    "volume",
                    day,
                    f"{opened} households opened on {day} (threshold {limit})",
                )
            )
    if event.outcome == "denied" and event.reason in ("outside_region", "region_unknown"):
        raised.append(
            _raise(
                session,
                event,
                "out_of_region",
                day,
                f"household {event.household_id} in region {event.household_region or '?'} "
                "is outside the officer's region scope",
            )
        )
    if off_hours(event.occurred_at):
        local = event.occurred_at.astimezone(_zone())
        start_h, end_h = work_hours()
        raised.append(
            _raise(
                session,
                event,
                "off_hours",
                day,
                f"access at {local:%a %H:%M} local time (working hours Mon-Fri "
                f"{start_h:%H:%M}-{end_h:%H:%M})",
            )
        )
    session.flush()
    return raised


def list_alerts(
    session: Session,
    *,
    kind: str | None = None,
    since: dt.date | None = None,
    offset: int = 0,
    limit: int = 100,
) -> tuple[list[Alert], int]:
    query = select(Alert)
    if kind:
        query = query.where(Alert.kind == kind)
    if since:
        query = query.where(Alert.day >= since)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(Alert.updated_at.desc(), Alert.id.desc()).offset(offset).limit(limit)
    )
    return list(rows), int(total)
