"""Catalogue forms: the search (a GET form: its values live in the URL, so searches can be shared), and
an instrument's catalogue entry and photos as its providers keep them."""

from __future__ import annotations

from flask import current_app
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from werkzeug.datastructures import MultiDict
from wtforms import (
    DecimalField,
    HiddenField,
    IntegerField,
    SearchField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]  # WTForms 3.3; the stubs are 3.2
from wtforms.fields.core import UnboundField
from wtforms.validators import Optional

from portal.catalog.editing import CAPTION_LENGTH, current_value
from portal.catalog.importer import COLUMN_OF
from portal.catalog.models import (
    ACQUISITIONS,
    SHARING_LABELS,
    STATUS_LABELS,
    Instrument,
    InstrumentStatus,
    SharingMode,
)
from portal.catalog.services import FEE_UNITS, SORTS, InstrumentQuery, category_tree, institution_summaries
from portal.core.errors import ValidationFailed
from portal.core.forms import NumberRange, options, show_service_errors, yuan_amount
from portal.core.languages import county_choices
from portal.core.money import fen_to_wan, fen_to_yuan, yuan_to_fen

PER_PAGE_CHOICES = (20, 50, 100)
# What an empty search form sends: the same search as no parameter at all.
DEFAULT_ARGS = {"fee_unit": "hour", "sort": "relevance", "per_page": str(PER_PAGE_CHOICES[0]), "page": "1"}


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
    fee_unit = SelectField(_l("Fee"), coerce=str, validators=[Optional()])
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
        self.category.choices = [SelectChoice("", _l("Any")), *category_choices(_l("All of %(group)s"))]
        self.status.choices = options(any_choice + [(s.value, STATUS_LABELS[s]) for s in InstrumentStatus])
        self.county.choices = options(any_choice + county_choices(current_app.config["COUNTIES"]))
        self.sort.choices = options(SORTS.items())
        self.fee_unit.choices = options(FEE_UNITS.items())
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
            "fee_unit": "" if query.fee_unit == "hour" else query.fee_unit,
            "sort": "" if query.sort == "relevance" else query.sort,
            "per_page": "" if query.per_page == PER_PAGE_CHOICES[0] else str(query.per_page),
            "page": "" if query.page == 1 else str(query.page),
        }
        return {name: value for name, value in sorted(values.items()) if value}

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
            # (`is not None` again: what ok() checks, said so that the type checker sees it.)
            fee_min_fen=yuan_to_fen(self.fee_min.data)
            if ok("fee_min") and self.fee_min.data is not None
            else None,
            fee_max_fen=yuan_to_fen(self.fee_max.data)
            if ok("fee_max") and self.fee_max.data is not None
            else None,
            fee_unit=self.fee_unit.data if ok("fee_unit") else "hour",
            sort=self.sort.data if ok("sort") else "relevance",
            page=self.page.data if ok("page") and self.page.data is not None else 1,
            per_page=int(self.per_page.data) if ok("per_page") else PER_PAGE_CHOICES[0],
        )


def _yuan_text(fen: int | None) -> str:
    """An amount in yuan as few characters as say it exactly ("100", "99.5")."""
    if fen is None:
        return ""
    return format(fen_to_yuan(fen).normalize(), "f")


def _label(category: dict, english: bool) -> str:
    return category["name_en"] if english else category["name"]


def category_choices(parent_label) -> list[SelectChoice]:
    """Every category grouped under its first level; `parent_label` names the first level's own entry."""
    english = str(get_locale()) == "en"
    choices = []
    for parent in category_tree():
        group = f"{parent['code']} {_label(parent, english)}"
        choices.append(SelectChoice(parent["code"], parent_label % {"group": group}, optgroup=group))
        choices.extend(
            SelectChoice(child["code"], f"{child['code']} {_label(child, english)}", optgroup=group)
            for child in parent["children"]
        )
    return choices


def _text(label, *, multiline: bool = False, **render_kw) -> StringField:
    """A field whose value the service checks by the catalogue's rules (only the length is shown here)."""
    field_class = TextAreaField if multiline else StringField
    return field_class(label, render_kw=render_kw or None)


# Form fields whose name says the unit the person types (the record keeps fen).
AMOUNT_FIELDS = {
    "original_value_fen": ("original_value", fen_to_wan),
    "fee_per_hour_fen": ("fee_per_hour", fen_to_yuan),
    "fee_per_sample_fen": ("fee_per_sample", fen_to_yuan),
}


class InstrumentForm(FlaskForm):
    """An instrument's catalogue entry, typed as in the catalogue file (amounts in yuan and 万元)."""

    name = _text(_l("Instrument name"), maxlength=COLUMN_OF["name"].max_length)
    name_en = _text(_l("English name"), maxlength=COLUMN_OF["name_en"].max_length)
    category = SelectField(_l("Category"), validate_choice=False)
    model = _text(_l("Model"), maxlength=COLUMN_OF["model"].max_length)
    manufacturer = _text(_l("Manufacturer"), maxlength=COLUMN_OF["manufacturer"].max_length)
    country_of_origin = _text(_l("Country of origin"), maxlength=COLUMN_OF["country_of_origin"].max_length)
    original_value = _text(_l("Original value (10,000 yuan)"), inputmode="decimal")
    in_service_on = _text(_l("In service since"), type="date")
    county = SelectField(_l("County or district"), validate_choice=False)
    address = _text(_l("Address"), maxlength=COLUMN_OF["address"].max_length)
    status = SelectField(_l("Status"), validate_choice=False)
    sharing_mode = SelectField(_l("Sharing"), validate_choice=False)
    fee_per_hour = _text(_l("Fee per machine hour (yuan)"), inputmode="decimal")
    fee_per_sample = _text(_l("Fee per sample (yuan)"), inputmode="decimal")
    specs = _text(_l("Technical specifications"), multiline=True, rows=4)
    functions = _text(_l("Main functions"), multiline=True, rows=4)
    service_content = _text(_l("Services offered"), multiline=True, rows=4)
    operator_name = _text(_l("Operator"), maxlength=COLUMN_OF["operator_name"].max_length)
    operator_phone = _text(_l("Operator's phone"), inputmode="tel")
    # The national platform's fields (issue 19), in the catalogue file's words.
    acquisition = SelectField(_l("Acquired by"), validate_choice=False)
    funding_source = _text(_l("Main funding source"), maxlength=COLUMN_OF["funding_source"].max_length)
    subject_area = _text(_l("Subject area"), maxlength=COLUMN_OF["subject_area"].max_length)
    department = _text(_l("Department"), maxlength=COLUMN_OF["department"].max_length)
    user_requirements = _text(_l("User requirements"), multiline=True, rows=3)
    specialised = SelectField(
        _l("Specialised instrument (lower yearly norm of hours)"), validate_choice=False
    )
    customs_supervised = SelectField(_l("Under customs supervision"), validate_choice=False)
    customs_declaration_number = _text(
        _l("Customs declaration number"), maxlength=COLUMN_OF["customs_declaration_number"].max_length
    )
    customs_import_date = _text(_l("Import date"), type="date")
    customs_item_number = _text(_l("Item number"), maxlength=COLUMN_OF["customs_item_number"].max_length)
    # The stranded bookings the page has shown (a status change asks first; see booking.upkeep).
    acknowledged = HiddenField()
    submit = SubmitField(_l("Save"))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.category.choices = category_choices(_l("%(group)s (no finer category)"))
        self.county.choices = options(county_choices(current_app.config["COUNTIES"]))
        self.status.choices = options((s.value, STATUS_LABELS[s]) for s in InstrumentStatus)
        self.sharing_mode.choices = options((m.value, SHARING_LABELS[m]) for m in SharingMode)
        self.acquisition.choices = options([("", _l("Not given")), *((a, a) for a in ACQUISITIONS)])
        yes_no = [("否", _l("No")), ("是", _l("Yes"))]
        self.specialised.choices = options(yes_no)
        self.customs_supervised.choices = options(yes_no)

    def field_for(self, name: str):
        """The form field of a record field."""
        return getattr(self, AMOUNT_FIELDS[name][0] if name in AMOUNT_FIELDS else name)

    def fill(self, instrument: Instrument, fields: tuple[str, ...]) -> None:
        """Show the record as it is, in the units the form is typed in."""
        for name in fields:
            value = current_value(instrument, name)
            if name in AMOUNT_FIELDS and value is not None:
                value = AMOUNT_FIELDS[name][1](value)
            if isinstance(value, bool):
                value = "是" if value else "否"  # as the file writes it
            self.field_for(name).data = "" if value is None else str(getattr(value, "value", value))

    def labels(self, fields: tuple[str, ...]) -> dict[str, str]:
        return {name: self.field_for(name).label.text for name in fields}

    def values(self, fields: tuple[str, ...]) -> dict[str, str]:
        """The typed text of each field, by the record's field names."""
        return {name: self.field_for(name).data or "" for name in fields}

    def acknowledged_ids(self) -> list[int]:
        return [int(n) for n in (self.acknowledged.data or "").split(",") if n.isdigit()]

    def show_errors(self, error: ValidationFailed) -> None:
        renamed = {self.field_for(name).name: message for name, message in error.fields.items()}
        show_service_errors(self, ValidationFailed(error.message, renamed))


class PhotoForm(FlaskForm):
    file = FileField(
        _l("Photo (JPEG, PNG or WebP)"),
        validators=[FileRequired(_l("Choose a photo to upload."))],
        render_kw={"accept": "image/jpeg,image/png,image/webp"},
    )
    caption = StringField(
        _l("Caption (describes the photo for those who cannot see it)"),
        render_kw={"maxlength": CAPTION_LENGTH},
    )
    submit = SubmitField(_l("Upload photo"))
