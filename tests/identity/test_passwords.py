"""Password hashing and the password policy: argon2id, no exceptions, no timing shortcut."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher, Type, extract_parameters

from amosflow.errors import ValidationFailedError
from amosflow.identity import (
    IdentitySettings,
    check_password_policy,
    hash_secret,
    needs_rehash,
    verify_secret,
)
from amosflow.identity import _passwords as passwords


class CountingHasher(PasswordHasher):
    """A real hasher that counts how many argon2 verifications it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.verified: list[str] = []

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # noqa: A002
        self.verified.append(str(hash))
        return super().verify(hash, password)


def test_hash_is_argon2id_salted_and_verifies() -> None:
    first = hash_secret("correct horse battery staple")
    second = hash_secret("correct horse battery staple")
    assert extract_parameters(first).type is Type.ID
    assert first.startswith("$argon2id$")
    assert first != second  # a random salt each time
    assert "correct horse" not in first
    assert verify_secret(first, "correct horse battery staple")
    assert verify_secret(second, "correct horse battery staple")


def test_wrong_value_and_broken_hashes_are_false_not_errors() -> None:
    stored = hash_secret("correct horse battery staple")
    assert not verify_secret(stored, "Correct horse battery staple")
    assert not verify_secret("not a hash at all", "x")
    assert not verify_secret("$argon2id$v=19$m=65536,t=3,p=4$xx$yy", "x")
    assert not verify_secret("", "x")
    assert not verify_secret(None, "x")


@pytest.mark.parametrize("stored", [None, "", "not a hash"], ids=["none", "empty", "invalid"])
def test_missing_hash_still_costs_one_verification(monkeypatch, stored) -> None:
    """An unknown user is checked against a dummy hash, so it takes as long as a known one."""
    counting = CountingHasher()
    monkeypatch.setattr(passwords, "_HASHER", counting)
    passwords._dummy_hash.cache_clear()
    try:
        assert verify_secret(stored, "some password") is False
        argon2_runs = [h for h in counting.verified if h.startswith("$argon2id$")]
        assert len(argon2_runs) == 1
    finally:
        passwords._dummy_hash.cache_clear()


def test_known_hash_costs_exactly_one_verification(monkeypatch) -> None:
    counting = CountingHasher()
    monkeypatch.setattr(passwords, "_HASHER", counting)
    stored = hash_secret("correct horse battery staple")
    assert not verify_secret(stored, "wrong")
    assert counting.verified == [stored]


def test_needs_rehash_when_parameters_are_weaker_than_today() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("x")
    assert needs_rehash(weak)
    assert not needs_rehash(hash_secret("x"))
    assert needs_rehash("garbage")


def _pointers(err: ValidationFailedError) -> list[str]:
    return [d.pointer for d in err.diagnostics]


def test_policy_refuses_short_password(tmp_path) -> None:
    settings = IdentitySettings(home=tmp_path, min_password_length=12)
    with pytest.raises(ValidationFailedError) as caught:
        check_password_policy("elevenchars", settings)
    assert _pointers(caught.value) == ["/password"]
    assert "at least 12" in str(caught.value)
    check_password_policy("twelve chars", settings)


def test_policy_refuses_the_username_in_any_case(tmp_path) -> None:
    settings = IdentitySettings(home=tmp_path, min_password_length=12)
    with pytest.raises(ValidationFailedError) as caught:
        check_password_policy("Administrator", settings, username="administrator")
    assert _pointers(caught.value) == ["/password"]
    assert "username" in str(caught.value)
    check_password_policy("Administrator1", settings, username="administrator")


def test_policy_refuses_absurdly_long_password(tmp_path) -> None:
    settings = IdentitySettings(home=tmp_path)
    with pytest.raises(ValidationFailedError) as caught:
        check_password_policy("x" * (passwords.MAX_PASSWORD_LENGTH + 1), settings)
    assert _pointers(caught.value) == ["/password"]
    check_password_policy("x" * passwords.MAX_PASSWORD_LENGTH, settings)
