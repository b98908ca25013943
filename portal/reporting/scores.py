"""The yearly score sheet of an institution, with the national weights: operation 40, sharing
results 20, management 40 (REPORTING_SCORE_WEIGHTS). Each part is split into items; the portal fills
in the items it can compute from the year's records, a reviewer enters the others and signs. A
signed sheet is kept as it was (append-only, audited); signing again makes a new version.

Items (share of the part's weight, and how each is scored):
- operation / utilisation (all): the instruments' mean use of their yearly norm, each at most 100 %.
- sharing / external_hours (1/2): external service hours per instrument against the national average.
- sharing / sme_support (1/4): the share of external service hours that served SMEs.
- sharing / results (1/4): entered: typical results of the sharing (papers, products, awards).
- management / fees_published (1/4): the share of instruments with a published fee standard.
- management / records_complete (1/4): the share with their national fields filled in.
- management / rules (1/4): entered: the institution's rules for open sharing.
- management / openness (1/4): entered: information made public, staff and training.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from portal.accounts.models import Institution, User
from portal.core.errors import Forbidden, NotFound, ValidationFailed
from portal.core.permissions import Role
from portal.extensions import db
from portal.reporting import services, versions
from portal.reporting.hours import Scope
from portal.reporting.models import ScoreSheet

SIGNERS = (Role.REVIEWER, Role.ADMIN)
PARTS = ("operation", "sharing", "management")
CENT = Decimal("0.01")
ONE = Decimal(1)


@dataclass(frozen=True)
class Item:
    key: str
    part: str
    share: Decimal  # of the part's weight
    computed: bool
    label: Any


ITEMS = (
    Item("utilisation", "operation", ONE, True, _l("Use of the yearly norm of effective hours")),
    Item("external_hours", "sharing", Decimal("0.5"), True, _l("External service hours per instrument")),
    Item("sme_support", "sharing", Decimal("0.25"), True, _l("Share of external service hours for SMEs")),
    Item("results", "sharing", Decimal("0.25"), False, _l("Typical results of the sharing")),
    Item(
        "fees_published", "management", Decimal("0.25"), True, _l("Instruments with a published fee standard")
    ),
    Item(
        "records_complete",
        "management",
        Decimal("0.25"),
        True,
        _l("Instruments with complete national records"),
    ),
    Item("rules", "management", Decimal("0.25"), False, _l("Rules for open sharing")),
    Item("openness", "management", Decimal("0.25"), False, _l("Information made public, staff and training")),
)
PART_LABELS = {
    "operation": _l("Operation"),
    "sharing": _l("Sharing results"),
    "management": _l("Management"),
}


def weights() -> dict[str, Decimal]:
    """The parts' weights (REPORTING_SCORE_WEIGHTS, e.g. "40,20,40")."""
    values = [Decimal(v.strip()) for v in str(current_app.config["REPORTING_SCORE_WEIGHTS"]).split(",")]
    return dict(zip(PARTS, values, strict=True))


def maximum(item: Item) -> Decimal:
    return (weights()[item.part] * item.share).quantize(CENT)


def _ratio(numerator: Decimal, denominator: Decimal) -> Decimal:
    return min(numerator / denominator, ONE) if denominator else Decimal(0)


def computed_ratios(institution_id: int, year: int) -> dict[str, Decimal]:
    """Each computed item's fraction (0 to 1) from the year's records of the institution."""
    result = services.evaluate(Scope(institution_id), year)
    scores = result.instruments
    if not scores:
        return {item.key: Decimal(0) for item in ITEMS if item.computed}
    count = Decimal(len(scores))
    use = sum((_ratio(s.hours.effective_hours, Decimal(s.norm_hours)) for s in scores), Decimal(0)) / count
    external = sum((s.hours.external_service_hours for s in scores), Decimal(0))
    sme = sum((s.hours.sme_service_hours for s in scores), Decimal(0))
    priced = sum(
        1
        for s in scores
        if s.instrument.fee_per_hour_fen is not None or s.instrument.fee_per_sample_fen is not None
    )
    complete = sum(
        1
        for s in scores
        if all(
            (
                s.instrument.acquisition,
                s.instrument.funding_source,
                s.instrument.subject_area,
                s.instrument.department,
            )
        )
    )
    return {
        "utilisation": use,
        "external_hours": _ratio(external / count, Decimal(result.national_external_hours)),
        "sme_support": _ratio(sme, external),
        "fees_published": Decimal(priced) / count,
        "records_complete": Decimal(complete) / count,
    }


def computed_scores(institution_id: int, year: int) -> dict[str, Decimal]:
    ratios = computed_ratios(institution_id, year)
    return {
        item.key: (maximum(item) * ratios[item.key]).quantize(CENT, ROUND_HALF_UP)
        for item in ITEMS
        if item.computed
    }


def _require_signer(user: User) -> None:
    if user.role not in SIGNERS:
        raise Forbidden(_("Only the bureau's reviewers sign score sheets."))


def _entered(values: dict[str, str]) -> dict[str, Decimal]:
    problems: dict[str, str] = {}
    scores: dict[str, Decimal] = {}
    for item in ITEMS:
        if item.computed:
            continue
        text = (values.get(item.key) or "").strip()
        try:
            score = Decimal(text)
        except ArithmeticError:
            problems[item.key] = _("Enter a score from 0 to %(max)s.", max=maximum(item))
            continue
        if not score.is_finite() or not Decimal(0) <= score <= maximum(item) or score != score.quantize(CENT):
            problems[item.key] = _("Enter a score from 0 to %(max)s.", max=maximum(item))
        else:
            scores[item.key] = score
    if problems:
        raise ValidationFailed(_("Please correct the marked fields."), problems)
    return scores


def sheets(institution_id: int, year: int) -> list[ScoreSheet]:
    """The signed versions, the latest first."""
    return versions.versions_of(ScoreSheet, institution_id, year)


def sign(user: User, institution_id: int, year: int, entered: dict[str, str]) -> ScoreSheet:
    """Sign the sheet: the computed items as they stand, the entered ones as given (audited)."""
    _require_signer(user)
    if db.session.get(Institution, institution_id) is None:
        raise NotFound(_("There is no such institution."))
    scores: dict[str, Decimal] = {**computed_scores(institution_id, year), **_entered(entered)}
    total = sum(scores.values(), Decimal(0)).quantize(CENT)
    sheet = ScoreSheet(
        institution_id=institution_id,
        year=year,
        version=versions.next_version(ScoreSheet, institution_id, year),
        items={item.key: {"score": f"{scores[item.key]}", "computed": item.computed} for item in ITEMS},
        total=f"{total}",
        weights=str(current_app.config["REPORTING_SCORE_WEIGHTS"]),
        signed_by_id=user.id,
    )
    return versions.add_version(
        sheet,
        _("Another reviewer signed this sheet a moment ago; look again."),
        "score_sheet.signed",
        "score_sheet",
        {"version": sheet.version, "total": sheet.total},
        user.id,
    )


def sheet_rows(institution_id: int, year: int, sheet: ScoreSheet | None) -> list[list[Any]]:
    """The sheet as file rows: part, item, maximum, score, how it was scored; then the total."""
    computed = computed_scores(institution_id, year)
    rows: list[list[Any]] = [["部分", "指标", "满分", "得分", "来源"]]
    total = Decimal(0)
    for item in ITEMS:
        if sheet is not None:
            score = Decimal(sheet.items[item.key]["score"])
        else:
            score = computed.get(item.key, Decimal(0))
        total += score
        rows.append(
            [
                str(PART_LABELS[item.part]),
                str(item.label),
                maximum(item),
                score,
                "计算" if item.computed else "评审录入",
            ]
        )
    rows.append(
        ["合计", "", sum((maximum(i) for i in ITEMS), Decimal(0)), total, "已签署" if sheet else "未签署"]
    )
    return rows
