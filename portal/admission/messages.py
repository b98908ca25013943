"""What the admission notifications say (added to the notification centre's catalogue)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from portal.notifications.messages import MESSAGES

MESSAGES.update(
    {
        "admission.in_notice": (
            _l("Provider admission approved: public notice until %(notice_ends_on)s"),
            _l(
                "The bureau approved the admission of %(institution)s to the voucher scheme. It is in "
                "public notice until %(notice_ends_on)s; unless an objection is upheld, your services "
                "are eligible for vouchers from then on."
            ),
        ),
        "admission.returned": (
            _l("Provider admission returned for correction"),
            _l("The admission application of %(institution)s was returned for correction: %(reason)s"),
        ),
        "admission.rejected": (
            _l("Provider admission rejected"),
            _l("The admission of %(institution)s to the voucher scheme was rejected: %(reason)s"),
        ),
        "admission.admitted": (
            _l("Admitted to the voucher scheme"),
            _l(
                "The public notice has ended: %(institution)s is admitted as a service provider of the "
                "voucher scheme, and its services are eligible for vouchers."
            ),
        ),
        "admission.suspended": (
            _l("Provider admission suspended"),
            _l(
                "The admission of %(institution)s to the voucher scheme is suspended: %(reason)s. Its "
                "services are not eligible for vouchers until it is reinstated."
            ),
        ),
        "admission.reinstated": (
            _l("Provider admission reinstated"),
            _l(
                "The admission of %(institution)s to the voucher scheme is reinstated (%(reason)s): its "
                "services are eligible for vouchers again."
            ),
        ),
    }
)
