"""Account rules: credit-code checks, registration, passwords, sessions and API tokens."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from stdnum import exceptions as stdnum_errors
from stdnum.cn import uscc as stdnum_uscc
from werkzeug.security import check_password_hash, generate_password_hash

from portal.accounts import mail, password_policy, tokens
from portal.accounts.models import (
    ROLE_LABELS,
    AccountToken,
    ApiToken,
    Enterprise,
    EnterpriseKind,
    Institution,
    InstitutionKind,
    TokenPurpose,
    User,
    VerificationState,
)
from portal.core import audit, clock
from portal.core.database import changed_rows
from portal.core.errors import Forbidden, NotFound, ValidationFailed
from portal.core.permissions import Role
from portal.extensions import db

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{3,40}$")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ChecksumFailed(ValidationFailed):
    """The credit code is well formed but its check character does not match (legacy codes do this)."""


class AccountDisabled(Forbidden):
    """The password is right, but the account is deactivated."""


class AccountUnconfirmed(AccountDisabled):
    """The password is right, but the registration's link has not been opened yet."""


# A hash of a random password, checked when the username is unknown so that a miss costs as
# long as a hit and response times do not reveal which usernames exist.
_DUMMY_HASH: dict[str, str] = {}


def check_uscc(raw: str) -> str:
    """Validate a unified social credit code with python-stdnum; the error says exactly what is wrong."""
    number = stdnum_uscc.compact(raw or "")
    try:
        return stdnum_uscc.validate(number)
    except stdnum_errors.InvalidLength:
        raise ValidationFailed(
            _("A unified social credit code has 18 characters; this one has %(n)d.", n=len(number))
        ) from None
    except stdnum_errors.InvalidFormat:
        for position, char in enumerate(number, start=1):
            if position <= 8 and not char.isdigit():
                raise ValidationFailed(
                    _("Character %(pos)d (“%(char)s”) must be a digit.", pos=position, char=char)
                ) from None
            if char not in USCC_ALPHABET:
                raise ValidationFailed(
                    _(
                        "Character %(pos)d (“%(char)s”) is not allowed: only digits and capital letters "
                        "except I, O, Z, S and V.",
                        pos=position,
                        char=char,
                    )
                ) from None
        raise ValidationFailed(_("The credit code is not in the right format.")) from None
    except stdnum_errors.InvalidChecksum:
        raise ChecksumFailed(
            _(
                "The check character (the 18th) does not match: it should be “%(expected)s”, not "
                "“%(given)s”. Please check the code for a typing error.",
                expected=stdnum_uscc.calc_check_digit(number[:17]),
                given=number[17],
            )
        ) from None


def hash_password(password: str) -> str:
    """Hash with the configured method (scrypt N=2^17 in production)."""
    return generate_password_hash(password, method=current_app.config["PASSWORD_HASH_METHOD"])


def check_password_strength(password: str, username: str = "", email: str | None = "") -> None:
    """Refuse a password against the policy (portal.accounts.password_policy): every reason, as the
    `password` field's message."""
    password_policy.check_password(password or "", username or "", email or "")


@dataclass(frozen=True)
class Registration:
    username: str
    password: str
    email: str | None
    full_name: str
    phone: str | None
    company_name: str
    uscc: str
    kind: EnterpriseKind
    county: str
    # A legacy code failing its checksum is accepted, flagged for the reviewer's recorded override.
    legacy_code: bool = False


def registration_problems(data: Registration) -> tuple[dict[str, str], str | None, bool]:
    """What is wrong with a registration on its face, without a lookup: the fields' messages, the
    compact credit code (None when unreadable) and whether its check character holds."""
    fields: dict[str, str] = {}
    uscc, checksum_ok = None, True
    try:
        uscc = check_uscc(data.uscc)
    except ChecksumFailed as error:
        if data.legacy_code:
            uscc, checksum_ok = stdnum_uscc.compact(data.uscc), False
        else:
            fields["uscc"] = error.message
    except ValidationFailed as error:
        fields["uscc"] = error.message
    if data.county not in current_app.config["COUNTIES"]:
        fields["county"] = _("Choose a county from the list.")
    try:
        check_password_strength(data.password, data.username, data.email)
    except ValidationFailed as error:
        fields.update(error.fields)
    return fields, uscc, checksum_ok


def register_enterprise(data: Registration, *, awaiting_confirmation: bool = False) -> User:
    """Create an enterprise (awaiting verification) and its first user, in one transaction.

    Self-registration (portal.accounts.registration) makes the user `awaiting_confirmation`: usable
    only once the link mailed to its address is opened.
    """
    fields, uscc, checksum_ok = registration_problems(data)
    if uscc:
        existing = db.session.scalar(select(Enterprise).where(Enterprise.uscc == uscc))
        if existing is not None:
            fields["uscc"] = already_registered_message(existing)
    if username_taken(data.username):
        fields["username"] = _("This username is taken.")
    if data.email and email_taken(data.email):
        fields["email"] = _("This e-mail address is already registered.")
    if fields:
        raise ValidationFailed(_("Please correct the marked fields."), fields)

    enterprise = Enterprise(
        uscc=uscc,
        name=data.company_name.strip(),
        kind=data.kind,
        county=data.county,
        verification_state=VerificationState.PENDING,
        uscc_checksum_ok=checksum_ok,
    )
    user = User(
        username=data.username.strip(),
        email=data.email.lower() if data.email else None,
        password_hash=hash_password(data.password),
        role=Role.ENTERPRISE,
        full_name=data.full_name.strip(),
        phone=data.phone or None,
        enterprise=enterprise,
        is_holder=True,  # the registrant holds the enterprise's account until they hand it over
        awaiting_confirmation=awaiting_confirmation,
    )
    db.session.add_all([enterprise, user])
    db.session.flush()
    audit.record(
        "enterprise.registered",
        "enterprise",
        enterprise.id,
        after={
            "uscc": uscc,
            "name": enterprise.name,
            "state": enterprise.verification_state.value,
            "uscc_checksum_ok": checksum_ok,
        },
        actor_id=user.id,
    )
    if awaiting_confirmation:
        send_registration_link(user)
    db.session.commit()
    return user


def send_registration_link(user: User) -> AccountToken:
    """A new link (in the session) that confirms a self-registered account's address and activates it."""
    ttl = current_app.config["REGISTRATION_LINK_TTL_SECONDS"]
    row = tokens.issue_account_token(user, TokenPurpose.REGISTRATION, ttl)
    mail.mail_link(
        mail.address_of(user),
        "account.registration_confirm",
        row,
        "/register/confirm/",
        recipient=user,
        username=user.username,
        enterprise=user.enterprise.name if user.enterprise else "",
        days=max(ttl // 86400, 1),
    )
    return row


def already_registered_message(enterprise: Enterprise) -> str:
    """What someone registering an enterprise that has an account should do: ask its holder to invite them."""
    holder = holder_of(enterprise.id)
    name = mail.mask_name(holder.full_name) if holder and holder.full_name else ""
    if name:
        return _(
            "This enterprise is already registered. Its account holder (%(name)s) can invite you: after "
            "signing in they choose “Colleagues” on their account page and send an invitation to your "
            "e-mail address.",
            name=name,
        )
    return _(
        "This enterprise is already registered. Its account holder can invite you: after signing in they "
        "choose “Colleagues” on their account page and send an invitation to your e-mail address."
    )


def username_taken(username: str) -> bool:
    query = select(User.id).where(db.func.lower(User.username) == username.lower())
    return db.session.scalar(query) is not None


def normalize_email(address: str | None) -> str:
    return (address or "").strip().lower()


def email_taken(address: str, except_user_id: int | None = None) -> bool:
    query = select(User.id).where(User.email == normalize_email(address))
    if except_user_id is not None:
        query = query.where(User.id != except_user_id)
    return db.session.scalar(query) is not None


def holder_of(enterprise_id: int | None) -> User | None:
    """The enterprise's account holder (None only for an enterprise without users)."""
    return db.session.scalar(
        select(User).where(User.enterprise_id == enterprise_id, User.is_holder.is_(True))
    )


def enterprise_of(user: User) -> Enterprise:
    """The enterprise an enterprise user acts for."""
    return db.session.get_one(Enterprise, user.enterprise_id)


def institutions() -> list[tuple[int, str]]:
    """Every institution as (id, name), by name: the choices of an institution field."""
    return list(db.session.execute(select(Institution.id, Institution.name).order_by(Institution.name)).all())


def is_holder(user: User) -> bool:
    """Whether the user is their enterprise's account holder."""
    return user.role is Role.ENTERPRISE and user.is_holder


def require_holder(user: User) -> None:
    """Refuse what only the enterprise's account holder may do, and say who that is."""
    if is_holder(user):
        return
    holder = holder_of(user.enterprise_id)
    name = (holder.full_name or holder.username) if holder else "—"
    raise Forbidden(
        _("Only the enterprise's account holder (%(name)s) can do this.", name=name),
        {"holder": name},
    )


def authenticate(username: str, password: str) -> User | None:
    """The user with this username and password, or None; takes as long either way.

    Raises AccountDisabled when the password is right but the account is deactivated (AccountUnconfirmed
    when it waits for its registration link).
    """
    user = db.session.scalar(select(User).where(db.func.lower(User.username) == (username or "").lower()))
    if user is None:
        method = current_app.config["PASSWORD_HASH_METHOD"]
        if method not in _DUMMY_HASH:
            _DUMMY_HASH[method] = generate_password_hash(secrets.token_urlsafe(16), method=method)
        check_password_hash(_DUMMY_HASH[method], password or "")
        return None
    if not check_password_hash(user.password_hash, password or ""):
        return None
    if user.awaiting_confirmation:
        raise AccountUnconfirmed(
            _(
                "This account is not active yet: open the link we mailed to its address when you "
                "registered. No mail? Register again with the same address to get a new link."
            )
        )
    if not user.is_active:
        raise AccountDisabled(
            _(
                "This account is deactivated. Ask your enterprise's account holder or the bureau to "
                "reactivate it."
            )
        )
    return user


def record_login(user: User) -> None:
    """Note the login time (for the account page and the audit trail)."""
    user.last_login_at = clock.utcnow()
    audit.record("user.login", "user", user.id, actor_id=user.id)
    db.session.commit()


def end_sessions(user: User) -> None:
    """Invalidate every session cookie the user holds: a replayed cookie is refused afterwards."""
    user.session_version += 1
    audit.record("user.logout", "user", user.id, actor_id=user.id)
    db.session.commit()


def record_changes(
    action: str, user: User, before: dict[str, Any], after: dict[str, Any], actor_id: int
) -> list[str]:
    """One audit row with the fields of the user that changed (none if nothing did); their names."""
    changed = [name for name in before if before[name] != after[name]]
    if changed:
        audit.record(
            action,
            "user",
            user.id,
            before={name: before[name] for name in changed},
            after={name: after[name] for name in changed},
            actor_id=actor_id,
        )
    return changed


def end_every_session(user: User) -> int:
    """Every session cookie and API token of the user stops working; returns the tokens revoked.

    Part of a password change, reset or deactivation: the caller records the change and commits.
    """
    user.session_version += 1
    return changed_rows(
        update(ApiToken)
        .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=clock.utcnow())
        .execution_options(synchronize_session=False)
    )


def create_user(
    username: str,
    password: str | None,
    role: Role,
    *,
    email: str | None = None,
    full_name: str = "",
    phone: str | None = None,
    institution: Institution | None = None,
    enterprise: Enterprise | None = None,
    actor_id: int | None = None,
) -> User:
    """Create a staff or provider account (`flask users create` and the admin console).

    Without a password (the console), the account's owner gets a link by e-mail to choose one.
    """
    fields = _check_new_user(username, password, role, email, institution, enterprise)
    if fields:
        raise ValidationFailed(_("Please correct the marked fields."), fields)
    user = User(
        username=username.strip(),
        email=normalize_email(email) or None,
        # Without a password nobody can sign in until the welcome link has been used.
        password_hash=hash_password(password if password is not None else secrets.token_urlsafe(32)),
        role=role,
        full_name=full_name.strip(),
        phone=phone or None,
        institution=institution if role is Role.PROVIDER else None,
        enterprise=enterprise,
    )
    db.session.add(user)
    db.session.flush()
    audit.record(
        "user.created",
        "user",
        user.id,
        after={"username": user.username, "role": role.value, "institution_id": user.institution_id},
        actor_id=actor_id,
    )
    if password is None:
        _send_welcome_link(user)
    db.session.commit()
    return user


def _check_new_user(
    username: str,
    password: str | None,
    role: Role,
    email: str | None,
    institution: Institution | None,
    enterprise: Enterprise | None,
) -> dict[str, str]:
    """Every reason the account cannot be made, by field."""
    fields: dict[str, str] = {}
    if not USERNAME_PATTERN.match(username or ""):
        fields["username"] = _("3 to 40 letters, digits, dots, dashes or underscores.")
    elif username_taken(username):
        fields["username"] = _("This username is taken.")
    if password is not None:
        try:
            check_password_strength(password, username, email)
        except ValidationFailed as error:
            fields["password"] = error.message
    if email and not EMAIL_PATTERN.match(normalize_email(email)):
        fields["email"] = _("Enter a valid e-mail address.")
    elif email and email_taken(email):
        fields["email"] = _("This e-mail address is already registered.")
    elif password is None and not email:
        fields["email"] = _("Required: the link to choose a password is sent there.")
    if role is Role.PROVIDER and institution is None:
        fields["institution"] = _("A provider account belongs to an institution.")
    if role is Role.ENTERPRISE and enterprise is None:
        fields["enterprise"] = _("An enterprise account belongs to an enterprise.")
    return fields


def _send_welcome_link(user: User) -> None:
    ttl = current_app.config["WELCOME_LINK_TTL_SECONDS"]
    row = tokens.issue_account_token(user, TokenPurpose.WELCOME, ttl)
    mail.mail_link(
        mail.address_of(user),
        "account.welcome",
        row,
        "/password/reset/",
        recipient=user,
        username=user.username,
        role=str(ROLE_LABELS[user.role]),
        days=ttl // 86400,
    )


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_api_token(user: User) -> tuple[str, ApiToken]:
    """A new bearer token for the API; the clear text is returned once and never stored."""
    token = secrets.token_urlsafe(32)
    row = ApiToken(
        user=user,
        token_hash=_token_digest(token),
        expires_at=clock.utcnow() + timedelta(seconds=current_app.config["API_TOKEN_TTL_SECONDS"]),
    )
    db.session.add(row)
    audit.record("api_token.issued", "user", user.id, actor_id=user.id)
    db.session.commit()
    return token, row


def revoke_api_token(token: str) -> None:
    """The bearer token stops working (the API's sign-out); the user's other tokens go on."""
    row = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == _token_digest(token)))
    if row is None or row.revoked_at is not None:
        raise NotFound(_("No such token."))
    row.revoked_at = clock.utcnow()
    audit.record("api_token.revoked", "user", row.user_id, after={"token_id": row.id}, actor_id=row.user_id)
    db.session.commit()


def user_for_token(token: str) -> User | None:
    """The active user a bearer token belongs to, if the token is known, unexpired and not revoked."""
    row = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == _token_digest(token)))
    if row is None or row.revoked_at is not None or row.expires_at <= clock.utcnow():
        return None
    return row.user if row.user.is_active else None


# --- host institutions (the admin console) -------------------------------------------------------


@dataclass(frozen=True)
class InstitutionData:
    name: str
    uscc: str
    county: str
    kind: InstitutionKind
    address: str | None
    # In Liaocheng: the city's top-up applies to services of this host's instruments only then.
    is_local: bool
    # In Shandong (False: an out-of-province provider, subsidised only with a justification).
    in_province: bool = True


def _institution_values(data: InstitutionData) -> dict[str, object]:
    """The values to store, or ValidationFailed with a message for every field that is wrong."""
    fields: dict[str, str] = {}
    name = " ".join((data.name or "").split())
    if not name:
        fields["name"] = _("Required.")
    try:
        uscc = check_uscc(data.uscc)
    except ValidationFailed as error:  # a checksum failure too: institutions have no legacy override
        fields["uscc"] = error.message
        uscc = None
    # A host outside Shandong is placed by its own city and district (the list is Liaocheng's).
    listed = data.county in current_app.config["COUNTIES"]
    if not (listed or (not data.in_province and 0 < len((data.county or "").strip()) <= 20)):
        fields["county"] = _("Choose a county from the list.")
    if data.is_local and not data.in_province:
        fields["in_province"] = _("A host located in Liaocheng is in Shandong.")
    if fields:
        raise ValidationFailed(_("Please correct the marked fields."), fields)
    address = " ".join((data.address or "").split()) or None
    return {
        "name": name,
        "uscc": uscc,
        "county": data.county,
        "kind": data.kind,
        "address": address,
        "is_local": data.is_local,
        "in_province": data.in_province,
    }


def _duplicate_fields(values: dict[str, object], institution_id: int | None) -> dict[str, str]:
    others = select(Institution.id).where(Institution.id != (institution_id or 0))
    fields = {}
    if db.session.scalar(others.where(Institution.name == values["name"])):
        fields["name"] = _("Another institution already has this name.")
    if db.session.scalar(others.where(Institution.uscc == values["uscc"])):
        fields["uscc"] = _("Another institution already has this credit code.")
    return fields


def save_institution(user: User, data: InstitutionData, institution_id: int | None = None) -> Institution:
    """Add a host institution or change one (administrators); names and credit codes are unique."""
    if user.role is not Role.ADMIN:
        raise Forbidden(_("Only administrators manage institutions."))
    institution = None
    if institution_id is not None:
        institution = db.session.get(Institution, institution_id)
        if institution is None:
            raise NotFound(_("No such institution."))
    values = _institution_values(data)
    duplicates = _duplicate_fields(values, institution_id)
    if duplicates:
        raise ValidationFailed(_("Please correct the marked fields."), duplicates)
    if institution is None:
        institution = Institution(**values)
        db.session.add(institution)
        before, after = None, {k: _plain(v) for k, v in values.items()}
    else:
        before = {k: _plain(getattr(institution, k)) for k in values if getattr(institution, k) != values[k]}
        after = {k: _plain(values[k]) for k in before}
        if not after:
            return institution  # nothing changed: nothing to record
        for key in after:
            setattr(institution, key, values[key])
    try:
        db.session.flush()
        audit.record(
            "institution.created" if before is None else "institution.updated",
            "institution",
            institution.id,
            before=before,
            after=after,
            actor_id=user.id,
        )
        db.session.commit()
    except IntegrityError:
        # Another administrator saved the same name or code a moment ago.
        db.session.rollback()
        raise ValidationFailed(
            _("Please correct the marked fields."),
            _duplicate_fields(values, institution_id) or {"name": _("Please try again.")},
        ) from None
    return institution


def _plain(value: object) -> object:
    return value.value if isinstance(value, InstitutionKind) else value
