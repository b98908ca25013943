"""Voucher schemes: one per year, with its funds, caps and rules (set up by administrators)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from portal.accounts.models import User
from portal.core import audit, clock
from portal.core.database import serialized_write
from portal.core.errors import Forbidden, NotFound, ValidationFailed
from portal.core.locks import Rank, lock_where
from portal.core.money import format_yuan
from portal.core.permissions import Role
from portal.extensions import db
from portal.vouchers.labels import fund_labels
from portal.vouchers.models import DEFAULT_RANKING_WEIGHTS, Fund, FundCondition, RedemptionMode, Scheme


def current_scheme(today: date | None = None) -> Scheme | None:
    """The scheme of this year (Beijing time), or None before the bureau has set one up."""
    year = (today or clock.local_today()).year
    return db.session.scalar(select(Scheme).where(Scheme.year == year).options(selectinload(Scheme.funds)))


def scheme_of_year(year: int) -> Scheme | None:
    """The scheme of a calendar year, or None if none was set up."""
    return db.session.scalar(select(Scheme).where(Scheme.year == year))


def in_fund_order(names: Iterable[str]) -> list[str]:
    """These fund names once each, in the schemes' order (as `fund_labels`), any unknown after, sorted."""
    present = set(names)
    ordered = [name for name in fund_labels() if name in present]
    return ordered + sorted(present - set(ordered))


def require_scheme() -> Scheme:
    scheme = current_scheme()
    if scheme is None:
        raise NotFound(_("There is no voucher scheme for this year yet."))
    return scheme


@dataclass(frozen=True)
class FundSettings:
    name: str
    rate: Decimal
    condition: str
    budget_fen: int
    enterprise_capped: bool = False
    label: str = ""


def save_scheme(user: User, values: dict[str, Any], funds: list[FundSettings]) -> Scheme:
    """Create or update the scheme of a year (administrators); budgets never drop below what is committed."""
    if user.role is not Role.ADMIN:
        raise Forbidden(_("Only administrators set up voucher schemes."))
    fields: dict[str, str] = {}
    if values["service_window_start"] > values["service_window_end"]:
        fields["service_window_end"] = _("The window ends before it starts.")
    for settings in funds:
        if not Decimal(0) <= settings.rate <= Decimal(1):
            fields[f"{settings.name}_rate"] = _("A rate between 0 and 1, e.g. 0.60.")
    if values.get("ranking_weights") is not None:
        fields.update(_check_ranking_weights(values["ranking_weights"]))
    fields.update(_check_redemption(values))
    if fields:
        raise ValidationFailed(_("Please correct the marked fields."), fields)
    with serialized_write():
        scheme = next(iter(lock_where(Rank.SCHEME, Scheme, Scheme.year == values["year"])), None)
        before = None
        if scheme is None:
            scheme = Scheme(allocated_fen=0, **values)
            db.session.add(scheme)
            db.session.flush()
        else:
            before = _scheme_snapshot(scheme)
            for key, value in values.items():
                setattr(scheme, key, value)
        existing = {f.name: f for f in lock_where(Rank.FUNDS, Fund, Fund.scheme_id == scheme.id)}
        for position, settings in enumerate(funds):
            fund = existing.get(settings.name) or Fund(
                scheme_id=scheme.id, name=settings.name, committed_fen=0, paid_fen=0
            )
            if settings.budget_fen < fund.committed_fen:
                message = _(
                    "The budget cannot be below what is already committed (%(amount)s).",
                    amount=format_yuan(fund.committed_fen),
                )
                raise ValidationFailed(message, {f"{settings.name}_budget": message})
            fund.position, fund.rate = position, settings.rate
            fund.condition = FundCondition(settings.condition)
            fund.budget_fen, fund.enterprise_capped = settings.budget_fen, settings.enterprise_capped
            fund.label = settings.label
            db.session.add(fund)
        db.session.flush()
        db.session.refresh(scheme)
        audit.record(
            "scheme.saved",
            "scheme",
            scheme.year,
            before=before,
            after=_scheme_snapshot(scheme),
            actor_id=user.id,
        )
        db.session.commit()
    return scheme


def _check_ranking_weights(weights: dict[str, str]) -> dict[str, str]:
    """Field errors of a set of ranking weights: each 0..1, and not all zero (nothing to rank by)."""
    fields: dict[str, str] = {}
    values: list[Decimal] = []
    for key in DEFAULT_RANKING_WEIGHTS:
        try:
            value = Decimal(str(weights.get(key, "0")))
        except ArithmeticError:
            value = Decimal(-1)
        if not value.is_finite() or not Decimal(0) <= value <= Decimal(1):
            fields[f"weight_{key}"] = _("A weight between 0 and 1, e.g. 0.25.")
        values.append(value)
    if not fields and not any(value > 0 for value in values):
        # No form field has this name, so the page shows it above the form.
        fields["ranking_weights"] = _("At least one ranking weight must be above 0.")
    return fields


def _check_redemption(values: dict[str, Any]) -> dict[str, str]:
    """Field errors of the redemption settings: one mode at least, of the known ones; the
    out-of-province rate 0..1 or None (no such service subsidised); 1..365 days to redeem."""
    fields: dict[str, str] = {}
    modes = values.get("redemption_modes", [RedemptionMode.REIMBURSEMENT.value])
    if not modes or any(mode not in set(RedemptionMode) for mode in modes):
        fields["redemption_modes"] = _("Choose at least one way.")
    rate = values.get("out_of_province_rate")
    if rate is not None and not (rate.is_finite() and Decimal(0) <= rate <= Decimal(1)):
        fields["out_of_province_rate"] = _("A rate between 0 and 1, e.g. 0.60.")
    if not 1 <= values.get("redemption_days", 30) <= 365:
        fields["redemption_days"] = _("Between 1 and 365 days.")
    return fields


def _scheme_snapshot(scheme: Scheme) -> dict[str, Any]:
    return {
        "enterprise_cap_fen": scheme.enterprise_cap_fen,
        "group_cap_fen": scheme.group_cap_fen,
        "four_eyes_threshold_fen": scheme.four_eyes_threshold_fen,
        "public_notice_days": scheme.public_notice_days,
        "voucher_validity_days": scheme.voucher_validity_days,
        "funds": {f.name: {"rate": str(f.rate), "budget_fen": f.budget_fen} for f in scheme.funds},
        "ranking_weights": scheme.ranking_weights,
        "metering_required": scheme.metering_required,
        "redemption_modes": list(scheme.redemption_modes or []),
        "out_of_province_rate": str(scheme.out_of_province_rate)
        if scheme.out_of_province_rate is not None
        else None,
        "redemption_days": scheme.redemption_days,
    }


def schemes_by_year() -> list[Scheme]:
    """Every yearly scheme with its funds, the latest year first."""
    return list(
        db.session.scalars(select(Scheme).options(selectinload(Scheme.funds)).order_by(Scheme.year.desc()))
    )


def _a_year_later(day: date) -> date:
    try:
        return day.replace(year=day.year + 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year + 1, day=28)


def copy_scheme_to_next_year(user: User, year: int) -> Scheme:
    """Make next year's scheme from this one: same funds, rates, budgets, caps and rules, dates a year on.

    Nothing is committed or paid in the new year yet; a year that already has a scheme is left alone.
    """
    if user.role is not Role.ADMIN:
        raise Forbidden(_("Only administrators set up voucher schemes."))
    source = db.session.scalar(select(Scheme).where(Scheme.year == year).options(selectinload(Scheme.funds)))
    if source is None:
        raise NotFound(_("There is no scheme for %(year)d.", year=year))
    target = year + 1
    exists = _("There is already a scheme for %(year)d; change it in its settings instead.", year=target)
    if not clock.plausible_year(target):
        raise ValidationFailed(_("Enter a date between 2000 and 2099."), {"year": _("Out of range.")})
    if db.session.scalar(select(Scheme.id).where(Scheme.year == target)):
        raise ValidationFailed(exists, {"year": exists})
    scheme = _next_year_copy(source, year, target)
    db.session.add(scheme)
    try:
        db.session.flush()
        audit.record(
            "scheme.copied",
            "scheme",
            target,
            after={"copied_from": year, **_scheme_snapshot(scheme)},
            actor_id=user.id,
        )
        db.session.commit()
    except IntegrityError:  # another administrator made it a moment ago
        db.session.rollback()
        raise ValidationFailed(exists, {"year": exists}) from None
    return scheme


def _next_year_copy(source: Scheme, year: int, target: int) -> Scheme:
    """A new scheme for `target` like `source`, its dates a year on and nothing committed or paid."""
    scheme = Scheme(
        year=target,
        name=source.name.replace(str(year), str(target))
        if str(year) in source.name
        else f"{source.name} {target}",
        enterprise_cap_fen=source.enterprise_cap_fen,
        group_cap_fen=source.group_cap_fen,
        voucher_validity_days=source.voucher_validity_days,
        service_window_start=_a_year_later(source.service_window_start),
        service_window_end=_a_year_later(source.service_window_end),
        public_notice_days=source.public_notice_days,
        four_eyes_threshold_fen=source.four_eyes_threshold_fen,
        excluded_service_types=list(source.excluded_service_types or []),
        metering_required=source.metering_required,
        redemption_modes=list(source.redemption_modes or []),
        out_of_province_rate=source.out_of_province_rate,
        redemption_days=source.redemption_days,
        ranking_weights=dict(source.ranking_weights) if source.ranking_weights is not None else None,
        allocated_fen=0,
    )
    scheme.funds = [
        Fund(
            name=fund.name,
            label=fund.label,
            position=fund.position,
            rate=fund.rate,
            condition=fund.condition,
            enterprise_capped=fund.enterprise_capped,
            budget_fen=fund.budget_fen,
            committed_fen=0,
            paid_fen=0,
        )
        for fund in source.funds
    ]
    return scheme
