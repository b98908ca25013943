"""The catalogue search form (a GET form: its values live in the URL, so searches can be shared)."""

from __future__ import annotations

from flask import current_app
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import DecimalField, IntegerField, SearchField, SelectField
from wtforms.validators import NumberRange, Optional

from portal.catalog.models import STATUS_LABELS, InstrumentStatus
from portal.catalog.services import SORTS, InstrumentQuery, category_tree, institution_summaries
from portal.core.forms import yuan_amount
from portal.core.money import yuan_to_fen

PER_PAGE_CHOICES = (20, 50, 100)


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
        any_choice = ("", _l("Any"))
        hosts = sorted(institution_summaries(), key=lambda i: -i["instrument_count"])
        self.institution.choices = [any_choice] + [
            (str(i["id"]), f"{i['name']} ({i['instrument_count']})") for i in hosts if i["instrument_count"]
        ]
        english = str(get_locale()) == "en"
        category_choices: list = [any_choice]
        for parent in category_tree():
            category_choices.append((parent["code"], f"{parent['code']} {_label(parent, english)}"))
            category_choices.extend(
                (child["code"], f"\u2003{child['code']} {_label(child, english)}")
                for child in parent["children"]
            )
        self.category.choices = category_choices
        self.status.choices = [any_choice] + [(s.value, STATUS_LABELS[s]) for s in InstrumentStatus]
        self.county.choices = [any_choice] + [(c, c) for c in current_app.config["COUNTIES"]]
        self.sort.choices = list(SORTS.items())
        self.per_page.choices = [(str(n), str(n)) for n in PER_PAGE_CHOICES]

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


def _label(category: dict, english: bool) -> str:
    return category["name_en"] if english else category["name"]
