"""The catalogue entry and photos of an instrument, kept by its providers (and administrators).

On the booking blueprint, next to the instrument's booking settings (/manage/instruments/<code>).
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user

from portal.booking import upkeep
from portal.booking.forms import ActionForm
from portal.booking.models import MODE_LABELS
from portal.booking.views import bp
from portal.catalog import editing
from portal.catalog.forms import InstrumentForm, PhotoForm
from portal.catalog.models import STATUS_LABELS, Instrument
from portal.core.errors import ValidationFailed
from portal.core.forms import show_service_errors
from portal.core.permissions import Role, role_required

EDITORS = (Role.PROVIDER, Role.ADMIN)


def _page(
    instrument: Instrument, form: InstrumentForm, photo_form: PhotoForm, *, fill: bool, stranded=None
) -> str:
    if fill:  # else the form shows what was typed
        form.fill(instrument, editing.EDITABLE_FIELDS)
    return render_template(
        "booking/record.html",
        instrument=instrument,
        form=form,
        photo_form=photo_form,
        stranded=stranded,
        new_status=STATUS_LABELS.get(form.status.data),
        mode_labels=MODE_LABELS,
        action_form=ActionForm(),
        max_photos=editing.MAX_PHOTOS,
        history=editing.recent_changes(instrument),
        field_labels=form.labels(editing.EDITABLE_FIELDS),
    )


@bp.route("/manage/instruments/<code>/record", methods=["GET", "POST"])
@role_required(*EDITORS)
def manage_record(code: str) -> ResponseReturnValue:
    """Every field of the catalogue entry; a status that stops bookings lists them before saving."""
    instrument = editing.editable_instrument(current_user, code)
    form = InstrumentForm()
    stranded = None
    if form.validate_on_submit():
        try:
            result = upkeep.update_instrument(
                current_user,
                code,
                form.values(editing.EDITABLE_FIELDS),
                typed=False,
                acknowledged=form.acknowledged_ids(),
            )
        except upkeep.ConfirmationNeeded as question:
            stranded = question.bookings
            form.acknowledged.data = ",".join(str(b.id) for b in stranded)
        except ValidationFailed as error:
            form.show_errors(error)
        else:
            if not result.changes:
                flash(_("Nothing was changed."), "info")
            elif result.told:
                told = len({b.enterprise_id for b in result.told})
                flash(
                    ngettext(
                        "Saved. %(num)d enterprise with confirmed bookings has been told.",
                        "Saved. %(num)d enterprises with confirmed bookings have been told.",
                        told,
                    ),
                    "success",
                )
            else:
                flash(_("Saved; the catalogue shows it now."), "success")
            return redirect(url_for("booking.manage_record", code=code))
    return _page(instrument, form, PhotoForm(prefix="photo"), fill=not form.is_submitted(), stranded=stranded)


@bp.route("/manage/instruments/<code>/photos", methods=["POST"])
@role_required(*EDITORS)
def manage_add_photo(code: str) -> ResponseReturnValue:
    """Upload a photo: checked by its content, re-encoded without its metadata, with a thumbnail."""
    instrument = editing.editable_instrument(current_user, code)
    photo_form = PhotoForm(prefix="photo")
    if photo_form.validate_on_submit():
        try:
            editing.add_photo(current_user, code, photo_form.file.data.stream, photo_form.caption.data)
        except ValidationFailed as error:
            show_service_errors(photo_form, error)
        else:
            flash(_("Photo added."), "success")
            return redirect(url_for("booking.manage_record", code=code, _anchor="photos"))
    return _page(instrument, InstrumentForm(formdata=None), photo_form, fill=True)


def _photo_action(code: str, photo_id: int, action, message: str) -> ResponseReturnValue:
    editing.editable_instrument(current_user, code)  # someone else's instrument is simply not found
    if not ActionForm().validate_on_submit():
        abort(400)
    action(current_user, code, photo_id)
    flash(message, "success")
    return redirect(url_for("booking.manage_record", code=code, _anchor="photos"))


@bp.route("/manage/instruments/<code>/photos/<int:photo_id>/main", methods=["POST"])
@role_required(*EDITORS)
def manage_main_photo(code: str, photo_id: int) -> ResponseReturnValue:
    """Show this photo first, in lists and on the record."""
    return _photo_action(code, photo_id, editing.choose_main_photo, _("This is now the main photo."))


@bp.route("/manage/instruments/<code>/photos/<int:photo_id>/delete", methods=["POST"])
@role_required(*EDITORS)
def manage_delete_photo(code: str, photo_id: int) -> ResponseReturnValue:
    """Remove a photo and its files."""
    return _photo_action(code, photo_id, editing.delete_photo, _("Photo deleted."))
