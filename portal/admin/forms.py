"""Admin console forms."""

from __future__ import annotations

from flask import current_app
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, Length, Optional

from portal.accounts.models import (
    ENTERPRISE_KIND_LABELS,
    INSTITUTION_KIND_LABELS,
    VERIFICATION_LABELS,
    EnterpriseKind,
    InstitutionKind,
    VerificationState,
)
from portal.core.forms import options
from portal.core.languages import CHINESE, county_choices


class InstitutionForm(FlaskForm):
    name = StringField(
        _l("Institution name"),
        validators=[DataRequired(), Length(max=120)],
        description=_l(
            "Catalogue files name the host institution exactly like this (column %(column)s).",
            column=CHINESE % "依托单位",
        ),
    )
    uscc = StringField(
        _l("Unified social credit code"),
        validators=[DataRequired(), Length(max=30)],
        description=_l("18 characters, as printed on the certificate."),
    )
    kind = SelectField(_l("Kind"), validators=[DataRequired()])
    county = SelectField(_l("County or district"), validators=[DataRequired()])
    address = StringField(_l("Address"), validators=[Optional(), Length(max=200)])
    is_local = BooleanField(
        _l("Located in Liaocheng"),
        description=_l(
            "The city's top-up (Liaocheng's share of a voucher subsidy) is paid only for services of "
            "instruments whose host is located in Liaocheng. Untick this for a host elsewhere."
        ),
    )
    in_province = BooleanField(
        _l("Located in Shandong"),
        description=_l(
            "Untick this for a host outside the province: a voucher subsidises its services only on a "
            "claim with the enterprise's written justification, at the scheme's out-of-province rate, "
            "never the city's."
        ),
    )
    submit = SubmitField(_l("Save"))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.kind.choices = options((k.value, INSTITUTION_KIND_LABELS[k]) for k in InstitutionKind)
        counties = list(current_app.config["COUNTIES"])
        host = kwargs.get("obj")
        if host is not None and not host.in_province and host.county not in counties:
            counties.append(host.county)  # a host outside Shandong keeps its own place
        self.county.choices = options(county_choices(counties))


class SearchForm(FlaskForm):
    """A list's search box (GET: a search changes nothing and its URL can be shared)."""

    class Meta:
        csrf = False

    q = StringField(_l("Name or credit code"), validators=[Optional(), Length(max=120)])


class EnterpriseSearchForm(SearchForm):
    county = SelectField(_l("County or district"), validators=[Optional()])
    kind = SelectField(_l("Enterprise type"), validators=[Optional()])
    state = SelectField(_l("Enterprise verification"), validators=[Optional()])

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        every = [("", _l("All"))]
        self.county.choices = options(every + county_choices(current_app.config["COUNTIES"]))
        self.kind.choices = options(every + [(k.value, ENTERPRISE_KIND_LABELS[k]) for k in EnterpriseKind])
        self.state.choices = options(every + [(s.value, VERIFICATION_LABELS[s]) for s in VerificationState])


class UploadForm(FlaskForm):
    file = FileField(
        _l("Catalogue file (CSV UTF-8 or XLSX)"),
        validators=[FileRequired(_l("Choose a file."))],
        description=_l(
            "First row the headers of the catalogue format (%(headers)s …). Nothing is written until "
            "the dry run has found no problem and you apply it.",
            headers=CHINESE % "仪器编码, 仪器名称",
        ),
    )
    submit = SubmitField(_l("Upload and check (dry run)"))


class ActionForm(FlaskForm):
    """A button that changes something: the form only carries its CSRF token."""

    submit = SubmitField()


class SynonymForm(FlaskForm):
    term = StringField(
        _l("Short form"),
        validators=[DataRequired(), Length(max=40)],
        description=_l("One word, as people type it: %(example)s, XRD.", example=CHINESE % "扫描电镜"),
    )
    expansion = StringField(
        _l("Stands for"),
        validators=[DataRequired(), Length(max=80)],
        description=_l(
            "What a search for the short form also finds: %(example)s. Several words separated by a "
            "space must all be in a record, in any order: %(words)s.",
            example=CHINESE % "扫描电子显微镜",
            words=CHINESE % "液相色谱 质谱",
        ),
    )
    submit = SubmitField(_l("Add"))
