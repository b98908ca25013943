"""The catalogue search form (a GET form: its values live in the URL, so searches can be shared)."""

from __future__ import annotations

from flask import current_app
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import DecimalField, IntegerField, SearchField, SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Optional

from portal.catalog.models import STATUS_LABELS, InstrumentStatus
from portal.catalog.services import SORTS, InstrumentQuery, category_tree, institution_summaries
from portal.core.forms import NumberRange, options, yuan_amount
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

    def to_query(self) -> InstrumentQuery:
        """The search these fields ask for; a field that failed validation is left out, not guessed."""
        errors = self.errors

        def ok(name: str) -> bool:
            # Blank as Optional() sees it: it stops validation (and its choice check) on whitespace too.
            data = getattr(self, name).data
            return name not in errors and (data.strip() if isinstance(data, str) else data) not in (None, "")

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
