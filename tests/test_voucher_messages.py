"""What a refused voucher-side action says, word for word (in English; the Chinese come from the
catalogue), and which form field it marks: people act on these texts."""

from __future__ import annotations

import pytest
from flask_babel import force_locale

from portal.core.errors import InvalidTransition, LimitExceeded, NotFound, ServiceError, ValidationFailed
from portal.core.permissions import Role
from portal.extensions import db
from portal.vouchers import applications as application_services
from portal.vouchers import claims as claim_services
from portal.vouchers import review
from tests.test_voucher_records import world_fixture  # noqa: F401


def refused(action, *args, error: type[ServiceError] = ValidationFailed, **kwargs) -> ServiceError:
    with force_locale("en"), pytest.raises(error) as raised:
        action(*args, **kwargs)
    return raised.value


@pytest.mark.parametrize("action", ["reject", "return"])
@pytest.mark.parametrize("comment", [None, "", "   "])
def test_turning_down_a_claim_or_an_application_needs_a_reason(world, make_user, action, comment):
    claim = claim_services.create_claim(world["holder"], world["voucher"].id, [world["record"].id])
    claim_services.submit_claim(world["holder"], claim.id)
    error = refused(getattr(review, f"{action}_claim"), world["reviewer"], claim.id, comment)
    assert (error.message, error.fields) == ("Please give a reason.", {"comment": "Required."})
    application = application_services.apply_for_voucher(make_user(Role.ENTERPRISE), 10_000_00, "计划")
    turn_down = getattr(application_services, f"{action}_application")
    error = refused(turn_down, world["reviewer"], application.id, comment=comment)
    assert (error.message, error.fields) == ("Please give a reason.", {"comment": "Required."})


# --- making, submitting and deleting a claim -----------------------------------------------------


def test_a_claim_is_refused_without_services_or_with_more_than_50(world):
    holder, voucher = world["holder"], world["voucher"].id
    for ids, text, field in (
        ([], "Choose at least one completed service.", "Required."),
        (list(range(1, 52)), "At most 50 services per claim.", "Too many."),
    ):
        error = refused(claim_services.create_claim, holder, voucher, ids)
        assert (error.message, error.fields) == (text, {"service_record_ids": field})
    # Fifty are allowed (these do not exist), and the same service twice counts once.
    error = refused(claim_services.preview_claim, holder, voucher, list(range(1, 51)), error=NotFound)
    assert error.message == "Some of these services are not your enterprise's."
    record = world["record"].id
    assert claim_services.preview_claim(holder, voucher, [record, record]).fee_fen == 10_000_00


def test_a_claim_takes_only_the_enterprises_own_voucher_and_services_of_one_provider(
    world, make_user, make_voucher, make_service, make_institution, make_instrument
):
    holder, voucher, record = world["holder"], world["voucher"].id, world["record"].id
    other = make_user(Role.ENTERPRISE)
    others_voucher = make_voucher(other, world["scheme"]).id
    error = refused(claim_services.create_claim, holder, others_voucher, [record], error=NotFound)
    assert error.message == "No such voucher."
    error = refused(claim_services.create_claim, holder, voucher, [make_service(other).id], error=NotFound)
    assert error.message == "Some of these services are not your enterprise's."
    elsewhere = make_service(holder, instrument=make_instrument(institution=make_institution()))
    error = refused(claim_services.create_claim, holder, voucher, [record, elsewhere.id])
    text = "One claim covers the services of one provider; make a claim per provider."
    assert (error.message, error.fields) == (text, {"service_record_ids": text})


def test_submitting_or_deleting_a_claim_in_the_wrong_state_says_what_can_be(world, make_user):
    holder = world["holder"]
    claim = claim_services.create_claim(holder, world["voucher"].id, [world["record"].id])
    stranger = make_user(Role.ENTERPRISE)
    assert (
        refused(claim_services.submit_claim, stranger, claim.id, error=NotFound).message == "No such claim."
    )
    assert (
        refused(claim_services.delete_draft, stranger, claim.id, error=NotFound).message == "No such claim."
    )
    claim_services.submit_claim(holder, claim.id)
    error = refused(claim_services.submit_claim, holder, claim.id, error=InvalidTransition)
    assert error.message == "Only a draft or a returned claim can be submitted."
    error = refused(claim_services.delete_draft, holder, claim.id, error=InvalidTransition)
    assert error.message == "Only a draft can be deleted."


def test_a_service_in_a_submitted_claim_cannot_be_submitted_in_another(world):
    holder, voucher, record = world["holder"], world["voucher"].id, world["record"].id
    first = claim_services.create_claim(holder, voucher, [record])
    second = claim_services.create_claim(holder, voucher, [record])
    claim_services.submit_claim(holder, first.id)
    error = refused(claim_services.submit_claim, holder, second.id, error=InvalidTransition)
    assert error.message == "Some of these services are already in another claim."
    assert error.details == {"check": "claimed_twice"}
    assert db.session.get(type(second), second.id).state.value == "draft"


def test_a_claim_with_nothing_left_to_claim_is_not_submitted(world):
    holder = world["holder"]
    claim = claim_services.create_claim(holder, world["voucher"].id, [world["record"].id])
    world["voucher"].balance_fen = 0  # spent by other claims since the draft was made
    db.session.commit()
    error = refused(claim_services.submit_claim, holder, claim.id, error=LimitExceeded)
    assert error.message == "Nothing is left to claim: the subsidy is bound by voucher_balance."
    assert error.details == {"limited_by": ["voucher_balance"]}
    assert db.session.get(type(claim), claim.id).state.value == "draft"
