"""What a refused voucher-side action says, word for word (in English; the Chinese come from the
catalogue), and which form field it marks: people act on these texts."""

from __future__ import annotations

import pytest
from flask_babel import force_locale

from portal.core.errors import ServiceError, ValidationFailed
from portal.core.permissions import Role
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
