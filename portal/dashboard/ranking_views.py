"""The providers' yearly ranking pages and exports (on the dashboard blueprint)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from flask import current_app, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from portal.core import clock
from portal.core.exports import XLSX_MIMETYPE, XlsxBook, attachment, csv_text, neutralise
from portal.core.money import fen_to_yuan
from portal.core.permissions import Role, role_required
from portal.dashboard.ranking import LEVELS, RankRow, ranking, ranking_top, weights_for
from portal.dashboard.views import bp

BUREAU = (Role.REVIEWER, Role.FINANCE, Role.ADMIN)
# The page shows the top of the list; a 100,000-instrument table is for the export, not a browser.
PAGE_ROWS = 200
LEVEL_LABELS = {"institution": _l("Institutions"), "instrument": _l("Instruments")}
WEIGHT_LABELS = {
    "hours": _l("Service hours"),
    "samples": _l("Samples"),
    "fees": _l("Fees"),
    "enterprises": _l("Enterprises served"),
    "rating": _l("Average rating"),
}


@dataclass
class Query:
    year: int
    level: str
    county: str | None
    problems: list[str] = field(default_factory=list)

    def args(self) -> dict[str, Any]:
        """The parameters as a link to this same ranking carries them."""
        return {"year": self.year, "level": self.level, **({"county": self.county} if self.county else {})}


def _query() -> Query:
    """The year, level and county asked for; anything malformed falls back to its default, with a note."""
    query = Query(clock.local_today().year, "institution", None)
    year = request.args.get("year", "").strip()
    if year:
        if year.isdecimal() and 2000 <= int(year) <= 2100:  # isdigit would pass "²", which int() refuses
            query.year = int(year)
        else:
            query.problems.append(_("A year between 2000 and 2100, e.g. 2026."))
    level = request.args.get("level", "")
    if level in LEVELS:
        query.level = level
    elif level:
        query.problems.append(_("Rank institutions or instruments."))
    county = request.args.get("county") or None
    if county and county not in current_app.config["COUNTIES"]:
        query.problems.append(_("Unknown county or district."))
    else:
        query.county = county
    return query


# The endpoint is 'dashboard.ranking' (the dashboard's index links to it); the function name would
# shadow the ranking() it calls.
@bp.route("/ranking", endpoint="ranking")
@role_required(*BUREAU)
def ranking_page() -> ResponseReturnValue:
    """The ranking of a year with the weights in use, and links to its exports."""
    query = _query()
    weights = weights_for(query.year)
    rows, total = ranking_top(query.year, query.level, weights, query.county, PAGE_ROWS)
    return render_template(
        "dashboard/ranking.html",
        query=query,
        rows=rows,
        total=total,
        weights=weights,
        weight_labels=WEIGHT_LABELS,
        level_labels=LEVEL_LABELS,
        counties=current_app.config["COUNTIES"],
    )


def _headers(level: str) -> list[str]:
    names = [_("Rank"), _("Institution") if level == "institution" else _("Instrument")]
    if level == "instrument":
        names.append(_("Host institution"))
    return [
        *names,
        _("Service hours"),
        _("Samples"),
        _("Fees (yuan)"),
        _("Services"),
        _("Enterprises served"),
        _("Average rating"),
        _("Ratings"),
        _("Score"),
    ]


def _cells(row: RankRow, level: str) -> list[Any]:
    """A row as export cells: names neutralised (they are typed by people), numbers as numbers."""
    cells: list[Any] = [row.rank, neutralise(row.name)]
    if level == "instrument":
        cells.append(neutralise(row.institution or ""))
    return [
        *cells,
        row.hours,
        row.samples,
        fen_to_yuan(row.fees_fen),
        row.services,
        row.enterprises,
        row.rating,  # None for no ratings: an empty cell, not a zero
        row.ratings,
        row.score,
    ]


def _filename(query: Query, extension: str) -> str:
    # ASCII only: the county is Chinese and would need RFC 5987 quoting in the header.
    return f"ranking-{query.year}-{query.level}.{extension}"


@bp.route("/ranking.csv")
@role_required(*BUREAU)
def ranking_csv() -> ResponseReturnValue:
    """The whole ranking as CSV: UTF-8 with a BOM so that Excel shows the Chinese names."""
    query = _query()
    rows = ranking(query.year, query.level, None, query.county)
    text = csv_text([[neutralise(h) for h in _headers(query.level)], *(_cells(r, query.level) for r in rows)])
    return attachment(text, "text/csv", _filename(query, "csv"))


@bp.route("/ranking.xlsx")
@role_required(*BUREAU)
def ranking_xlsx() -> ResponseReturnValue:
    """The whole ranking as XLSX (constant memory), with the weights on a second sheet."""
    query = _query()
    weights = weights_for(query.year)
    rows = ranking(query.year, query.level, weights, query.county)
    buffer = io.BytesIO()
    book = XlsxBook(buffer)
    offset = 3 if query.level == "instrument" else 2  # first numeric column after the names
    formats = ["#,##0.00", "#,##0", "#,##0.00", "#,##0", "#,##0", "0.00", "#,##0", "0.0000"]
    numbers = {offset + index: number_format for index, number_format in enumerate(formats)}
    book.sheet(_("Ranking"), [_headers(query.level), *(_cells(row, query.level) for row in rows)], numbers)
    settings: list[list[Any]] = [
        [_("Setting"), _("Value")],  # a sheet's first row is its header
        [_("Year"), query.year],
        [_("County or district"), query.county or _("Any")],
        *([str(label), weights.get(key, Decimal(0))] for key, label in WEIGHT_LABELS.items()),
    ]
    book.sheet(_("Weights"), settings)
    book.close()
    return attachment(buffer.getvalue(), XLSX_MIMETYPE, _filename(query, "xlsx"))
