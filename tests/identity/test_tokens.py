"""Personal API tokens on SQLite and PostgreSQL: hash only, and every way a token is dead."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from amosflow import identity
from amosflow.errors import ConflictError, NotFoundError, ValidationFailedError
from amosflow.identity import LoginRefused
from amosflow.store import Store

PLAINTEXT = re.compile(r"amos_pat_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def user_id(store: Store, settings) -> str:
    with store.session() as session:
        return identity.create_user(
            session, username="alice", password="correct horse battery", settings=settings
        ).id


def issue(
    store: Store,
    settings,
    principal_id: str,
    *,
    scopes: list[str] | None = None,
    days: int | None = 30,
    at: datetime | None = None,
) -> tuple[str, str]:
    with store.session() as session:
        row, plaintext = identity.issue_api_token(
            session,
            principal_id=principal_id,
            name="laptop",
            scopes=scopes,
            expires_in_days=days,
            settings=settings,
            now=at,
        )
        return row.id, plaintext


def refusal(store: Store, plaintext: str, at: datetime | None = None) -> LoginRefused:
    with pytest.raises(LoginRefused) as caught, store.session() as session:
        identity.authenticate_api_token(session, plaintext, now=at)
    assert str(caught.value) == identity.TOKEN_REFUSED
    return caught.value


def test_plaintext_has_the_documented_shape(store: Store, settings, user_id: str) -> None:
    token_id, plaintext = issue(store, settings, user_id)
    match = PLAINTEXT.fullmatch(plaintext)
    assert match is not None
    assert match.group(1) == token_id


def test_only_the_hash_is_stored(store: Store, settings, user_id: str) -> None:
    token_id, plaintext = issue(store, settings, user_id)
    match = PLAINTEXT.fullmatch(plaintext)
    assert match is not None
    secret = match.group(2)
    with store.session(read_only=True) as session:
        rows = session.execute(text("SELECT * FROM api_tokens")).mappings().all()
    assert len(rows) == 1
    stored = " ".join(str(value) for value in rows[0].values())
    assert plaintext not in stored
    assert secret not in stored
    assert rows[0]["token_hash"] == hashlib.sha256(plaintext.encode()).hexdigest()
    assert rows[0]["id"] == token_id


def test_round_trip_records_last_use(store: Store, settings, user_id: str) -> None:
    token_id, plaintext = issue(store, settings, user_id)
    at = now()
    with store.session() as session:
        row, owner = identity.authenticate_api_token(session, plaintext, now=at)
        assert (row.id, owner.id) == (token_id, user_id)
    with store.session(read_only=True) as session:
        assert identity.list_api_tokens(session, user_id)[0].last_used_at == at
    # Within a minute the timestamp is not rewritten; after it, it is.
    with store.session() as session:
        identity.authenticate_api_token(session, plaintext, now=at + timedelta(seconds=30))
    with store.session(read_only=True) as session:
        assert identity.list_api_tokens(session, user_id)[0].last_used_at == at
    later = at + timedelta(minutes=2)
    with store.session() as session:
        identity.authenticate_api_token(session, plaintext, now=later)
    with store.session(read_only=True) as session:
        assert identity.list_api_tokens(session, user_id)[0].last_used_at == later


def test_expired_token_is_refused(store: Store, settings, user_id: str) -> None:
    at = now()
    _, plaintext = issue(store, settings, user_id, days=1, at=at)
    with store.session() as session:
        identity.authenticate_api_token(session, plaintext, now=at + timedelta(hours=23))
    refused = refusal(store, plaintext, at + timedelta(days=1))
    assert refused.reason == "expired"
    assert refused.principal_id == user_id


def test_revoked_token_is_refused(store: Store, settings, user_id: str) -> None:
    token_id, plaintext = issue(store, settings, user_id)
    with store.session() as session:
        identity.revoke_api_token(session, user_id, token_id)
    assert refusal(store, plaintext).reason == "revoked"


@pytest.mark.parametrize(
    "plaintext",
    [
        "",
        "amos_pat_",
        "Bearer amos_pat_x",
        "amos_pat_0123456789abcdef",
        "amos_pat_0123456789ABCDEF_" + "a" * 43,
        "amos_pat_0123456789abcdef_" + "a" * 42,
        "amos_pat_0123456789abcdef_" + "a" * 43 + " ",
        "amos_pat_0123456789abcdef_" + "a" * 42 + "!",
        "eyJhbGciOiJub25lIn0.e30.",
    ],
)
def test_malformed_token_is_refused(store: Store, plaintext: str) -> None:
    assert refusal(store, plaintext).reason == "malformed"


def test_well_formed_but_unknown_or_tampered_token_is_refused(
    store: Store, settings, user_id: str
) -> None:
    token_id, plaintext = issue(store, settings, user_id)
    assert refusal(store, f"amos_pat_0123456789abcdef_{'a' * 43}").reason == "unknown"
    flipped = plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")
    assert refusal(store, flipped).reason == "unknown"
    # The right secret under another id is not the token either.
    other_id = "f" * 16 if token_id != "f" * 16 else "e" * 16
    assert refusal(store, plaintext.replace(token_id, other_id)).reason == "unknown"


def test_credentials_reset_after_issue_invalidates(store: Store, settings, user_id: str) -> None:
    _, plaintext = issue(store, settings, user_id)
    with store.session() as session:
        row = identity.get_principal(session, user_id)
        row.tokens_valid_after = now() + timedelta(seconds=1)
    assert refusal(store, plaintext).reason == "invalidated"


def test_scopes_are_validated_and_kept(store: Store, settings, user_id: str) -> None:
    with pytest.raises(ValidationFailedError) as caught, store.session() as session:
        identity.issue_api_token(
            session,
            principal_id=user_id,
            name="ci",
            scopes=["runs.read", "runs.delete", "root"],
            expires_in_days=None,
            settings=settings,
        )
    assert [d.pointer for d in caught.value.diagnostics] == ["/scopes/1", "/scopes/2"]
    with store.session(read_only=True) as session:
        assert identity.list_api_tokens(session, user_id) == []
    _, plaintext = issue(store, settings, user_id, scopes=["runs.read", "runs.start", "runs.read"])
    with store.session() as session:
        row, _ = identity.authenticate_api_token(session, plaintext)
        assert row.scopes == ["runs.read", "runs.start"]


def test_lifetime_is_capped(store: Store, settings, user_id: str) -> None:
    at = now()
    with store.session() as session:
        capped, _ = identity.issue_api_token(
            session,
            principal_id=user_id,
            name="long",
            scopes=None,
            expires_in_days=10_000,
            settings=settings,
            now=at,
        )
        default, _ = identity.issue_api_token(
            session,
            principal_id=user_id,
            name="default",
            scopes=None,
            expires_in_days=None,
            settings=settings,
            now=at,
        )
        assert capped.expires_at == at + timedelta(days=settings.api_token_max_days)
        assert default.expires_at == at + timedelta(days=settings.api_token_max_days)
    for bad in (0, -1):
        with pytest.raises(ValidationFailedError) as caught, store.session() as session:
            identity.issue_api_token(
                session,
                principal_id=user_id,
                name="x",
                scopes=None,
                expires_in_days=bad,
                settings=settings,
            )
        assert [d.pointer for d in caught.value.diagnostics] == ["/expires_in_days"]


def test_no_token_for_missing_or_inactive_principal(store: Store, settings, user_id: str) -> None:
    with pytest.raises(NotFoundError), store.session() as session:
        identity.issue_api_token(
            session,
            principal_id="ghost",
            name="x",
            scopes=None,
            expires_in_days=None,
            settings=settings,
        )
    with store.session() as session:
        identity.deactivate(session, user_id)
    with pytest.raises(ConflictError), store.session() as session:
        identity.issue_api_token(
            session,
            principal_id=user_id,
            name="x",
            scopes=None,
            expires_in_days=None,
            settings=settings,
        )


def test_only_the_owner_can_revoke(store: Store, settings, user_id: str) -> None:
    token_id, plaintext = issue(store, settings, user_id)
    with store.session() as session:
        bob = identity.create_user(
            session, username="bob", password="correct horse battery", settings=settings
        )
    with pytest.raises(NotFoundError), store.session() as session:
        identity.revoke_api_token(session, bob.id, token_id)
    with pytest.raises(NotFoundError), store.session() as session:
        identity.revoke_api_token(session, user_id, "0" * 16)
    with store.session() as session:
        identity.authenticate_api_token(session, plaintext)
    at = now()
    with store.session() as session:
        assert identity.revoke_api_token(session, user_id, token_id, now=at).revoked_at == at
    with store.session() as session:
        again = identity.revoke_api_token(session, user_id, token_id, now=at + timedelta(hours=1))
        assert again.revoked_at == at


def test_list_tokens_of_one_principal(store: Store, settings, user_id: str) -> None:
    at = now()
    first, _ = issue(store, settings, user_id, at=at)
    second, _ = issue(store, settings, user_id, at=at + timedelta(seconds=1))
    with store.session(read_only=True) as session:
        assert [t.id for t in identity.list_api_tokens(session, user_id)] == [first, second]
        assert identity.list_api_tokens(session, "someone else") == []
