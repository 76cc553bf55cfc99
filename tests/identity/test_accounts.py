"""Accounts on SQLite and PostgreSQL: creation, sign-in, lockout, deactivation, bindings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from amosflow import identity
from amosflow.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    ValidationFailedError,
)
from amosflow.identity import Binding, IdentitySettings, LoginRefused, allows
from amosflow.store import GroupMemberRow, GroupRow, PrincipalRow, Store

PASSWORD = "correct horse battery staple"


def now() -> datetime:
    return datetime.now(UTC)


def make_user(store: Store, settings: IdentitySettings, username: str = "alice") -> str:
    with store.session() as session:
        return identity.create_user(
            session, username=username, password=PASSWORD, settings=settings
        ).id


def fail_login(
    store: Store, settings: IdentitySettings, username: str, password: str, at: datetime
) -> LoginRefused:
    """One refused sign-in through the raising API, in a transaction of its own."""
    with pytest.raises(LoginRefused) as caught, store.session() as session:
        identity.authenticate_password(session, username, password, settings=settings, now=at)
    return caught.value


def login(store: Store, settings: IdentitySettings, username: str, at: datetime) -> PrincipalRow:
    with store.session() as session:
        return identity.authenticate_password(
            session, username, PASSWORD, settings=settings, now=at
        )


def principal(store: Store, principal_id: str) -> PrincipalRow:
    with store.session(read_only=True) as session:
        return identity.get_principal(session, principal_id)


def pointers(err: ValidationFailedError) -> list[str]:
    return [d.pointer for d in err.diagnostics]


# -- creating accounts ---------------------------------------------------------------------------


def test_fresh_store_has_no_principal_at_all(store: Store) -> None:
    with store.session(read_only=True) as session:
        assert identity.count_principals(session) == 0
        assert identity.list_principals(session) == []


def test_create_user_keeps_only_an_argon2id_hash(store: Store, settings) -> None:
    with store.session() as session:
        row = identity.create_user(
            session,
            username="alice",
            password=PASSWORD,
            display_name="Alice",
            email="alice@example.org",
            settings=settings,
        )
    stored = principal(store, row.id)
    assert len(stored.id) == 32
    assert int(stored.id, 16) >= 0
    assert (stored.kind, stored.source, stored.username) == ("user", "local", "alice")
    assert stored.password_hash is not None
    assert stored.password_hash.startswith("$argon2id$")
    assert PASSWORD not in stored.password_hash
    assert stored.active
    assert stored.failed_logins == 0
    with store.session(read_only=True) as session:
        assert identity.count_principals(session) == 1
        found = identity.find_by_username(session, "alice")
        assert found is not None
        assert found.id == row.id
        assert identity.find_by_username(session, "bob") is None


def test_duplicate_username_conflicts_also_in_another_case(store: Store, settings) -> None:
    make_user(store, settings, "alice")
    for name in ("alice", "ALICE"):
        with pytest.raises(ConflictError), store.session() as session:
            identity.create_user(session, username=name, password=PASSWORD, settings=settings)
    with store.session(read_only=True) as session:
        assert identity.count_principals(session) == 1


@pytest.mark.parametrize("name", ["", ".alice", "al ice", "alice/x", "a" * 201, "ålice"])
def test_bad_username_points_at_username(store: Store, settings, name: str) -> None:
    with pytest.raises(ValidationFailedError) as caught, store.session() as session:
        identity.create_user(session, username=name, password=PASSWORD, settings=settings)
    assert pointers(caught.value) == ["/username"]


def test_weak_password_points_at_password_and_creates_nothing(store: Store, settings) -> None:
    with pytest.raises(ValidationFailedError) as caught, store.session() as session:
        identity.create_user(session, username="alice", password="short", settings=settings)
    assert pointers(caught.value) == ["/password"]
    with store.session(read_only=True) as session:
        assert identity.count_principals(session) == 0


def test_idp_user_without_password_cannot_sign_in_with_one(store: Store, settings) -> None:
    with store.session() as session:
        identity.create_user(
            session,
            username="oidc.carol",
            password=None,
            source="oidc",
            external_id="sub-1",
            settings=settings,
        )
    refused = fail_login(store, settings, "oidc.carol", "", now())
    assert refused.reason == "no_secret"
    assert str(refused) == identity.LOGIN_REFUSED


# -- password sign-in and lockout ----------------------------------------------------------------


def test_right_password_signs_in(store: Store, settings) -> None:
    user_id = make_user(store, settings)
    assert login(store, settings, "alice", now()).id == user_id


def test_lockout_after_threshold_failures(store: Store, settings) -> None:
    user_id = make_user(store, settings)
    at = now()
    for attempt in range(1, settings.lockout_threshold):
        refused = fail_login(store, settings, "alice", "wrong password!", at)
        assert refused.reason == "bad_secret"
        assert not refused.locked_now
        row = principal(store, user_id)
        assert row.failed_logins == attempt
        assert row.locked_until is None
    refused = fail_login(store, settings, "alice", "wrong password!", at)
    assert refused.locked_now
    row = principal(store, user_id)
    assert row.failed_logins == settings.lockout_threshold
    assert row.locked_until == at + timedelta(seconds=settings.lockout_seconds)


def test_locked_account_refuses_the_right_password_without_extending(
    store: Store, settings
) -> None:
    user_id = make_user(store, settings)
    at = now()
    for _ in range(settings.lockout_threshold):
        fail_login(store, settings, "alice", "wrong password!", at)
    locked_until = principal(store, user_id).locked_until
    assert locked_until is not None
    later = at + timedelta(seconds=settings.lockout_seconds - 1)
    refused = fail_login(store, settings, "alice", PASSWORD, later)
    assert refused.reason == "locked"
    refused = fail_login(store, settings, "alice", "still wrong!!", later)
    assert refused.reason == "locked"
    assert principal(store, user_id).locked_until == locked_until
    # Once the lock has run out the right password works again and clears the counter.
    row = login(store, settings, "alice", locked_until + timedelta(seconds=1))
    assert row.id == user_id
    stored = principal(store, user_id)
    assert (stored.failed_logins, stored.locked_until) == (0, None)


def test_one_failure_after_an_expired_lock_locks_again(store: Store, settings) -> None:
    make_user(store, settings)
    at = now()
    for _ in range(settings.lockout_threshold):
        fail_login(store, settings, "alice", "wrong password!", at)
    after = at + timedelta(seconds=settings.lockout_seconds + 1)
    assert fail_login(store, settings, "alice", "wrong password!", after).locked_now
    assert fail_login(store, settings, "alice", PASSWORD, after).reason == "locked"


def test_failure_counter_survives_the_raising_transaction(store: Store, settings) -> None:
    user_id = make_user(store, settings)
    # The refusal propagates through Store.session(), which rolls back on any error...
    fail_login(store, settings, "alice", "wrong password!", now())
    # ...and yet a new transaction sees the failure.
    assert principal(store, user_id).failed_logins == 1


def test_attempt_returns_the_refusal_and_the_caller_commits(store: Store, settings) -> None:
    user_id = make_user(store, settings)
    with store.session() as session:
        attempt = identity.attempt_password(
            session, "alice", "wrong password!", settings=settings, now=now()
        )
        assert not attempt.ok
        assert attempt.refusal is not None
        assert attempt.refusal.reason == "bad_secret"
        with pytest.raises(LoginRefused):
            attempt.unwrap()
    assert principal(store, user_id).failed_logins == 1


def test_success_resets_the_counter(store: Store, settings) -> None:
    user_id = make_user(store, settings)
    at = now()
    for _ in range(settings.lockout_threshold - 1):
        fail_login(store, settings, "alice", "wrong password!", at)
    assert principal(store, user_id).failed_logins == settings.lockout_threshold - 1
    login(store, settings, "alice", at)
    assert principal(store, user_id).failed_logins == 0
    # The threshold counts failures in a row: after the reset it takes the full count again.
    for _ in range(settings.lockout_threshold - 1):
        assert not fail_login(store, settings, "alice", "wrong password!", at).locked_now


def test_unknown_locked_inactive_and_wrong_password_look_the_same(store: Store, settings) -> None:
    at = now()
    make_user(store, settings, "alice")
    make_user(store, settings, "locked")
    inactive_id = make_user(store, settings, "inactive")
    with store.session() as session:
        identity.deactivate(session, inactive_id)
        identity.create_service_account(session, name="ci", settings=settings)
    for _ in range(settings.lockout_threshold):
        fail_login(store, settings, "locked", "wrong password!", at)

    refusals = {
        "unknown": fail_login(store, settings, "nobody", PASSWORD, at),
        "locked": fail_login(store, settings, "locked", PASSWORD, at),
        "inactive": fail_login(store, settings, "inactive", PASSWORD, at),
        "bad_secret": fail_login(store, settings, "alice", "wrong password!", at),
        "wrong_kind": fail_login(store, settings, "ci", PASSWORD, at),
    }
    for reason, refused in refusals.items():
        assert type(refused) is LoginRefused
        assert isinstance(refused, AuthenticationError)
        assert str(refused) == "invalid username or password"
        assert refused.reason == reason
    assert refusals["unknown"].principal_id is None
    assert refusals["locked"].principal_id is not None


# -- service accounts ----------------------------------------------------------------------------


def test_service_account_secret_is_hashed_and_authenticates(store: Store, settings) -> None:
    with store.session() as session:
        row, secret = identity.create_service_account(session, name="ci", settings=settings)
    stored = principal(store, row.id)
    assert (stored.kind, stored.source, stored.username) == ("service", "local", "ci")
    assert stored.password_hash is not None
    assert stored.password_hash.startswith("$argon2id$")
    assert secret not in stored.password_hash
    assert len(secret) >= 43
    with store.session() as session:
        assert identity.authenticate_client(session, row.id, secret, settings=settings).id == row.id


def test_client_credentials_refusals_and_lockout(store: Store, settings) -> None:
    user_id = make_user(store, settings)
    with store.session() as session:
        row, secret = identity.create_service_account(session, name="ci", settings=settings)
    at = now()

    def refuse(client_id: str, client_secret: str) -> LoginRefused:
        with pytest.raises(LoginRefused) as caught, store.session() as session:
            identity.authenticate_client(
                session, client_id, client_secret, settings=settings, now=at
            )
        assert str(caught.value) == identity.CLIENT_REFUSED
        return caught.value

    assert refuse("0" * 32, secret).reason == "unknown"
    assert refuse(user_id, PASSWORD).reason == "wrong_kind"
    for _ in range(settings.lockout_threshold):
        assert refuse(row.id, "not the secret").reason == "bad_secret"
    assert refuse(row.id, secret).reason == "locked"
    assert principal(store, row.id).failed_logins == settings.lockout_threshold


def test_rotating_the_client_secret_retires_the_old_one(store: Store, settings) -> None:
    with store.session() as session:
        row, old = identity.create_service_account(session, name="ci", settings=settings)
        new = identity.rotate_client_secret(session, row.id)
    assert new != old
    with store.session() as session:
        assert identity.authenticate_client(session, row.id, new, settings=settings).id == row.id
    with pytest.raises(LoginRefused), store.session() as session:
        identity.authenticate_client(session, row.id, old, settings=settings)


# -- managing accounts ---------------------------------------------------------------------------


def test_set_password_replaces_the_old_one_and_clears_a_lock(store: Store, settings) -> None:
    user_id = make_user(store, settings)
    at = now()
    for _ in range(settings.lockout_threshold):
        fail_login(store, settings, "alice", "wrong password!", at)
    new_password = "a brand new passphrase"
    with store.session() as session:
        identity.set_password(session, user_id, new_password, settings=settings)
    assert fail_login(store, settings, "alice", PASSWORD, at).reason == "bad_secret"
    with store.session() as session:
        row = identity.authenticate_password(
            session, "alice", new_password, settings=settings, now=at
        )
        assert row.id == user_id
    with pytest.raises(ValidationFailedError) as caught, store.session() as session:
        identity.set_password(session, user_id, "short", settings=settings)
    assert pointers(caught.value) == ["/password"]


def test_set_password_refuses_service_and_idp_accounts(store: Store, settings) -> None:
    with store.session() as session:
        service, _ = identity.create_service_account(session, name="ci", settings=settings)
        idp = identity.create_user(
            session, username="oidc.dan", password=None, source="oidc", settings=settings
        )
    for target in (service.id, idp.id):
        with pytest.raises(ConflictError), store.session() as session:
            identity.set_password(session, target, "a brand new passphrase", settings=settings)


def test_deactivation_revokes_every_token_at_once(store: Store, settings) -> None:
    user_id = make_user(store, settings)
    other_id = make_user(store, settings, "bob")
    with store.session() as session:
        issued = [
            identity.issue_api_token(
                session,
                principal_id=user_id,
                name=f"t{i}",
                scopes=None,
                expires_in_days=30,
                settings=settings,
            )
            for i in range(3)
        ]
        _, others = identity.issue_api_token(
            session,
            principal_id=other_id,
            name="bob's",
            scopes=None,
            expires_in_days=30,
            settings=settings,
        )
    at = now()
    with store.session() as session:
        identity.deactivate(session, user_id, now=at)
    with store.session(read_only=True) as session:
        rows = identity.list_api_tokens(session, user_id)
        assert [r.revoked_at for r in rows] == [at, at, at]
        row = identity.get_principal(session, user_id)
        assert not row.active
        assert row.tokens_valid_after == at
    for _, plaintext in issued:
        with pytest.raises(LoginRefused) as caught, store.session() as session:
            identity.authenticate_api_token(session, plaintext)
        assert caught.value.reason == "revoked"
    assert fail_login(store, settings, "alice", PASSWORD, at).reason == "inactive"
    # Nobody else's token is touched.
    with store.session() as session:
        assert identity.authenticate_api_token(session, others)[1].id == other_id


def test_reactivation_lets_the_user_in_but_keeps_old_tokens_dead(store: Store, settings) -> None:
    user_id = make_user(store, settings)
    with store.session() as session:
        _, plaintext = identity.issue_api_token(
            session,
            principal_id=user_id,
            name="t",
            scopes=None,
            expires_in_days=30,
            settings=settings,
        )
        identity.deactivate(session, user_id)
    with store.session() as session:
        identity.reactivate(session, user_id)
    assert login(store, settings, "alice", now()).id == user_id
    with pytest.raises(LoginRefused), store.session() as session:
        identity.authenticate_api_token(session, plaintext)


def test_get_principal_of_unknown_id_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError), store.session(read_only=True) as session:
        identity.get_principal(session, "nope")


# -- role bindings -------------------------------------------------------------------------------


def test_grant_validates_role_and_condition(store: Store, settings) -> None:
    user_id = make_user(store, settings)
    with pytest.raises(ValidationFailedError) as caught, store.session() as session:
        identity.grant(session, subject_kind="principal", subject=user_id, role="superuser")
    assert pointers(caught.value) == ["/role"]


@pytest.mark.parametrize(
    "condition",
    [
        "resource.owner ==",
        "resource.owner == principal.username) || (true",
        "inputs.x == 1",
        "resource.a } and ${true",
        "   ",
    ],
)
def test_condition_that_does_not_compile_points_at_condition(
    store: Store, settings, condition: str
) -> None:
    user_id = make_user(store, settings)
    with pytest.raises(ValidationFailedError) as caught, store.session() as session:
        identity.grant(
            session,
            subject_kind="principal",
            subject=user_id,
            role="operator",
            condition=condition,
        )
    assert set(pointers(caught.value)) == {"/condition"}
    with store.session(read_only=True) as session:
        assert identity.list_bindings(session) == []


def test_grant_needs_an_existing_folder_and_principal(store: Store, settings) -> None:
    user_id = make_user(store, settings)
    with pytest.raises(NotFoundError), store.session() as session:
        identity.grant(
            session, subject_kind="principal", subject=user_id, role="operator", folder="nope"
        )
    with pytest.raises(NotFoundError), store.session() as session:
        identity.grant(session, subject_kind="principal", subject="ghost", role="operator")
    with store.session() as session:
        binding = identity.grant(
            session, subject_kind="principal", subject=user_id, role="operator", folder="default"
        )
        assert binding.folder == "default"


def test_identical_grant_returns_the_existing_binding(store: Store, settings) -> None:
    user_id = make_user(store, settings)
    condition = "resource.owner == principal.username"
    with store.session() as session:
        first = identity.grant(
            session, subject_kind="principal", subject=user_id, role="operator"
        ).id
        conditional = identity.grant(
            session,
            subject_kind="principal",
            subject=user_id,
            role="operator",
            condition=condition,
        ).id
    with store.session() as session:
        assert (
            identity.grant(session, subject_kind="principal", subject=user_id, role="operator").id
            == first
        )
        assert (
            identity.grant(
                session,
                subject_kind="principal",
                subject=user_id,
                role="operator",
                condition=f"  {condition} ",
            ).id
            == conditional
        )
        assert len(identity.list_bindings(session, subject=user_id)) == 2


def test_revoke_and_list_bindings(store: Store, settings) -> None:
    user_id = make_user(store, settings)
    with store.session() as session:
        mine = identity.grant(session, subject_kind="principal", subject=user_id, role="analyst")
        identity.grant(session, subject_kind="group", subject="ops", role="operator")
    with store.session() as session:
        assert [b.role for b in identity.list_bindings(session, subject_kind="group")] == [
            "operator"
        ]
        identity.revoke_binding(session, mine.id)
    with store.session() as session:
        assert identity.list_bindings(session, subject_kind="principal") == []
    with pytest.raises(NotFoundError), store.session() as session:
        identity.revoke_binding(session, mine.id)


def add_to_group(store: Store, principal_id: str, group: str) -> None:
    with store.session() as session:
        row = session.scalars(select(GroupRow).where(GroupRow.display_name == group)).first()
        if row is None:
            row = GroupRow(id=f"g-{group}", display_name=group)
            session.add(row)
            session.flush()
        session.add(GroupMemberRow(group_id=row.id, principal_id=principal_id))


def test_bindings_for_includes_group_bindings(store: Store, settings) -> None:
    user_id = make_user(store, settings)
    other_id = make_user(store, settings, "bob")
    with store.session() as session:
        identity.create_folder(session, "finance")
        identity.grant(session, subject_kind="principal", subject=user_id, role="analyst")
        identity.grant(
            session, subject_kind="group", subject="ops", role="operator", folder="finance"
        )
        identity.grant(session, subject_kind="group", subject="idp-auditors", role="auditor")
        identity.grant(session, subject_kind="group", subject="strangers", role="administrator")
        identity.grant(session, subject_kind="principal", subject=other_id, role="approver")
    add_to_group(store, user_id, "ops")
    add_to_group(store, other_id, "strangers")
    with store.session(read_only=True) as session:
        assert identity.group_names(session, user_id) == ["ops"]
        assert identity.bindings_for(session, user_id) == (
            Binding("analyst"),
            Binding("operator", "finance"),
        )
        # Groups named by an IdP token count as well.
        assert identity.bindings_for(session, user_id, ["idp-auditors", "ops"]) == (
            Binding("analyst"),
            Binding("operator", "finance"),
            Binding("auditor"),
        )


def test_a_role_held_twice_is_one_binding(store: Store, settings) -> None:
    user_id = make_user(store, settings)
    with store.session() as session:
        identity.grant(session, subject_kind="principal", subject=user_id, role="analyst")
        identity.grant(session, subject_kind="group", subject="ops", role="analyst")
    add_to_group(store, user_id, "ops")
    with store.session(read_only=True) as session:
        assert identity.bindings_for(session, user_id) == (Binding("analyst"),)


def test_to_principal_carries_bindings_groups_and_scopes(store: Store, settings) -> None:
    user_id = make_user(store, settings)
    with store.session() as session:
        identity.grant(session, subject_kind="group", subject="ops", role="operator")
    add_to_group(store, user_id, "ops")
    with store.session(read_only=True) as session:
        row = identity.get_principal(session, user_id)
        plain = identity.to_principal(session, row, via="session")
        scoped = identity.to_principal(
            session,
            row,
            via="token",
            groups=["idp"],
            token_id="abc",
            scopes=["runs.read"],
        )
    assert (plain.id, plain.kind, plain.username, plain.actor) == (
        user_id,
        "user",
        "alice",
        "user:alice",
    )
    assert plain.bindings == (Binding("operator"),)
    assert plain.groups == ("ops",)
    assert allows(plain, "runs.start", "default")
    assert scoped.groups == ("idp", "ops")
    assert (scoped.via, scoped.token_id, scoped.scopes) == (
        "token",
        "abc",
        frozenset({"runs.read"}),
    )
    assert allows(scoped, "runs.read", "default")
    assert not allows(scoped, "runs.start", "default")


# -- folders -------------------------------------------------------------------------------------


def test_folders(store: Store) -> None:
    with store.session() as session:
        assert [f.name for f in identity.list_folders(session)] == ["default"]
        identity.create_folder(session, "finance", "Money")
        assert identity.folder_exists(session, "finance")
        assert not identity.folder_exists(session, "hr")
    with pytest.raises(ConflictError), store.session() as session:
        identity.create_folder(session, "finance")
    for bad in ("Finance", "-x", "a b", "", "x" * 101):
        with pytest.raises(ValidationFailedError) as caught, store.session() as session:
            identity.create_folder(session, bad)
        assert pointers(caught.value) == ["/name"]
    with store.session(read_only=True) as session:
        folders = identity.list_folders(session)
        assert [f.name for f in folders] == ["default", "finance"]
        assert folders[1].description == "Money"
