"""Dashboard pages for reviewers, finance and administrators, and the public network page."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from portal.core import clock
from portal.core.charts import Series, bar_chart, hbar_chart
from portal.core.languages import COUNTY_NAMES
from portal.core.permissions import Role, role_required
from portal.dashboard import services
from portal.finance.services import MONTH, month_of
from portal.vouchers.labels import fund_labels

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")
public = Blueprint("network", __name__, url_prefix="/network")
BUREAU = (Role.REVIEWER, Role.FINANCE, Role.ADMIN)


def _period() -> tuple[services.Period, str | None, list[str]]:
    """The months and county asked for; anything malformed falls back to this year so far."""
    this_month = month_of(clock.utcnow())
    month_from = request.args.get("month_from", "")
    month_to = request.args.get("month_to", "")
    problems = []
    if month_from and not MONTH.match(month_from):
        problems.append(_("A month looks like 2026-11."))
    if month_to and not MONTH.match(month_to):
        problems.append(_("A month looks like 2026-11."))
    if not MONTH.match(month_to):
        month_to = this_month
    if not MONTH.match(month_from):
        month_from = month_to[:4] + "-01"
    if month_from > month_to:
        month_from, month_to = month_to, month_from
    county = request.args.get("county") or None
    if county and county not in current_app.config["COUNTIES"]:
        problems.append(_("Unknown county or district."))
        county = None
    return services.Period(month_from, month_to), county, problems


@bp.route("/")
@role_required(*BUREAU)
def index() -> ResponseReturnValue:
    """The network's figures for a period and county, with the change from the period before."""
    period, county, problems = _period()
    return render_template(
        "dashboard/index.html",
        counties=current_app.config["COUNTIES"],
        problems=problems,
        change=services.change,
        **_dashboard(period, county),
    )


def _dashboard(period: services.Period, county: str | None) -> dict:
    """Every figure and chart of the page: a few queries over the tallies, so nothing is cached and a
    change shows as soon as its tally is recounted."""
    now, before = services.figures(period, county), services.figures(period.previous(), county)
    year = int(period.month_to[:4])
    plan = services.budget(year)
    burn = services.burn_down(year, clock.local_today(), county)
    use = services.utilisation(period, county)
    labels = fund_labels()
    yuan = [Series(labels.get(name, name), [v / 100 for v in series]) for name, series in burn.funds.items()]
    lines = [
        Series(_("Forecast to year end"), [v / 100 for v in burn.forecast]),
        Series(_("Approved so far"), [v / 100 for v in burn.cumulative]),
        Series(_("Budget"), [burn.budget_fen / 100] * 12),
    ]
    charts = {
        "burn": bar_chart(
            [m[5:] for m in burn.months],
            yuan,
            lines=lines,
            title=_("Subsidy by month and fund"),
            lines_on_right_axis=True,  # the budget and running totals dwarf a month's bars
        ),
        "utilisation": bar_chart(
            [label for label, _n in use.buckets],
            [Series(_("Instruments"), [n for _label, n in use.buckets])],
            title=_("Instruments by utilisation"),
        ),
        "county": hbar_chart(
            [
                (str(COUNTY_NAMES.get(name, name)), value)
                for name, value in services.bookings_by_county(period, county)
            ],
            title=_("Bookings by county"),
        ),
        "category": hbar_chart(
            services.bookings_by_category(period, county), title=_("Bookings by category")
        ),
        "kind": hbar_chart(
            [(k, v / 100) for k, v in services.subsidies_by_enterprise_kind(period, county)],
            title=_("Subsidy by enterprise type"),
        ),
    }
    return {
        "period": period,
        "previous": period.previous(),
        "county": county,
        "now": now,
        "before": before,
        "plan": plan,
        "burn": burn,
        "use": use,
        "charts": charts,
        "as_of": clock.utcnow(),
    }


@public.route("/")
def network() -> ResponseReturnValue:
    """The network in numbers, and its most used instruments: for everyone, no login."""
    today = clock.local_today()
    # Anyone may ask, as often as they like: a handful of reads of the tallies, no raw bookings.
    return render_template(
        "dashboard/public.html", headline=services.public_headline(today), used=services.most_used(today)
    )
