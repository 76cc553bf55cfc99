"""The first administrator: a one-time setup token, and no second "first" administrator."""

from __future__ import annotations

import hashlib
import stat

import pytest

from amosflow import identity
from amosflow.errors import ConflictError, ValidationFailedError
from amosflow.identity import Binding, IdentityKeyError
from amosflow.store import Store

PASSWORD = "correct horse battery staple"


def test_setup_token_file_holds_only_a_hash_with_mode_0600(settings) -> None:
    token = identity.create_setup_token(settings)
    path = settings.setup_token_path
    content = path.read_text()
    assert token not in content
    assert content.strip() == hashlib.sha256(token.encode()).hexdigest()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token) >= 43


def test_setup_token_is_single_use(settings) -> None:
    token = identity.create_setup_token(settings)
    assert identity.setup_pending(settings)
    assert identity.consume_setup_token(settings, token) is True
    assert not settings.setup_token_path.exists()
    assert not identity.setup_pending(settings)
    assert identity.consume_setup_token(settings, token) is False


def test_wrong_token_is_refused_and_the_right_one_still_works(settings) -> None:
    token = identity.create_setup_token(settings)
    assert identity.consume_setup_token(settings, "not-the-token") is False
    assert identity.consume_setup_token(settings, "") is False
    assert identity.consume_setup_token(settings, token[:-1]) is False
    assert settings.setup_token_path.exists()
    assert identity.consume_setup_token(settings, token) is True


def test_no_pending_token_refuses_everything(settings) -> None:
    assert identity.consume_setup_token(settings, "anything") is False


def test_a_new_token_replaces_the_previous_one(settings) -> None:
    old = identity.create_setup_token(settings)
    new = identity.create_setup_token(settings)
    assert old != new
    assert identity.consume_setup_token(settings, old) is False
    assert identity.consume_setup_token(settings, new) is True


def test_setup_token_file_readable_by_others_is_refused(settings) -> None:
    token = identity.create_setup_token(settings)
    settings.setup_token_path.chmod(0o644)
    with pytest.raises(IdentityKeyError, match="chmod 600"):
        identity.consume_setup_token(settings, token)
    assert settings.setup_token_path.exists()


def test_first_admin_is_an_administrator_everywhere(store: Store, settings) -> None:
    with store.session() as session:
        row = identity.create_first_admin(
            session, username="root-admin", password=PASSWORD, settings=settings
        )
    with store.session(read_only=True) as session:
        assert identity.count_principals(session) == 1
        assert identity.bindings_for(session, row.id) == (Binding("administrator", "*"),)
    with store.session() as session:
        signed_in = identity.authenticate_password(
            session, "root-admin", PASSWORD, settings=settings
        )
        assert signed_in.id == row.id


def test_first_admin_is_refused_once_any_account_exists(store: Store, settings) -> None:
    with store.session() as session:
        identity.create_first_admin(session, username="admin", password=PASSWORD, settings=settings)
    with pytest.raises(ConflictError, match="exists already"), store.session() as session:
        identity.create_first_admin(
            session, username="intruder", password=PASSWORD, settings=settings
        )
    with store.session(read_only=True) as session:
        assert [p.username for p in identity.list_principals(session)] == ["admin"]
        assert len(identity.list_bindings(session)) == 1


def test_service_accounts_do_not_complete_setup(store: Store, settings) -> None:
    """The node's own service account exists before anyone could set up an administrator."""
    with store.session() as session:
        identity.create_service_account(session, name="amos-node", settings=settings)
        assert not identity.setup_complete(session)
    with store.session() as session:
        identity.create_first_admin(session, username="admin", password=PASSWORD, settings=settings)
        assert identity.setup_complete(session)
    with store.session(read_only=True) as session:
        assert identity.count_principals(session) == 2
        assert identity.count_principals(session, kind="user") == 1


def test_a_deactivated_user_still_completes_setup(store: Store, settings) -> None:
    with store.session() as session:
        row = identity.create_first_admin(
            session, username="admin", password=PASSWORD, settings=settings
        )
        identity.deactivate(session, row.id)
    with pytest.raises(ConflictError), store.session() as session:
        identity.create_first_admin(session, username="again", password=PASSWORD, settings=settings)


def test_weak_first_admin_password_creates_nothing(store: Store, settings) -> None:
    with pytest.raises(ValidationFailedError), store.session() as session:
        identity.create_first_admin(session, username="admin", password="admin", settings=settings)
    with store.session(read_only=True) as session:
        assert identity.count_principals(session) == 0
        assert identity.list_bindings(session) == []
