"""Hostile input against the JSON API: schemathesis generates requests from /api/v1/openapi.json.

Every operation is called with generated parameters and bodies (valid ones, deliberately invalid
ones, and valid ones with one text field replaced by NUL, control characters, an unpaired surrogate,
emoji or 10,000 characters), as an anonymous caller and with the bearer tokens of two enterprises,
a provider, a reviewer and finance, in a small world where most ids it tries exist. No answer may be
a 5xx, every status must be one the document lists for the operation, and every body must match the
schema the document gives for that status.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance
from werkzeug.test import Client

from portal.accounts.services import issue_api_token
from portal.booking import services as booking_services
from portal.booking.models import BookingState, FileKind
from portal.core.permissions import Role
from portal.vouchers import services as voucher_services
from tests.conftest import app_in_context
from tests.test_booking_files import PDF

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]

# derandomize: CI sees the same examples every run (they change only when this file does).
# No shrinking: a failure is reported as found, shrinking a run of HTTP calls can take minutes.
# Examples per operation and kind (valid, invalid, hostile text) keep ~35 operations quick.
settings.register_profile(
    "fuzz-api",
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
PROFILE = settings.get_profile("fuzz-api")
EXAMPLES = {"valid": 15, "invalid": 6, "hostile": 6}
# Text that has broken web applications: NUL (PostgreSQL refuses it), other control characters
# (XLSX refuses them), an unpaired surrogate (UTF-8 cannot encode it), right-to-left override and
# emoji, 10,000 characters, nothing at all. Every hostile example sends each of them.
HOSTILE_TEXT = [
    "仪器\x00编码",
    "\x0b\x0c\x1b[31m\x7f",
    "\ud800孤立",
    "\u202e右到左😀🧪",
    "测试" * 5000,
    "",
]


def isolated(app: Flask) -> Callable:
    """The app as a server runs it: every request in its own app context and database session."""

    def wsgi(environ: dict, start_response: Callable) -> Iterable[bytes]:
        with app.app_context():
            return app.wsgi_app(environ, start_response)

    return wsgi


def describe(error: BaseException) -> str:
    """A failure as text: schemathesis' own report (with a curl command), or each of several bugs."""
    if isinstance(error, BaseExceptionGroup) and not isinstance(error, FailureGroup):
        return "\n".join(describe(e) for e in error.exceptions)
    return f"{type(error).__name__}: {error}"


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[Flask]:
    """The usual test app without the login rate limit, which would answer most token requests."""
    yield from app_in_context(database_url, UPLOAD_FOLDER=str(tmp_path / "uploads"), RATELIMIT_ENABLED=False)


@pytest.fixture
def world(
    app,
    fake_clock,
    make_user,
    make_instrument,
    make_institution,
    make_scheme,
    make_voucher,
    make_service,
    make_booking,
) -> dict[str, Any]:
    """An object behind most ids the API takes (bookings in several states, service records with
    real files, a voucher, an application, a claim), and a bearer token per role."""
    host = make_institution(is_local=True)
    provider = make_user(Role.PROVIDER, institution=host)
    instrument = make_instrument(institution=host, fee_per_sample_fen=80_00)
    enterprise = make_user(Role.ENTERPRISE)
    applicant = make_user(Role.ENTERPRISE)
    scheme = make_scheme()
    voucher = make_voucher(enterprise, scheme)
    start = datetime(2026, 12, 9, 1, 0, tzinfo=UTC)
    past = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    bookings = [
        make_booking(instrument, enterprise, start, start + timedelta(hours=1)),
        make_booking(
            instrument,
            enterprise,
            start + timedelta(hours=2),
            start + timedelta(hours=3),
            state=BookingState.CONFIRMED,
        ),
        make_booking(instrument, enterprise, past, past + timedelta(hours=1), state=BookingState.CONFIRMED),
        make_booking(instrument, enterprise),  # a sample request
    ]
    records = [make_service(enterprise, instrument=instrument, evidence=()) for _ in range(2)]
    files = [
        booking_services.attach_file(enterprise, record.id, kind, io.BytesIO(PDF), f"{kind.value}.pdf")
        for record in records
        for kind in (FileKind.CONTRACT, FileKind.INVOICE, FileKind.RECEIPT)
    ]
    application = voucher_services.apply_for_voucher(applicant, 50_000_00, "扩产检测")
    claim = voucher_services.create_claim(enterprise, voucher.id, [records[0].id])
    users = [enterprise, applicant, provider, make_user(Role.REVIEWER), make_user(Role.FINANCE)]
    return {
        "tokens": [None, *(issue_api_token(user)[0] for user in users)],
        "codes": [instrument.code],
        # Path ids by the collection they follow in the URL.
        "ids": {
            "bookings": [b.id for b in [*bookings, *(r.booking for r in records)]],
            "service-records": [r.id for r in records],
            "files": [f.id for f in files],
            "voucher-applications": [application.id, voucher.application_id],
            "vouchers": [voucher.id],
            "claims": [claim.id],
        },
    }


def encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def fuzz(operation, kind: str, app: Callable, known: dict[str, Any], statuses: dict) -> None:
    """Call one operation with generated requests of one kind; raise what the checks found."""
    mode = GenerationMode.NEGATIVE if kind == "invalid" else GenerationMode.POSITIVE

    @settings(PROFILE, max_examples=EXAMPLES[kind])
    @given(
        case=operation.as_strategy(generation_mode=mode),
        token=st.sampled_from(known["tokens"]),
        data=st.data(),
    )
    def call(case, token, data) -> None:
        path = case.path_parameters or {}
        # Mostly ids and codes that exist, so the checks get past "not found".
        collection = operation.path.split("/")[3]
        for name, ids in (("id", known["ids"].get(collection)), ("file_id", known["ids"]["files"])):
            if ids and isinstance(path.get(name), int) and data.draw(st.integers(0, 3)):
                path[name] = data.draw(st.sampled_from(ids))
        if "code" in path and data.draw(st.booleans()):
            path["code"] = data.draw(st.sampled_from(known["codes"]))
        if isinstance(case.body, dict) and "instrument_code" in case.body and data.draw(st.booleans()):
            case.body["instrument_code"] = data.draw(st.sampled_from(known["codes"]))
        headers = {"Authorization": f"Bearer {token}"} if token else None
        if kind != "hostile":
            response = case.call_and_validate(app=app, headers=headers, checks=CHECKS)
            statuses.setdefault(operation.label, set()).add(response.status_code)
            return
        # One text field at a time, so that the others stay valid and the text gets as far as it can.
        fields = [
            (location, name)
            for location, values in (("query", case.query), ("body", case.body))
            if isinstance(values, dict)
            for name, value in values.items()
            if isinstance(value, str)
        ]
        if not fields:
            return
        location, name = data.draw(st.sampled_from(fields))
        as_json = location == "body" and case.media_type == "application/json"
        for text in HOSTILE_TEXT:
            if not (as_json or encodable(text)):
                continue  # a query string or a form is UTF-8: only a JSON escape carries a surrogate
            query, body = dict(case.query or {}), case.body
            if location == "query":
                query[name] = text
            else:
                body = {**body, name: text}
            if as_json:
                # Sent as it is (schemathesis would check the body first, and cannot hold a surrogate).
                response = Client(app).open(
                    case.formatted_path,
                    method=case.method,
                    query_string=query,
                    headers=headers,
                    data=json.dumps(body),
                    content_type="application/json",
                )
                case.validate_response(response, checks=CHECKS)
            else:
                variant = case.derive(query=query)
                variant.body = body
                response = variant.call_and_validate(app=app, headers=headers, checks=CHECKS)
            statuses.setdefault(operation.label, set()).add(response.status_code)

    call()


def test_no_operation_answers_a_5xx_or_breaks_its_schema(app, world) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    wsgi = isolated(app)
    failures: list[str] = []
    statuses: dict[str, set[int]] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 35
    # Revoking the token a request is sent with ends the world's tokens: that operation goes last.
    operations.sort(key=lambda operation: operation.label == "DELETE /api/v1/tokens/current")

    for operation in operations:
        has_input = bool(operation.query or operation.body)
        # Invalid input needs something to be invalid: a query, a body or a numeric path segment.
        # Hostile text first, while the objects are still in the states that let it reach a query.
        kinds = ["hostile"] if has_input else []
        kinds.append("valid")
        if has_input or "{id}" in operation.path:
            kinds.append("invalid")
        for kind in kinds:
            try:
                fuzz(operation, kind, wsgi, world, statuses)
            except Unsatisfiable:
                continue  # no invalid variant could be sent; the valid run covered the operation
            except (Exception, BaseExceptionGroup) as error:  # collected: one run reports every operation
                failures.append(f"{operation.label} ({kind}): {describe(error)}")

    assert not failures, "\n\n".join(failures)
    # The run got past authentication and validation: most operations answered a success too.
    succeeded = {label for label, codes in statuses.items() if any(200 <= c < 300 for c in codes)}
    assert len(succeeded) >= len(operations) // 2, sorted(set(statuses) - succeeded)
