"""People and organisations: users with one role, the enterprises and institutions they act for."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from flask_babel import lazy_gettext as _l
from flask_login import UserMixin
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.core.audit import ACTION_LABELS, OBJECT_LABELS
from portal.core.clock import current_time
from portal.core.permissions import Role
from portal.core.types import UTCDateTime, str_enum
from portal.extensions import Model


class InstitutionKind(StrEnum):
    UNIVERSITY = "university"
    INSTITUTE = "institute"
    COMPANY = "company"


INSTITUTION_KIND_LABELS = {
    InstitutionKind.UNIVERSITY: _l("University or college"),
    InstitutionKind.INSTITUTE: _l("Research institute"),
    InstitutionKind.COMPANY: _l("Company"),
}


class EnterpriseKind(StrEnum):
    TECH_SME = "tech_sme"
    HIGH_TECH = "high_tech"
    MAKER_TEAM = "maker_team"
    OTHER = "other"


ENTERPRISE_KIND_LABELS = {
    EnterpriseKind.TECH_SME: _l("Tech SME"),
    EnterpriseKind.HIGH_TECH: _l("High-tech enterprise"),
    EnterpriseKind.MAKER_TEAM: _l("Maker team"),
    EnterpriseKind.OTHER: _l("Other"),
}


class VerificationState(StrEnum):
    PENDING = "pending"
    VERIFIED = "verified"
    REJECTED = "rejected"


VERIFICATION_LABELS = {
    VerificationState.PENDING: _l("Awaiting verification"),
    VerificationState.VERIFIED: _l("Verified"),
    VerificationState.REJECTED: _l("Rejected"),
}


ROLE_LABELS = {
    Role.ENTERPRISE: _l("Enterprise"),
    Role.PROVIDER: _l("Provider"),
    Role.REVIEWER: _l("Reviewer"),
    Role.FINANCE: _l("Finance"),
    Role.ADMIN: _l("Administrator"),
}

# What the audit log calls the objects of this area (the actions are named at the end of the module).
OBJECT_LABELS.update({"user": _l("User"), "enterprise": _l("Enterprise")})


class Institution(Model):
    """A host institution (university, institute or company) that owns networked instruments."""

    __tablename__ = "institutions"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    uscc: Mapped[str | None] = mapped_column(String(18), unique=True)
    kind: Mapped[InstitutionKind] = mapped_column(str_enum(InstitutionKind))
    county: Mapped[str] = mapped_column(String(20), index=True)
    address: Mapped[str | None] = mapped_column(String(200))
    # Whether the host sits in the city (drives the city top-up of vouchers).
    is_local: Mapped[bool] = mapped_column(Boolean, default=True)
    # Whether it is in Shandong: a service from outside is subsidised only with the enterprise's written
    # justification that no networked instrument in the province can do it, and never by the city.
    in_province: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # The actual controller group of a company host (related-party checks of voucher claims).
    controller_group: Mapped[str | None] = mapped_column(String(120), index=True)
    # Its admission to the voucher scheme as a service provider, mirroring its current admission
    # (portal.admission): "none" until it applies; only an "admitted" provider's services are eligible.
    admission: Mapped[str] = mapped_column(String(16), default="none", server_default="none")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)

    def __repr__(self) -> str:
        return f"<Institution {self.id} {self.name}>"


class Enterprise(Model):
    """A company or maker team that books services and claims subsidies."""

    __tablename__ = "enterprises"

    id: Mapped[int] = mapped_column(primary_key=True)
    uscc: Mapped[str] = mapped_column(String(18), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    kind: Mapped[EnterpriseKind] = mapped_column(str_enum(EnterpriseKind))
    county: Mapped[str] = mapped_column(String(20), index=True)
    verification_state: Mapped[VerificationState] = mapped_column(
        str_enum(VerificationState), default=VerificationState.PENDING, index=True
    )
    tech_sme_number: Mapped[str | None] = mapped_column(String(40))
    actual_controller: Mapped[str | None] = mapped_column(String(120))
    # Enterprises with the same actual controller share one group cap; the key is the normalised
    # controller (an enterprise without a known controller is a group of its own).
    controller_group: Mapped[str | None] = mapped_column(String(120), index=True)
    # False for a legacy credit code that fails the checksum: it needs a reviewer's override.
    uscc_checksum_ok: Mapped[bool] = mapped_column(Boolean, default=True)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)

    users: Mapped[list[User]] = relationship(back_populates="enterprise")

    @property
    def group_key(self) -> str:
        return self.controller_group or f"enterprise:{self.id}"

    def __repr__(self) -> str:
        return f"<Enterprise {self.id} {self.uscc}>"


class BankAccountState(StrEnum):
    PENDING = "pending"
    VERIFIED = "verified"
    SUPERSEDED = "superseded"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


BANK_ACCOUNT_STATE_LABELS = {
    BankAccountState.PENDING: _l("Awaiting verification"),
    BankAccountState.VERIFIED: _l("In effect"),
    BankAccountState.SUPERSEDED: _l("Replaced"),
    BankAccountState.REJECTED: _l("Rejected"),
    BankAccountState.WITHDRAWN: _l("Withdrawn"),
}


# Whom a subsidy is paid to: the enterprise (reimbursement) or the provider (redemption at payment).
PAYEE_ENTERPRISE, PAYEE_PROVIDER = "enterprise", "provider"
PAYEE_KIND_LABELS = {PAYEE_ENTERPRISE: _l("Enterprise"), PAYEE_PROVIDER: _l("Provider")}


class BankAccount(Model):
    """One version of the account a payee's subsidies are paid into (户名, 开户行, 账号): an
    enterprise's (reimbursement) or a provider institution's (redemption at payment), never both.

    Versions are never edited: a change is a new version, which takes effect only when a reviewer
    verifies it, so the history of who entered and who verified what is the table itself. Here, in
    accounts, finance reads it without going through the vouchers area.
    """

    __tablename__ = "bank_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    enterprise_id: Mapped[int | None] = mapped_column(ForeignKey("enterprises.id"), index=True)
    institution_id: Mapped[int | None] = mapped_column(ForeignKey("institutions.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    account_name: Mapped[str] = mapped_column(String(100))
    bank_name: Mapped[str] = mapped_column(String(100))
    # Digits only (entered with or without spaces); text, never a number: leading zeros matter.
    account_number: Mapped[str] = mapped_column(String(32))
    state: Mapped[BankAccountState] = mapped_column(
        str_enum(BankAccountState), default=BankAccountState.PENDING, index=True
    )
    entered_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Why it was rejected, or why a reviewer verified a name that differs from the payee's.
    reason: Mapped[str | None] = mapped_column(Text)
    # When a newer version replaced it (superseded or withdrawn).
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    enterprise: Mapped[Enterprise | None] = relationship()
    institution: Mapped[Institution | None] = relationship()
    entered_by: Mapped[User] = relationship(foreign_keys=[entered_by_id])
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id])

    __table_args__ = (
        CheckConstraint(
            "(enterprise_id IS NULL AND institution_id IS NOT NULL) "
            "OR (enterprise_id IS NOT NULL AND institution_id IS NULL)",
            name="one_payee",
        ),
        UniqueConstraint("enterprise_id", "version", name="uq_bank_accounts_enterprise_version"),
        UniqueConstraint("institution_id", "version", name="uq_bank_accounts_institution_version"),
        # One version waiting and one in effect per payee, whatever the concurrency.
        *(
            Index(
                f"uq_bank_accounts_{prefix}one_{state}",
                column,
                unique=True,
                sqlite_where=text(f"state = '{state}'"),
                postgresql_where=text(f"state = '{state}'"),
            )
            for prefix, column in (("", "enterprise_id"), ("institution_", "institution_id"))
            for state in ("pending", "verified")
        ),
    )

    @property
    def payee_kind(self) -> str:
        """ "provider" for an institution's account, "enterprise" for an enterprise's."""
        return PAYEE_PROVIDER if self.institution_id is not None else PAYEE_ENTERPRISE

    @property
    def payee_id(self) -> int:
        # (The check constraint sets exactly one of the two.)
        return self.institution_id if self.institution_id is not None else self.enterprise_id  # type: ignore[return-value]

    @property
    def payee(self) -> Enterprise | Institution:
        """The enterprise or institution the account belongs to."""
        return self.institution if self.institution_id is not None else self.enterprise  # type: ignore[return-value]

    @property
    def last_digits(self) -> str:
        """The last four digits: enough to recognise an account in a mail, too few to misuse it."""
        return self.account_number[-4:]

    @property
    def grouped_number(self) -> str:
        """The account number in groups of four, as banks print it."""
        return " ".join(self.account_number[i : i + 4] for i in range(0, len(self.account_number), 4))

    def __repr__(self) -> str:
        return f"<BankAccount {self.payee_kind} {self.payee_id} v{self.version} {self.state}>"


ACTION_LABELS.update(
    {
        "bank_account.submitted": _l("Bank account entered"),
        "bank_account.verified": _l("Bank account verified: in effect"),
        "bank_account.rejected": _l("Bank account rejected"),
        "bank_account.withdrawn": _l("Bank account withdrawn for a newer entry"),
        "bank_account.superseded": _l("Bank account replaced by a newer verified one"),
    }
)


class User(UserMixin, Model):
    """A person who logs in. One role; enterprise users act for an enterprise, providers for a host."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(40), unique=True)
    email: Mapped[str | None] = mapped_column(String(120), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(str_enum(Role), index=True)
    full_name: Mapped[str] = mapped_column(String(60), default="")
    phone: Mapped[str | None] = mapped_column(String(20))
    language: Mapped[str] = mapped_column(String(5), default="zh")
    enterprise_id: Mapped[int | None] = mapped_column(ForeignKey("enterprises.id"), index=True)
    institution_id: Mapped[int | None] = mapped_column(ForeignKey("institutions.id"), index=True)
    is_active_account: Mapped[bool] = mapped_column(Boolean, default=True)
    # When and by whom the account was deactivated (None while it is active): an account the bureau
    # deactivated is not the enterprise holder's to reactivate.
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deactivated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # The enterprise's account holder: the registrant, until they hand the role to a colleague. Only
    # the holder applies for vouchers, submits claims and changes the bank account; one per enterprise.
    is_holder: Mapped[bool] = mapped_column(Boolean, default=False)
    # A self-registered account until the link mailed to its address is opened: nobody signs in with it
    # (portal.accounts.registration), so registering someone else's address gets nowhere.
    awaiting_confirmation: Mapped[bool] = mapped_column(Boolean, default=False)
    # Bumped at logout, password change or reset and deactivation: every session cookie minted before
    # stops working.
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    email_notifications: Mapped[bool] = mapped_column(Boolean, default=True)
    # The secret in the URL of the user's private calendar feed; replaced when the user resets it.
    calendar_token: Mapped[str | None] = mapped_column(String(43), index=True, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    enterprise: Mapped[Enterprise | None] = relationship(back_populates="users")
    institution: Mapped[Institution | None] = relationship()
    deactivated_by: Mapped[User | None] = relationship(remote_side=[id])

    __table_args__ = (
        CheckConstraint(
            "role != 'enterprise' OR enterprise_id IS NOT NULL", name="enterprise_user_has_enterprise"
        ),
        CheckConstraint(
            "role != 'provider' OR institution_id IS NOT NULL", name="provider_user_has_institution"
        ),
        # Usernames are unique regardless of case ("Admin" cannot shadow "admin").
        Index("uq_users_username_lower", text("lower(username)"), unique=True),
        CheckConstraint("NOT is_holder OR role = 'enterprise'", name="holder_is_enterprise_user"),
        # At most one holder per enterprise, whatever the concurrency of a hand-over.
        Index(
            "uq_users_enterprise_holder",
            "enterprise_id",
            unique=True,
            sqlite_where=text("is_holder"),
            postgresql_where=text("is_holder"),
        ),
    )

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return self.is_active_account and not self.awaiting_confirmation

    def get_id(self) -> str:
        return f"{self.id}:{self.session_version}"

    def __repr__(self) -> str:
        return f"<User {self.id} {self.username} {self.role}>"


class ApiToken(Model):
    """A bearer token for the JSON API; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()

    def __repr__(self) -> str:
        return f"<ApiToken {self.id} user={self.user_id}>"


class TokenPurpose(StrEnum):
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a purpose, not a password
    WELCOME = "welcome"  # an administrator made the account: its owner chooses the first password
    EMAIL_CHANGE = "email_change"
    REGISTRATION = "registration"  # confirms a self-registered account's address and activates it


TOKEN_PURPOSE_LABELS = {
    TokenPurpose.PASSWORD_RESET: _l("Password reset"),
    TokenPurpose.WELCOME: _l("First password"),
    TokenPurpose.EMAIL_CHANGE: _l("New e-mail address"),
    TokenPurpose.REGISTRATION: _l("Registration"),
}


class AccountToken(Model):
    """A one-time link of a user's account sent by e-mail; single use, expiring.

    Only the SHA-256 of the link's secret is stored; the secret itself is derived from SECRET_KEY and
    the row's salt when the mail is built (portal.accounts.tokens), so it is never readable from the
    database, not even from the outbox.
    """

    __tablename__ = "account_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[TokenPurpose] = mapped_column(str_enum(TokenPurpose))
    # The new address of an e-mail change (it becomes the user's only when the link is opened).
    email: Mapped[str | None] = mapped_column(String(120))
    salt: Mapped[str] = mapped_column(String(32))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set when the link is used, or when a newer link or a password change makes it void.
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()

    def __repr__(self) -> str:
        return f"<AccountToken {self.id} {self.purpose} user={self.user_id}>"


class InvitationState(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REVOKED = "revoked"
    EXPIRED = "expired"


INVITATION_STATE_LABELS = {
    InvitationState.PENDING: _l("Waiting for an answer"),
    InvitationState.ACCEPTED: _l("Accepted"),
    InvitationState.REVOKED: _l("Withdrawn"),
    InvitationState.EXPIRED: _l("Expired"),
}


class Invitation(Model):
    """The enterprise holder's invitation of a colleague, by e-mail; single use, expiring.

    The link's secret is stored only as its SHA-256, as for AccountToken.
    """

    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"), index=True)
    email: Mapped[str] = mapped_column(String(120))
    invited_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    salt: Mapped[str] = mapped_column(String(32))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The account the invitation created.
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    enterprise: Mapped[Enterprise] = relationship()
    invited_by: Mapped[User] = relationship(foreign_keys=[invited_by_id])
    user: Mapped[User | None] = relationship(foreign_keys=[user_id])

    def state(self, now: datetime) -> InvitationState:
        if self.accepted_at is not None:
            return InvitationState.ACCEPTED
        if self.revoked_at is not None:
            return InvitationState.REVOKED
        return InvitationState.PENDING if self.expires_at > now else InvitationState.EXPIRED

    def __repr__(self) -> str:
        return f"<Invitation {self.id} enterprise={self.enterprise_id}>"


OBJECT_LABELS.update(
    {
        "institution": _l("Host institution"),
        "bank_account": _l("Bank account"),
        "invitation": _l("Invitation"),
    }
)
ACTION_LABELS.update(
    {
        "enterprise.registered": _l("Enterprise registered"),
        "user.registration_confirmed": _l("Registration confirmed by e-mail"),
        "api_token.revoked": _l("API token revoked"),
        "user.created": _l("Account created"),
        "user.updated": _l("Account changed by an administrator"),
        "user.login": _l("Signed in"),
        "user.logout": _l("Signed out"),
        "user.password_changed": _l("Password changed"),
        "user.reset_link_sent": _l("Password reset link sent"),
        "user.password_reset": _l("Password reset with a link"),
        "user.profile_updated": _l("Profile changed"),
        "user.email_preference": _l("Mail preference changed"),
        "user.email_change_requested": _l("New e-mail address requested"),
        "user.email_changed": _l("E-mail address changed"),
        "user.deactivated": _l("Account deactivated"),
        "user.reactivated": _l("Account reactivated"),
        "api_token.issued": _l("API token issued"),
        "invitation.sent": _l("Colleague invited"),
        "invitation.revoked": _l("Invitation withdrawn"),
        "invitation.accepted": _l("Invitation accepted"),
        "enterprise.holder_changed": _l("Account holder changed"),
        "institution.created": _l("Institution added"),
        "institution.updated": _l("Institution changed"),
    }
)
