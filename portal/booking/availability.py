"""When an instrument can be booked: its calendar (opening hours, closures, held slots), the rules a
slot must keep, the conflicts it would have, the next free time and the week view."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import select

from portal.booking.models import HOLDING_STATES, Blackout, Booking, BookingMode, BookingPolicy
from portal.booking.services import BOOKABLE_STATUSES, policy_for
from portal.catalog.models import Instrument, OpeningHours
from portal.core import clock
from portal.core.errors import ServiceError, SlotConflict, SlotOffered, ValidationFailed
from portal.extensions import db

MIDNIGHT_MARK = time(23, 59)
# What a calendar may span: views ask for days, a closure may last years; beyond that, and outside
# the working years, it is a typing error (or an attack: the span is walked day by day).
CALENDAR_MAX_SPAN = timedelta(days=3660)
CALENDAR_EARLIEST = datetime(clock.FIRST_YEAR, 1, 1, tzinfo=UTC)
CALENDAR_LATEST = datetime(clock.LAST_YEAR + 1, 1, 1, tzinfo=UTC)


@dataclass
class Span:
    """A half-open UTC interval [start, end), with what it is when it is held or closed."""

    start: datetime
    end: datetime
    kind: str = ""
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        data = {"start": clock.iso_utc(self.start), "end": clock.iso_utc(self.end)}
        if self.kind:
            data["kind"] = self.kind
        return data


def _merge(spans: list[Span]) -> list[Span]:
    out: list[Span] = []
    for span in sorted(spans, key=lambda s: s.start):
        if out and span.start <= out[-1].end and span.kind == out[-1].kind:
            out[-1].end = max(out[-1].end, span.end)
        elif span.end > span.start:
            out.append(Span(span.start, span.end, span.kind, span.note))
    return out


def _subtract(spans: list[Span], cuts: list[Span]) -> list[Span]:
    out = []
    for span in spans:
        pieces = [span]
        for cut in cuts:
            next_pieces = []
            for piece in pieces:
                if cut.end <= piece.start or cut.start >= piece.end:
                    next_pieces.append(piece)
                    continue
                if cut.start > piece.start:
                    next_pieces.append(Span(piece.start, cut.start, piece.kind))
                if cut.end < piece.end:
                    next_pieces.append(Span(cut.end, piece.end, piece.kind))
            pieces = next_pieces
        out.extend(pieces)
    return _merge(out)


def _clip(span: Span, start: datetime, end: datetime) -> Span | None:
    clipped = Span(max(span.start, start), min(span.end, end), span.kind, span.note)
    return clipped if clipped.start < clipped.end else None


@dataclass
class Problem:
    rule: str
    message: str


@dataclass
class Calendar:
    """An instrument's time between two instants: when it opens, what is closed, what is held."""

    instrument: Instrument
    policy: BookingPolicy
    start: datetime
    end: datetime
    now: datetime
    opening: list[Span] = field(default_factory=list)
    blackouts: list[Span] = field(default_factory=list)
    holds: list[Span] = field(default_factory=list)

    @classmethod
    def load(
        cls, instrument: Instrument, start: datetime, end: datetime, now: datetime | None = None
    ) -> Calendar:
        # The loop below walks every day of the range: refuse input that would make it run for
        # seconds (a far end) or overflow (the edges of datetime), instead of a 500 after the wait.
        inside = CALENDAR_EARLIEST <= start <= CALENDAR_LATEST and CALENDAR_EARLIEST <= end <= CALENDAR_LATEST
        if not inside or end - start > CALENDAR_MAX_SPAN:
            message = _("Choose times between 2000 and 2099, at most ten years apart.")
            raise ValidationFailed(message, {"starts_at": message})
        calendar = cls(instrument, policy_for(instrument), start, end, now or clock.utcnow())
        hours = db.session.scalars(
            select(OpeningHours).where(OpeningHours.instrument_id == instrument.id)
        ).all()
        day = clock.to_local(start).date() - timedelta(days=1)
        while clock.local_datetime_to_utc(day, datetime.min.time()) < end:
            for h in hours:
                if h.weekday == day.weekday():
                    # 23:59 means "until midnight", so instruments open round the clock book across days.
                    closes = (
                        clock.local_datetime_to_utc(day + timedelta(days=1), datetime.min.time())
                        if h.closes_at >= MIDNIGHT_MARK
                        else clock.local_datetime_to_utc(day, h.closes_at)
                    )
                    span = _clip(Span(clock.local_datetime_to_utc(day, h.opens_at), closes), start, end)
                    if span:
                        calendar.opening.append(span)
            day += timedelta(days=1)
        calendar.opening = _merge(calendar.opening)
        blackouts = db.session.scalars(
            select(Blackout).where(
                Blackout.instrument_id == instrument.id, Blackout.starts_at < end, Blackout.ends_at > start
            )
        )
        calendar.blackouts = [Span(b.starts_at, b.ends_at, b.kind.value, b.reason) for b in blackouts]
        # Holds are loaded a buffer wider, so a slot's buffer can be checked against its neighbours.
        margin = timedelta(minutes=calendar.policy.buffer_minutes)
        holds = db.session.execute(
            select(Booking.starts_at, Booking.held_until, Booking.offered_until).where(
                Booking.instrument_id == instrument.id,
                Booking.mode == BookingMode.SLOT,
                Booking.state.in_(HOLDING_STATES),
                Booking.starts_at < end + margin,
                Booking.held_until > start,
            )
        ).all()
        # (Both times are set: the WHERE compares them, which no NULL passes.)
        calendar.holds = [
            Span(s, held_until, "booking" if offered_until is None else "offer")
            for s, held_until, offered_until in holds
            if s is not None and held_until is not None
        ]
        return calendar

    def bookable_window(self) -> Span:
        first = self.now + timedelta(hours=self.policy.min_notice_hours)
        last_day = clock.local_today(self.now) + timedelta(days=self.policy.max_days_ahead + 1)
        return Span(first, clock.local_datetime_to_utc(last_day, datetime.min.time()))

    def availability(self) -> dict[str, list[Span]]:
        """Free, held and closed time in [start, end): what the week view and the API show."""
        window = self.bookable_window()
        bookable = [s for s in (_clip(o, window.start, window.end) for o in self.opening) if s]
        if not self.instrument_is_bookable():
            bookable = []
        held = _merge([s for s in (_clip(h, self.start, self.end) for h in self.holds) if s])
        blackouts = [s for s in (_clip(b, self.start, self.end) for b in self.blackouts) if s]
        free = _subtract(bookable, [*blackouts, *held])
        taken = [Span(s.start, s.end) for s in (*free, *held, *blackouts)]
        closed = _subtract([Span(self.start, self.end, "closed")], taken)
        closed = sorted([*closed, *_subtract(blackouts, held)], key=lambda s: s.start)
        return {"free": free, "held": held, "closed": closed}

    def instrument_is_bookable(self) -> bool:
        return self.instrument.status in BOOKABLE_STATUSES and self.policy.accepts_slots

    def problems(self, starts_at: datetime, ends_at: datetime) -> list[Problem]:
        """Every booking rule this slot breaks (empty when it may be requested)."""
        policy = self.policy
        if self.instrument.status not in BOOKABLE_STATUSES:
            return [Problem("not_bookable", _("This instrument cannot be booked in its present state."))]
        if not policy.accepts_slots:
            return [Problem("mode_not_offered", _("This instrument takes sample submissions only."))]
        if starts_at >= ends_at:
            return [Problem("invalid_range", _("The end must be after the start."))]
        out = []
        minutes = (ends_at - starts_at).total_seconds() / 60
        local_start = clock.to_local(starts_at)
        if (
            (local_start.hour * 60 + local_start.minute) % policy.step_minutes
            or minutes % policy.step_minutes
            or (local_start.second or local_start.microsecond)
        ):
            out.append(
                Problem("off_grid", _("Slots start and end on the %(n)d-minute grid.", n=policy.step_minutes))
            )
        if minutes < policy.min_minutes:
            out.append(
                Problem("too_short", _("A booking lasts at least %(n)d minutes.", n=policy.min_minutes))
            )
        if minutes > policy.max_minutes:
            out.append(Problem("too_long", _("A booking lasts at most %(n)d minutes.", n=policy.max_minutes)))
        window = self.bookable_window()
        if starts_at < self.now:
            out.append(Problem("in_past", _("This time has already passed.")))
        elif starts_at < window.start:
            out.append(
                Problem("too_late", _("Book at least %(n)d hours in advance.", n=policy.min_notice_hours))
            )
        if ends_at > window.end:
            out.append(Problem("too_far_ahead", _("Book at most %(n)d days ahead.", n=policy.max_days_ahead)))
        if not any(o.start <= starts_at and ends_at <= o.end for o in self.opening):
            out.append(
                Problem("outside_open_hours", _("The instrument is not open for the whole of this time."))
            )
        return out

    def conflicts(self, starts_at: datetime, ends_at: datetime) -> list[Span]:
        """Blackouts and held slots this slot (with its buffer) would overlap."""
        held_until = ends_at + timedelta(minutes=self.policy.buffer_minutes)
        clashes = [b for b in self.blackouts if b.start < ends_at and b.end > starts_at]
        clashes += [h for h in self.holds if h.start < held_until and h.end > starts_at]
        return sorted(clashes, key=lambda s: s.start)

    def valid_ends(self, starts_at: datetime) -> list[datetime]:
        """The end times a form may offer for a slot starting at `starts_at`."""
        step = timedelta(minutes=self.policy.step_minutes)
        out = []
        ends_at = starts_at + timedelta(minutes=self.policy.min_minutes)
        while ends_at <= starts_at + timedelta(minutes=self.policy.max_minutes):
            if not self.problems(starts_at, ends_at) and not self.conflicts(starts_at, ends_at):
                out.append(ends_at)
            ends_at += step
        return out


def conflict_error(clashes: list[Span]) -> SlotConflict | SlotOffered:
    """The refusal of a slot that clashes: `slot_offered` while only a waitlist offer holds it."""
    if all(clash.kind == "offer" for clash in clashes):
        return SlotOffered(
            _("This time is offered to an enterprise on the waitlist; ask again when the offer ends."),
            {
                "conflicts": [
                    {"starts_at": clock.iso_utc(c.start), "ends_at": clock.iso_utc(c.end)} for c in clashes
                ]
            },
        )
    first = clashes[0]
    when = f"{clock.format_local(first.start)}–{clock.format_local(first.end, '%H:%M')}"
    if first.kind in ("booking", "offer"):
        message = _("This time clashes with a booking held from %(when)s.", when=when)
    else:
        message = _("This time clashes with a closure of the instrument, %(when)s.", when=when)
    conflicts = [
        {**c.as_dict(), "starts_at": clock.iso_utc(c.start), "ends_at": clock.iso_utc(c.end)} for c in clashes
    ]
    for item, clash in zip(conflicts, clashes, strict=True):
        item.pop("start")
        item.pop("end")
        if clash.kind != "booking" and clash.note:
            item["reason"] = clash.note
    return SlotConflict(message, {"conflicts": conflicts})


HELD_KINDS = ("booking", "offer")
# What the waitlist lets pass: an offer may start sooner than the usual notice (waitlist.offers).
NOTICE_RULES = ("too_late",)


def only_held(calendar: Calendar, starts_at: datetime, ends_at: datetime) -> bool:
    """Whether held time (bookings, waitlist offers) is all that keeps this slot from being asked for,
    so that waiting for it makes sense (issue 18); closures and broken rules do not free up."""
    clashes = calendar.conflicts(starts_at, ends_at)
    problems = [p for p in calendar.problems(starts_at, ends_at) if p.rule not in NOTICE_RULES]
    return bool(clashes) and not problems and all(c.kind in HELD_KINDS for c in clashes)


def period_to_wait_for(
    calendar: Calendar,
    starts_at: datetime,
    chosen_end: str | None,
    still_free: bool,
    refusal: ServiceError | None,
) -> tuple[datetime, datetime] | None:
    """Issue 18: the period a booking form offers to wait for on the waitlist, when held time is what
    refused the request (or took the start since the page was shown); None when the start is still
    free, or a rule or a closure stands in the way. Without a chosen end, the shortest booking."""
    try:
        ends_at = clock.parse_iso(chosen_end or "")
    except ValueError:
        ends_at = starts_at + timedelta(minutes=calendar.policy.min_minutes)
    if refusal is not None:
        clashes = refusal.details.get("conflicts", [])
        held = isinstance(refusal, SlotOffered) or (
            isinstance(refusal, SlotConflict) and all(c.get("kind", "booking") in HELD_KINDS for c in clashes)
        )
    else:
        held = not still_free and only_held(calendar, starts_at, ends_at)
    return (starts_at, ends_at) if held else None


def next_free_time(instrument: Instrument, days: int = 14) -> datetime | None:
    """When the instrument can next be booked for its shortest slot (live, never cached)."""
    now = clock.utcnow()
    calendar = Calendar.load(instrument, now, now + timedelta(days=days))
    if not calendar.instrument_is_bookable():
        return None
    step = timedelta(minutes=calendar.policy.step_minutes)
    for span in calendar.availability()["free"]:
        start = _ceil_to_grid(span.start, calendar.policy.step_minutes)
        while start < span.end:
            if calendar.valid_ends(start):
                return start
            start += step
    return None


def opening_week(instrument: Instrument) -> tuple[date, datetime | None]:
    """Where a calendar opens when no week is asked for: a day of the week of the next free time (else
    today), and that time (None when nothing is free in the next two weeks)."""
    free = next_free_time(instrument)
    return (clock.to_local(free).date() if free else clock.local_today()), free


def _ceil_to_grid(moment: datetime, step_minutes: int) -> datetime:
    local = clock.to_local(moment).replace(second=0, microsecond=0)
    if local < clock.to_local(moment):
        local += timedelta(minutes=1)
    extra = (local.hour * 60 + local.minute) % step_minutes
    if extra:
        local += timedelta(minutes=step_minutes - extra)
    return local.astimezone(moment.tzinfo)


# --- the week view ------------------------------------------------------------------------------


@dataclass
class Cell:
    start: datetime
    status: str  # free | held | closed | maintenance | closure | past
    bookable: bool = False


@dataclass
class WeekView:
    days: list[date]
    times: list[str]
    rows: list[list[Cell]]
    availability: dict[str, list[Span]]
    first_day: date

    @property
    def previous_week(self) -> date:
        return self.first_day - timedelta(days=7)

    @property
    def next_week(self) -> date:
        return self.first_day + timedelta(days=7)


def week_view(instrument: Instrument, any_day: date, now: datetime | None = None) -> WeekView:
    """Free, held and closed time of one week (Monday to Sunday, Beijing time) on the policy's grid."""
    now = now or clock.utcnow()
    first = clock.week_start(any_day)
    start = clock.local_datetime_to_utc(first, datetime.min.time())
    end = clock.local_datetime_to_utc(first + timedelta(days=7), datetime.min.time())
    calendar = Calendar.load(instrument, start, end + timedelta(days=1), now)
    availability = calendar.availability()
    step = calendar.policy.step_minutes
    hours = instrument.opening_hours
    first_minute = min((h.opens_at.hour * 60 + h.opens_at.minute for h in hours), default=8 * 60)
    last_minute = max((h.closes_at.hour * 60 + h.closes_at.minute for h in hours), default=18 * 60)
    first_minute -= first_minute % step
    days = [first + timedelta(days=i) for i in range(7)]
    rows, times = [], []
    for minute in range(first_minute, last_minute, step):
        times.append(f"{minute // 60:02d}:{minute % 60:02d}")
        row = []
        for day in days:
            cell_start = clock.local_datetime_to_utc(day, datetime.min.time()) + timedelta(minutes=minute)
            row.append(_cell(calendar, availability, cell_start, now))
        rows.append(row)
    week = {k: [s for s in v if s.start < end] for k, v in availability.items()}
    return WeekView(days, times, rows, week, first)


def _cell(calendar: Calendar, availability: dict[str, list[Span]], start: datetime, now: datetime) -> Cell:
    if start < now:
        return Cell(start, "past")
    for status in ("held", "free"):
        if any(s.start <= start < s.end for s in availability[status]):
            bookable = status == "free" and bool(calendar.valid_ends(start))
            return Cell(start, status, bookable)
    kind = next((s.kind for s in availability["closed"] if s.start <= start < s.end), "closed")
    return Cell(start, kind)


def record_extras(instrument: Instrument) -> dict[str, Any]:
    """What an instrument's catalogue page shows of booking: whether and how it can be booked, and when
    next (connected to portal.catalog.signals.instrument_shown: the catalogue does not import booking)."""
    return {
        "policy": policy_for(instrument),
        "bookable": instrument.status in BOOKABLE_STATUSES,
        "next_free": next_free_time(instrument),
    }
