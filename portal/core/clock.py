"""Time: stored in UTC, shown in Asia/Shanghai. No naive datetimes anywhere."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
# The portal's working years: a date outside them is a typing error (or an attack), and near year 1
# or 9999 converting to UTC or adding a day overflows Python's datetime.
FIRST_YEAR, LAST_YEAR = 2000, 2099


def plausible_year(year: int) -> bool:
    return FIRST_YEAR <= year <= LAST_YEAR


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def to_local(value: datetime) -> datetime:
    """An aware datetime converted to Asia/Shanghai for display."""
    if value.tzinfo is None:
        raise ValueError("naive datetime refused")
    return value.astimezone(SHANGHAI)


def format_local(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """An aware datetime as Asia/Shanghai wall-clock text, or '' for None."""
    return "" if value is None else to_local(value).strftime(fmt)


def parse_iso(text: str) -> datetime:
    """Parse ISO 8601 with an offset (Z allowed) into aware UTC; a missing offset is an error."""
    value = datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError("a time zone offset is required, e.g. 2026-01-05T09:00:00+08:00")
    return value.astimezone(UTC)


def iso_utc(value: datetime | None) -> str | None:
    """Aware datetime as ISO 8601 UTC with a Z suffix, as the API promises."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def local_datetime_to_utc(day: date, at: time) -> datetime:
    """A Shanghai wall-clock time on a given day, as aware UTC."""
    return datetime.combine(day, at, tzinfo=SHANGHAI).astimezone(UTC)


def local_month(moment: datetime) -> str:
    """The Beijing month of an instant, as "YYYY-MM" (accounting months, tally periods)."""
    return to_local(moment).strftime("%Y-%m")


def local_month_bounds(month: str) -> tuple[datetime, datetime]:
    """The Beijing month "YYYY-MM" as the UTC instants it runs between, [start, end)."""
    year, number = int(month[:4]), int(month[5:7])
    start = date(year, number, 1)
    end = date(year + (number == 12), number % 12 + 1, 1)
    return local_datetime_to_utc(start, time.min), local_datetime_to_utc(end, time.min)


def local_today(now: datetime | None = None) -> date:
    """Today's date in Shanghai."""
    return to_local(now or utcnow()).date()


def week_start(day: date) -> date:
    """The Monday of the week `day` is in."""
    return day - timedelta(days=day.weekday())


def local_naive_to_utc(value: datetime) -> datetime:
    """A wall-clock time typed into a form (Beijing time, no zone) as aware UTC."""
    if value.tzinfo is not None:
        raise ValueError("expected a naive wall-clock time")
    return value.replace(tzinfo=SHANGHAI).astimezone(UTC)


def current_time() -> datetime:
    """utcnow() looked up at call time: column defaults use it, so a test that moves the clock moves them."""
    return utcnow()
