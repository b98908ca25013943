"""The catalogue search form (a GET form: its values live in the URL, so searches can be shared)."""

from __future__ import annotations

from flask import current_app
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from werkzeug.datastructures import MultiDict
from wtforms import DecimalField, IntegerField, SearchField, SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.fields.core import UnboundField
from wtforms.validators import Optional

from portal.catalog.models import STATUS_LABELS, InstrumentStatus
from portal.catalog.services import SORTS, InstrumentQuery, category_tree, institution_summaries
from portal.core.forms import NumberRange, options, yuan_amount
from portal.core.money import fen_to_yuan, yuan_to_fen

PER_PAGE_CHOICES = (20, 50, 100)
# What an empty search form sends: the same search as no parameter at all.
DEFAULT_ARGS = {"sort": "relevance", "per_page": str(PER_PAGE_CHOICES[0]), "page": "1"}


class SearchForm(FlaskForm):
    class Meta:
        csrf = False  # a search changes nothing; its URL should be shareable

    q = SearchField(_l("Keyword"), render_kw={"placeholder": _l("Name, model, code or manufacturer")})
    institution = SelectField(_l("Host institution"), coerce=str, validators=[Optional()])
    category = SelectField(_l("Category"), coerce=str, validators=[Optional()])
    status = SelectField(_l("Status"), coerce=str, validators=[Optional()])
    county = SelectField(_l("County or district"), coerce=str, validators=[Optional()])
    fee_min = DecimalField(_l("Fee from (yuan)"), places=2, validators=[Optional(), yuan_amount])
    fee_max = DecimalField(_l("Fee up to (yuan)"), places=2, validators=[Optional(), yuan_amount])
    sort = SelectField(_l("Sort by"), coerce=str, validators=[Optional()])
    per_page = SelectField(_l("Per page"), coerce=str, validators=[Optional()])
    page = IntegerField(validators=[Optional(), NumberRange(min=1, max=100000)])

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        any_choice = [("", _l("Any"))]
        hosts = sorted(institution_summaries(), key=lambda i: -i["instrument_count"])
        self.institution.choices = options(
            any_choice
            + [(i["id"], f"{i['name']} ({i['instrument_count']})") for i in hosts if i["instrument_count"]]
        )
        english = str(get_locale()) == "en"
        categories = [SelectChoice("", _l("Any"))]
        for parent in category_tree():
            group = f"{parent['code']} {_label(parent, english)}"
            categories.append(
                SelectChoice(parent["code"], _l("All of %(group)s", group=group), optgroup=group)
            )
            categories.extend(
                SelectChoice(child["code"], f"{child['code']} {_label(child, english)}", optgroup=group)
                for child in parent["children"]
            )
        self.category.choices = categories
        self.status.choices = options(any_choice + [(s.value, STATUS_LABELS[s]) for s in InstrumentStatus])
        self.county.choices = options(any_choice + [(c, c) for c in current_app.config["COUNTIES"]])
        self.sort.choices = options(SORTS.items())
        self.per_page.choices = options((n, n) for n in PER_PAGE_CHOICES)

    @classmethod
    def normalized_args(cls, args: MultiDict) -> dict[str, str] | None:
        """The URL's parameters without empty or default values (None: unknown or repeated ones).

        Cheap (no validation): the page cache is looked up with it before any work is done.
        """
        known = {name for name, value in vars(cls).items() if isinstance(value, UnboundField)}
        if any(name not in known for name in args) or any(len(v) > 1 for v in args.listvalues()):
            return None
        values = {
            name: " ".join(value.split()) if name == "q" else value.strip() for name, value in args.items()
        }
        return {k: v for k, v in sorted(values.items()) if v and DEFAULT_ARGS.get(k) != v}

    def canonical_args(self) -> dict[str, str]:
        """The search as the URL that names it: known fields only, in one order, without defaults.

        Equal searches get one URL (and one cache entry); anything else in the URL is dropped.
        """
        query = self.to_query()
        values = {
            "q": " ".join(query.q.split()),
            "institution": "" if query.institution_id is None else str(query.institution_id),
            "category": query.category or "",
            "status": query.status or "",
            "county": query.county or "",
            "fee_min": _yuan_text(query.fee_min_fen),
            "fee_max": _yuan_text(query.fee_max_fen),
            "sort": "" if query.sort == "relevance" else query.sort,
            "per_page": "" if query.per_page == PER_PAGE_CHOICES[0] else str(query.per_page),
            "page": "" if query.page == 1 else str(query.page),
        }
        return {name: value for name, value in sorted(values.items()) if value}

    def to_query(self) -> InstrumentQuery:
        """The search these fields ask for; a field that failed validation is left out, not guessed."""
        errors = self.errors

        def ok(name: str) -> bool:
            return name not in errors and getattr(self, name).data not in (None, "")

        return InstrumentQuery(
            q=(self.q.data or "") if "q" not in errors else "",
            institution_id=int(self.institution.data)
            if ok("institution") and self.institution.data.isdigit()
            else None,
            category=self.category.data if ok("category") else None,
            status=self.status.data if ok("status") else None,
            county=self.county.data if ok("county") else None,
            fee_min_fen=yuan_to_fen(self.fee_min.data) if ok("fee_min") else None,
            fee_max_fen=yuan_to_fen(self.fee_max.data) if ok("fee_max") else None,
            sort=self.sort.data if ok("sort") else "relevance",
            page=self.page.data if ok("page") else 1,
            per_page=int(self.per_page.data) if ok("per_page") else PER_PAGE_CHOICES[0],
        )


def _yuan_text(fen: int | None) -> str:
    """An amount in yuan as few characters as say it exactly ("100", "99.5")."""
    if fen is None:
        return ""
    return format(fen_to_yuan(fen).normalize(), "f")


def _label(category: dict, english: bool) -> str:
    return category["name_en"] if english else category["name"]
