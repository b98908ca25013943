"""Account rules: credit-code checks, registration, passwords, sessions and API tokens."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from stdnum import exceptions as stdnum_errors
from stdnum.cn import uscc as stdnum_uscc
from werkzeug.security import check_password_hash, generate_password_hash

from portal.accounts.models import (
    ApiToken,
    Enterprise,
    EnterpriseKind,
    Institution,
    InstitutionKind,
    User,
    VerificationState,
)
from portal.core import audit
from portal.core.clock import utcnow
from portal.core.errors import Forbidden, NotFound, ValidationFailed
from portal.core.permissions import Role
from portal.extensions import db

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
MIN_PASSWORD_LENGTH = 10


class ChecksumFailed(ValidationFailed):
    """The credit code is well formed but its check character does not match (legacy codes do this)."""


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


def check_password_strength(password: str, username: str = "") -> None:
    """Refuse passwords that are short, or that are the username."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(
            _("The password needs at least %(n)d characters.", n=MIN_PASSWORD_LENGTH),
            {"password": _("Too short.")},
        )
    if username and password.lower() == username.lower():
        raise ValidationFailed(
            _("The password must not be the username."), {"password": _("Same as the username.")}
        )


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


def register_enterprise(data: Registration) -> User:
    """Create an enterprise (awaiting verification) and its first user, in one transaction."""
    fields: dict[str, str] = {}
    checksum_ok = True
    try:
        uscc = check_uscc(data.uscc)
    except ChecksumFailed as error:
        if data.legacy_code:
            uscc, checksum_ok = stdnum_uscc.compact(data.uscc), False
        else:
            fields["uscc"] = error.message
            uscc = None
    except ValidationFailed as error:
        fields["uscc"] = error.message
        uscc = None
    if uscc and db.session.scalar(select(Enterprise.id).where(Enterprise.uscc == uscc)):
        fields["uscc"] = _("This enterprise is already registered; ask its account holder to add you.")
    if db.session.scalar(select(User.id).where(db.func.lower(User.username) == data.username.lower())):
        fields["username"] = _("This username is taken.")
    if data.email and db.session.scalar(select(User.id).where(User.email == data.email.lower())):
        fields["email"] = _("This e-mail address is already registered.")
    if data.county not in current_app.config["COUNTIES"]:
        fields["county"] = _("Choose a county from the list.")
    try:
        check_password_strength(data.password, data.username)
    except ValidationFailed as error:
        fields.update(error.fields)
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
    db.session.commit()
    return user


def is_holder(user: User) -> bool:
    """Whether the user is their enterprise's account holder."""
    return user.role is Role.ENTERPRISE and user.is_holder


def require_holder(user: User) -> None:
    """Refuse what only the enterprise's account holder may do, and say who that is."""
    if is_holder(user):
        return
    holder = db.session.scalar(
        select(User).where(User.enterprise_id == user.enterprise_id, User.is_holder.is_(True))
    )
    name = (holder.full_name or holder.username) if holder else "—"
    raise Forbidden(
        _("Only the enterprise's account holder (%(name)s) can do this.", name=name),
        {"holder": name},
    )


def authenticate(username: str, password: str) -> User | None:
    """The active user with this username and password, or None; takes as long either way."""
    user = db.session.scalar(select(User).where(db.func.lower(User.username) == (username or "").lower()))
    if user is None:
        method = current_app.config["PASSWORD_HASH_METHOD"]
        if method not in _DUMMY_HASH:
            _DUMMY_HASH[method] = generate_password_hash(secrets.token_urlsafe(16), method=method)
        check_password_hash(_DUMMY_HASH[method], password or "")
        return None
    if not check_password_hash(user.password_hash, password or "") or not user.is_active:
        return None
    return user


def record_login(user: User) -> None:
    """Note the login time (for the account page and the audit trail)."""
    user.last_login_at = utcnow()
    audit.record("user.login", "user", user.id, actor_id=user.id)
    db.session.commit()


def end_sessions(user: User) -> None:
    """Invalidate every session cookie the user holds: a replayed cookie is refused afterwards."""
    user.session_version += 1
    audit.record("user.logout", "user", user.id, actor_id=user.id)
    db.session.commit()


def create_user(
    username: str,
    password: str,
    role: Role,
    *,
    email: str | None = None,
    full_name: str = "",
    institution: Institution | None = None,
    enterprise: Enterprise | None = None,
    actor_id: int | None = None,
) -> User:
    """Create a staff or provider account (used by `flask users create` and the admin pages)."""
    check_password_strength(password, username)
    if db.session.scalar(select(User.id).where(db.func.lower(User.username) == username.lower())):
        raise ValidationFailed(_("This username is taken."), {"username": _("This username is taken.")})
    if role is Role.PROVIDER and institution is None:
        raise ValidationFailed(
            _("A provider account belongs to an institution."), {"institution": _("Required.")}
        )
    if role is Role.ENTERPRISE and enterprise is None:
        raise ValidationFailed(
            _("An enterprise account belongs to an enterprise."), {"enterprise": _("Required.")}
        )
    user = User(
        username=username,
        email=email.lower() if email else None,
        password_hash=hash_password(password),
        role=role,
        full_name=full_name,
        institution=institution,
        enterprise=enterprise,
    )
    db.session.add(user)
    db.session.flush()
    audit.record(
        "user.created", "user", user.id, after={"username": username, "role": role.value}, actor_id=actor_id
    )
    db.session.commit()
    return user


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_api_token(user: User) -> tuple[str, ApiToken]:
    """A new bearer token for the API; the clear text is returned once and never stored."""
    token = secrets.token_urlsafe(32)
    row = ApiToken(
        user=user,
        token_hash=_token_digest(token),
        expires_at=utcnow() + timedelta(seconds=current_app.config["API_TOKEN_TTL_SECONDS"]),
    )
    db.session.add(row)
    audit.record("api_token.issued", "user", user.id, actor_id=user.id)
    db.session.commit()
    return token, row


def user_for_token(token: str) -> User | None:
    """The active user a bearer token belongs to, if the token is known, unexpired and not revoked."""
    row = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == _token_digest(token)))
    if row is None or row.revoked_at is not None or row.expires_at <= utcnow():
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
    if data.county not in current_app.config["COUNTIES"]:
        fields["county"] = _("Choose a county from the list.")
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
