"""Catalogue imports by upload (administrators): the same check and import as the admin console's."""

from __future__ import annotations

import marshmallow as ma
from flask_babel import gettext as _
from flask_login import current_user
from flask_smorest.fields import Upload
from marshmallow import validate

from portal.api.bearer import BEARER, token_required
from portal.api.schemas import ApiBlueprint, ErrorSchema
from portal.catalog import imports
from portal.catalog.models import ImportState
from portal.catalog.upload_checks import ImportRefused, ImportTooLarge
from portal.core.errors import InvalidTransition
from portal.core.permissions import Role

blp = ApiBlueprint(
    "api_catalog_imports",
    __name__,
    description="Catalogue files in the network's format, checked and imported (administrators).",
    error_descriptions={409: "The catalogue changed while the file was applied; nothing was written"},
)


class ImportUploadSchema(ma.Schema):
    file = Upload(required=True, metadata={"description": "CSV (UTF-8) or XLSX, recognised by its content"})
    dry_run = ma.fields.String(
        load_default="true",
        validate=validate.OneOf(["true", "false"]),
        metadata={"description": "true: check and report, write nothing; false: import if there is no error"},
    )


class ImportErrorSchema(ma.Schema):
    row = ma.fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "Row in the file (1 = headers); null: the file"},
    )
    column = ma.fields.String(
        required=True, allow_none=True, metadata={"description": "Header; null: the row"}
    )
    message = ma.fields.String(required=True)
    code = ma.fields.String(metadata={"description": "import_too_large: a limit stopped the reading"})


class ImportResultSchema(ma.Schema):
    id = ma.fields.Integer(required=True, metadata={"description": "The import's entry in the history"})
    dry_run = ma.fields.Boolean(required=True)
    created = ma.fields.Integer(required=True)
    updated = ma.fields.Integer(required=True)
    unchanged = ma.fields.Integer(required=True)
    errors = ma.fields.List(
        ma.fields.Nested(ImportErrorSchema), required=True, metadata={"description": "Empty"}
    )


@blp.route("/catalog/imports", methods=["POST"])
@token_required(Role.ADMIN)  # before the upload is read: nobody else's file is even parsed
@blp.arguments(ImportUploadSchema, location="multipart")
@blp.response(200, ImportResultSchema)
@blp.alt_response(
    422,
    schema=ErrorSchema,
    description=(
        "The file has errors and nothing was written: details.errors lists each "
        "{row, column, message} (details.error_count how many there are in all). "
        "Code `import_too_large`: the file is beyond a limit (its size, the bytes an XLSX unpacks to, "
        "its parts or its rows; details.limit names the setting when the upload check found it)"
    ),
)
@blp.doc(security=BEARER)
@blp.errors(401, 403, 409)
def create_import(args: dict):
    """Check a catalogue file and, unless `dry_run` is true, import it (upsert by code): all or nothing."""
    dry_run = args["dry_run"] == "true"
    upload = args["file"]
    row = imports.import_now(current_user, upload.stream, upload.filename, dry_run=dry_run)
    if row.state is ImportState.INVALID:
        if any(error.get("code") == ImportTooLarge.code for error in row.errors):  # found while reading
            raise ImportTooLarge(row.errors[0]["message"], row.errors, error_count=row.error_count)
        raise ImportRefused(
            _("The file has errors; nothing was written."), row.errors, error_count=row.error_count
        )
    if row.state is ImportState.CHECKED and not dry_run:  # a concurrent edit: apply again
        raise InvalidTransition(row.note or _("Nothing was written; please send the file again."))
    if row.state is not (ImportState.CHECKED if dry_run else ImportState.APPLIED):
        raise RuntimeError(f"catalogue import {row.id} ended {row.state}: {row.note}")
    return {
        "id": row.id,
        "dry_run": dry_run,
        "created": row.created,
        "updated": row.updated,
        "unchanged": row.unchanged,
        "errors": [],
    }
