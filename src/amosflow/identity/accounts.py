"""Accounts in the store: local users, service accounts, role bindings and folders.

Every function takes the SQLAlchemy ``Session`` of one ``Store.session()``; the caller owns
the transaction. The one exception is a refused sign-in through ``authenticate_password`` or
``authenticate_client``: it commits the session before raising, because the failure counter
that drives the lockout must survive the rollback the error would otherwise cause. Callers
that want to own that commit too use ``attempt_password`` / ``attempt_client``, which
return the outcome instead of raising.

A refusal always carries the same message towards the caller, whatever went wrong: telling
"no such user" from "wrong password" or "locked" would let anyone list the accounts. The
real reason travels on the exception (``LoginRefused.reason``) for the audit trail.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from amosflow.dsl.expr import compile_template
from amosflow.errors import (
    AuthenticationError,
    ConflictError,
    Diagnostic,
    ExpressionError,
    NotFoundError,
    ValidationFailedError,
)
from amosflow.identity.passwords import (
    check_password_policy,
    hash_secret,
    needs_rehash,
    verify_secret,
)
from amosflow.identity.policy import ROLES
from amosflow.identity.principal import ALL_FOLDERS, Binding, Principal, Via
from amosflow.store.tables import (
    BINDING_SUBJECTS,
    PRINCIPAL_SOURCES,
    ApiTokenRow,
    FolderRow,
    GroupMemberRow,
    GroupRow,
    PrincipalRow,
    RoleBindingRow,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sqlalchemy.orm import Session

    from amosflow.identity.settings import IdentitySettings

#: What a username may look like: no spaces, no look-alike punctuation, fits the column.
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,199}")
#: What a folder name may look like: lower case, safe in a URL path segment and a file name.
FOLDER_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
#: The names a binding's condition may use; ``policy`` evaluates it over exactly these.
CONDITION_NAMES = frozenset({"resource", "principal"})
#: The one answer to every refused password sign-in.
LOGIN_REFUSED = "invalid username or password"
#: The one answer to every refused client-credentials grant.
CLIENT_REFUSED = "invalid client credentials"

SubjectKind = Literal["principal", "group"]


class LoginRefused(AuthenticationError):  # noqa: N818 - a refusal, named as the API says it
    """A refused credential; the message is generic, ``reason`` is the truth for the audit.

    Reasons: ``unknown`` (no such account), ``wrong_kind`` (a service account at the password
    sign-in or a user at the client grant), ``no_secret`` (an account that signs in through
    the IdP), ``locked``, ``inactive``, ``bad_secret``; the token verifiers add theirs.
    ``principal_id`` names the account when there is one, ``locked_now`` tells that this very
    failure locked it.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        principal_id: str | None = None,
        locked_now: bool = False,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.principal_id = principal_id
        self.locked_now = locked_now


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """The outcome of one sign-in attempt: the account, or why it was refused."""

    principal: PrincipalRow | None
    refusal: LoginRefused | None = None

    @property
    def ok(self) -> bool:
        """True when the credentials were accepted."""
        return self.refusal is None and self.principal is not None

    def unwrap(self) -> PrincipalRow:
        """The accepted account; raises the refusal otherwise."""
        if self.refusal is not None:
            raise self.refusal
        if self.principal is None:  # pragma: no cover - the constructors never do this
            raise LoginRefused(LOGIN_REFUSED, reason="unknown")
        return self.principal


def utc_now(now: datetime | None) -> datetime:
    """``now`` (which must be timezone-aware) or the current UTC time."""
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("pass a timezone-aware datetime")
    return now


# -- creating accounts -------------------------------------------------------------------------


def _username_problems(username: str) -> list[Diagnostic]:
    if USERNAME.fullmatch(username) is None:
        return [
            Diagnostic(
                "/username",
                "a username is 1 to 200 letters, digits or . _ @ - and starts with a letter "
                "or digit",
            )
        ]
    return []


def _ensure_username_free(session: Session, username: str) -> None:
    """Refuse a username that exists already, also in another letter case (look-alikes)."""
    taken = session.scalar(
        select(PrincipalRow.username).where(func.lower(PrincipalRow.username) == username.lower())
    )
    if taken is not None:
        raise ConflictError(f"the username {username!r} is taken")


def _insert(session: Session, row: PrincipalRow) -> PrincipalRow:
    """Insert ``row`` in a savepoint so a lost race on the username is a ConflictError."""
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError as exc:
        raise ConflictError(f"the username {row.username!r} is taken") from exc
    return row


def create_user(
    session: Session,
    *,
    username: str,
    password: str | None,
    display_name: str = "",
    email: str | None = None,
    source: str = "local",
    external_id: str | None = None,
    settings: IdentitySettings,
) -> PrincipalRow:
    """Create a user; ``password=None`` makes one who can only sign in through the IdP.

    Raises ValidationFailedError for a bad username, source or weak password and
    ConflictError when the username is taken.
    """
    problems = _username_problems(username)
    if source not in PRINCIPAL_SOURCES:
        problems.append(Diagnostic("/source", f"the source must be one of {PRINCIPAL_SOURCES}"))
    if len(display_name) > 200:  # noqa: PLR2004 - the column's length
        problems.append(Diagnostic("/display_name", "at most 200 characters"))
    if email is not None and (len(email) > 320 or "@" not in email):  # noqa: PLR2004
        problems.append(Diagnostic("/email", "not an email address"))
    if external_id is not None and len(external_id) > 200:  # noqa: PLR2004
        problems.append(Diagnostic("/external_id", "at most 200 characters"))
    if password is not None:
        try:
            check_password_policy(password, settings, username=username)
        except ValidationFailedError as err:
            problems.extend(err.diagnostics)
    if problems:
        raise ValidationFailedError(problems)
    _ensure_username_free(session, username)
    now = utc_now(None)
    return _insert(
        session,
        PrincipalRow(
            id=uuid.uuid4().hex,
            kind="user",
            username=username,
            display_name=display_name,
            email=email,
            source=source,
            external_id=external_id,
            password_hash=hash_secret(password) if password is not None else None,
            active=True,
            failed_logins=0,
            locked_until=None,
            tokens_valid_after=now,
            created_at=now,
            updated_at=now,
        ),
    )


def _new_client_secret() -> str:
    return secrets.token_urlsafe(32)


def create_service_account(
    session: Session,
    *,
    name: str,
    settings: IdentitySettings,  # noqa: ARG001 - the same signature as create_user
) -> tuple[PrincipalRow, str]:
    """Create a service account; return it and its client secret, which is shown only now.

    The client id is the account's ``id``. Only the argon2id hash of the secret is kept.
    """
    problems = _username_problems(name)
    if problems:
        raise ValidationFailedError(problems)
    _ensure_username_free(session, name)
    secret = _new_client_secret()
    now = utc_now(None)
    row = _insert(
        session,
        PrincipalRow(
            id=uuid.uuid4().hex,
            kind="service",
            username=name,
            display_name=name,
            email=None,
            source="local",
            external_id=None,
            password_hash=hash_secret(secret),
            active=True,
            failed_logins=0,
            locked_until=None,
            tokens_valid_after=now,
            created_at=now,
            updated_at=now,
        ),
    )
    return row, secret


# -- signing in ----------------------------------------------------------------------------------


def _refuse(message: str, reason: str, row: PrincipalRow | None) -> LoginAttempt:
    return LoginAttempt(
        None, LoginRefused(message, reason=reason, principal_id=row.id if row else None)
    )


def _unusable(row: PrincipalRow | None, kind: str) -> str | None:
    """Why ``row`` can never sign in this way, or None."""
    if row is None:
        return "unknown"
    if row.kind != kind:
        return "wrong_kind"
    if not row.password_hash:
        return "no_secret"
    return None


def _blocked(row: PrincipalRow, now: datetime) -> str | None:
    """Why ``row`` may not sign in right now, whatever the secret, or None."""
    if row.locked_until is not None and row.locked_until > now:
        return "locked"
    if not row.active:
        return "inactive"
    return None


def _attempt(
    session: Session,
    row: PrincipalRow | None,
    secret: str,
    *,
    kind: str,
    message: str,
    settings: IdentitySettings,
    now: datetime,
) -> LoginAttempt:
    """Check ``secret`` against ``row`` and record the outcome on it (not committed).

    The hash is verified in every case, also for an unknown, locked or inactive account,
    so that the time a refusal takes says nothing about which case it was.
    """
    stored = row.password_hash if row is not None and row.kind == kind else None
    matched = verify_secret(stored, secret)
    reason = _unusable(row, kind)
    if reason is None and row is not None:
        # Re-read under a row lock (PostgreSQL; SQLite's writer lock serialises anyway) so
        # that concurrent failures count one by one instead of overwriting each other.
        session.refresh(row, with_for_update=True)
        reason = _blocked(row, now)
        # A secret changed since it was verified counts as wrong: never rehash a stale one.
        matched = matched and row.password_hash == stored
    if reason is not None or row is None:
        return _refuse(message, reason or "unknown", row)
    if not matched:
        # The counter is not reset when a lock expires: the next failure locks again at once.
        row.failed_logins += 1
        locked_now = row.failed_logins >= settings.lockout_threshold
        if locked_now:
            row.locked_until = now + timedelta(seconds=settings.lockout_seconds)
        session.flush()
        refusal = LoginRefused(
            message, reason="bad_secret", principal_id=row.id, locked_now=locked_now
        )
        return LoginAttempt(None, refusal)
    row.failed_logins = 0
    row.locked_until = None
    if row.password_hash and needs_rehash(row.password_hash):
        row.password_hash = hash_secret(secret)
    session.flush()
    return LoginAttempt(row)


def attempt_password(
    session: Session,
    username: str,
    password: str,
    *,
    settings: IdentitySettings,
    now: datetime | None = None,
) -> LoginAttempt:
    """Check a user's password, recording the failure or the success; never raises for it.

    The caller commits the session in both cases: the failure counter and the lock live in
    it. A success resets the counter and upgrades an outdated hash.
    """
    row = find_by_username(session, username) if USERNAME.fullmatch(username) else None
    return _attempt(
        session,
        row,
        password,
        kind="user",
        message=LOGIN_REFUSED,
        settings=settings,
        now=utc_now(now),
    )


def _settle(session: Session, attempt: LoginAttempt) -> PrincipalRow:
    """The accepted account; a refusal is committed (counter and lock) before it is raised."""
    if attempt.refusal is not None:
        session.commit()
        raise attempt.refusal
    return attempt.unwrap()


def authenticate_password(
    session: Session,
    username: str,
    password: str,
    *,
    settings: IdentitySettings,
    now: datetime | None = None,
) -> PrincipalRow:
    """Return the user whose password this is; raise LoginRefused otherwise.

    A refusal commits ``session`` before raising, so the failure counter and the lock
    survive the rollback the error causes in ``Store.session()``. Use a session of its own
    for the sign-in (anything else pending in it is committed along).
    """
    return _settle(
        session, attempt_password(session, username, password, settings=settings, now=now)
    )


def attempt_client(
    session: Session,
    client_id: str,
    client_secret: str,
    *,
    settings: IdentitySettings,
    now: datetime | None = None,
) -> LoginAttempt:
    """Check a service account's client secret (``client_id`` is its id); never raises for it."""
    row = session.get(PrincipalRow, client_id) if 0 < len(client_id) <= 64 else None  # noqa: PLR2004
    return _attempt(
        session,
        row,
        client_secret,
        kind="service",
        message=CLIENT_REFUSED,
        settings=settings,
        now=utc_now(now),
    )


def authenticate_client(
    session: Session,
    client_id: str,
    client_secret: str,
    *,
    settings: IdentitySettings,
    now: datetime | None = None,
) -> PrincipalRow:
    """Return the service account of an OAuth2 client-credentials grant; LoginRefused otherwise.

    The same lockout as for passwords applies; a refusal commits ``session`` before raising.
    """
    return _settle(
        session, attempt_client(session, client_id, client_secret, settings=settings, now=now)
    )


# -- managing accounts ---------------------------------------------------------------------------


def get_principal(session: Session, principal_id: str) -> PrincipalRow:
    """The principal with this id; NotFoundError otherwise."""
    row = session.get(PrincipalRow, principal_id)
    if row is None:
        raise NotFoundError(f"principal {principal_id!r} not found")
    return row


def find_by_username(session: Session, username: str) -> PrincipalRow | None:
    """The principal with exactly this username, or None."""
    return session.scalars(select(PrincipalRow).where(PrincipalRow.username == username)).first()


def list_principals(session: Session) -> list[PrincipalRow]:
    """Every principal, by username."""
    return list(session.scalars(select(PrincipalRow).order_by(PrincipalRow.username)))


def count_principals(session: Session, *, kind: str | None = None) -> int:
    """How many principals (of one ``kind``) there are; a fresh install has none at all."""
    query = select(func.count()).select_from(PrincipalRow)
    if kind is not None:
        query = query.where(PrincipalRow.kind == kind)
    return session.scalar(query) or 0


def set_password(
    session: Session, principal_id: str, password: str, *, settings: IdentitySettings
) -> PrincipalRow:
    """Give a local user a new password; also clears a lockout, as an administrator reset does.

    Raises ConflictError for a service account (it has a client secret) or a user who signs
    in through the IdP (a local password would bypass the IdP).
    """
    row = get_principal(session, principal_id)
    if row.kind != "user":
        raise ConflictError(f"{row.username!r} is a service account; rotate its client secret")
    if row.source != "local":
        raise ConflictError(f"{row.username!r} signs in through the identity provider")
    check_password_policy(password, settings, username=row.username)
    row.password_hash = hash_secret(password)
    row.failed_logins = 0
    row.locked_until = None
    row.updated_at = utc_now(None)
    session.flush()
    return row


def rotate_client_secret(session: Session, principal_id: str) -> str:
    """Give a service account a new client secret and return it; the old one stops working."""
    row = get_principal(session, principal_id)
    if row.kind != "service":
        raise ConflictError(f"{row.username!r} is not a service account")
    secret = _new_client_secret()
    row.password_hash = hash_secret(secret)
    row.failed_logins = 0
    row.locked_until = None
    row.updated_at = utc_now(None)
    session.flush()
    return secret


def deactivate(session: Session, principal_id: str, *, now: datetime | None = None) -> PrincipalRow:
    """Switch an account off and kill every credential it holds, at once.

    Sessions die through ``tokens_valid_after``; every API token is revoked as well, so
    reactivating the account does not bring any of them back.
    """
    at = utc_now(now)
    row = get_principal(session, principal_id)
    row.active = False
    row.tokens_valid_after = at
    row.updated_at = at
    session.execute(
        update(ApiTokenRow)
        .where(ApiTokenRow.principal_id == principal_id, ApiTokenRow.revoked_at.is_(None))
        .values(revoked_at=at)
    )
    session.flush()
    return row


def reactivate(session: Session, principal_id: str, *, now: datetime | None = None) -> PrincipalRow:
    """Switch an account back on, with a clean failure counter; its old tokens stay dead."""
    row = get_principal(session, principal_id)
    row.active = True
    row.failed_logins = 0
    row.locked_until = None
    row.updated_at = utc_now(now)
    session.flush()
    return row


# -- role bindings -------------------------------------------------------------------------------


def _condition_problems(condition: str) -> list[Diagnostic]:
    """Why ``condition`` cannot be a binding's condition (empty when it can)."""
    if not condition:
        return [Diagnostic("/condition", "the condition is empty; leave it out instead")]
    try:
        template = compile_template("${" + condition + "}", "/condition")
    except ExpressionError as err:
        return [Diagnostic("/condition", err.reason)]
    problems: list[Diagnostic] = []
    if not template.is_single:
        problems.append(Diagnostic("/condition", "the condition must be one CEL expression"))
    unknown = sorted(template.names - CONDITION_NAMES)
    if unknown:
        problems.append(
            Diagnostic(
                "/condition",
                f"unknown name(s) {', '.join(unknown)}; a condition sees only "
                f"{', '.join(sorted(CONDITION_NAMES))}",
            )
        )
    return problems


def grant(
    session: Session,
    *,
    subject_kind: SubjectKind,
    subject: str,
    role: str,
    folder: str = ALL_FOLDERS,
    condition: str | None = None,
) -> RoleBindingRow:
    """Bind ``role`` to a principal (by id) or a group (by display name) in ``folder``.

    Granting the same binding twice returns the existing one. Raises ValidationFailedError
    for an unknown role or a condition that does not compile, NotFoundError for a principal
    or a folder that does not exist. A group need not exist yet: IdP groups arrive in tokens.
    """
    problems: list[Diagnostic] = []
    if subject_kind not in BINDING_SUBJECTS:
        problems.append(Diagnostic("/subject_kind", f"must be one of {BINDING_SUBJECTS}"))
    if not subject or len(subject) > 200:  # noqa: PLR2004 - the column's length
        problems.append(Diagnostic("/subject", "1 to 200 characters"))
    if role not in ROLES:
        problems.append(Diagnostic("/role", f"unknown role {role!r}; one of {', '.join(ROLES)}"))
    if condition is not None:
        condition = condition.strip()
        problems.extend(_condition_problems(condition))
    if problems:
        raise ValidationFailedError(problems)
    if subject_kind == "principal":
        get_principal(session, subject)
    if folder != ALL_FOLDERS and not folder_exists(session, folder):
        raise NotFoundError(f"folder {folder!r} not found")
    same_condition = (
        RoleBindingRow.condition.is_(None)
        if condition is None
        else RoleBindingRow.condition == condition
    )
    existing = session.scalars(
        select(RoleBindingRow).where(
            RoleBindingRow.subject_kind == subject_kind,
            RoleBindingRow.subject == subject,
            RoleBindingRow.role == role,
            RoleBindingRow.folder == folder,
            same_condition,
        )
    ).first()
    if existing is not None:
        return existing
    row = RoleBindingRow(
        subject_kind=subject_kind,
        subject=subject,
        role=role,
        folder=folder,
        condition=condition,
        created_at=utc_now(None),
    )
    session.add(row)
    session.flush()
    return row


def revoke_binding(session: Session, binding_id: int) -> None:
    """Delete one role binding; NotFoundError when there is none with this id."""
    row = session.get(RoleBindingRow, binding_id)
    if row is None:
        raise NotFoundError(f"role binding {binding_id} not found")
    session.delete(row)
    session.flush()


def list_bindings(
    session: Session, *, subject_kind: SubjectKind | None = None, subject: str | None = None
) -> list[RoleBindingRow]:
    """Role bindings, oldest first, optionally of one kind of subject or one subject."""
    query = select(RoleBindingRow).order_by(RoleBindingRow.id)
    if subject_kind is not None:
        query = query.where(RoleBindingRow.subject_kind == subject_kind)
    if subject is not None:
        query = query.where(RoleBindingRow.subject == subject)
    return list(session.scalars(query))


def group_names(session: Session, principal_id: str) -> list[str]:
    """The display names of the groups the store says ``principal_id`` is a member of."""
    query = (
        select(GroupRow.display_name)
        .join(GroupMemberRow, GroupMemberRow.group_id == GroupRow.id)
        .where(GroupMemberRow.principal_id == principal_id)
        .order_by(GroupRow.display_name)
    )
    return list(session.scalars(query))


def _bindings(session: Session, principal_id: str, groups: Iterable[str]) -> tuple[Binding, ...]:
    names = sorted(set(groups))
    subject = and_(
        RoleBindingRow.subject_kind == "principal", RoleBindingRow.subject == principal_id
    )
    if names:
        subject = or_(
            subject,
            and_(RoleBindingRow.subject_kind == "group", RoleBindingRow.subject.in_(names)),
        )
    rows = session.scalars(select(RoleBindingRow).where(subject).order_by(RoleBindingRow.id))
    # dict keeps the first occurrence: a role held both directly and through a group is one.
    unique = {Binding(row.role, row.folder, row.condition): None for row in rows}
    return tuple(unique)


def bindings_for(
    session: Session, principal_id: str, groups: Iterable[str] = ()
) -> tuple[Binding, ...]:
    """The effective bindings: the principal's own, its stored groups', and ``groups``'.

    ``groups`` are extra group names, such as the ``groups`` claim of an IdP token.
    """
    return _bindings(session, principal_id, [*group_names(session, principal_id), *groups])


def to_principal(
    session: Session,
    row: PrincipalRow,
    *,
    via: Via,
    groups: Iterable[str] = (),
    token_id: str | None = None,
    scopes: Iterable[str] | None = None,
) -> Principal:
    """The authenticated ``Principal`` of ``row`` with its effective bindings."""
    names = tuple(sorted({*group_names(session, row.id), *groups}))
    kind: Literal["user", "service"] = "service" if row.kind == "service" else "user"
    return Principal(
        id=row.id,
        kind=kind,
        username=row.username,
        source=row.source,
        bindings=_bindings(session, row.id, names),
        groups=names,
        via=via,
        token_id=token_id,
        scopes=frozenset(scopes) if scopes is not None else None,
    )


# -- folders -------------------------------------------------------------------------------------


def create_folder(session: Session, name: str, description: str = "") -> FolderRow:
    """Create a folder; ConflictError when it exists, ValidationFailedError for a bad name."""
    problems: list[Diagnostic] = []
    if FOLDER_NAME.fullmatch(name) is None:
        problems.append(
            Diagnostic(
                "/name",
                "a folder name is 1 to 100 lower-case letters, digits or . _ - and starts "
                "with a letter or digit",
            )
        )
    if len(description) > 500:  # noqa: PLR2004 - the column's length
        problems.append(Diagnostic("/description", "at most 500 characters"))
    if problems:
        raise ValidationFailedError(problems)
    if folder_exists(session, name):
        raise ConflictError(f"folder {name!r} exists already")
    row = FolderRow(name=name, description=description, created_at=utc_now(None))
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError as exc:
        raise ConflictError(f"folder {name!r} exists already") from exc
    return row


def list_folders(session: Session) -> list[FolderRow]:
    """Every folder, by name."""
    return list(session.scalars(select(FolderRow).order_by(FolderRow.name)))


def folder_exists(session: Session, name: str) -> bool:
    """Whether a folder called ``name`` exists."""
    return session.get(FolderRow, name) is not None
