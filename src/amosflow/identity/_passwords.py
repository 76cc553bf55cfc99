"""Password and client-secret hashes (argon2id) and the password policy of local accounts.

A secret is only ever kept as an argon2id hash with a random salt, so a copy of the database
does not give its secrets away. Verification costs the same whether or not there is a hash
to check against, so how long a refusal takes does not tell who has an account.
"""

from __future__ import annotations

import contextlib
import functools
import secrets
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from amosflow.errors import Diagnostic, ValidationFailedError

if TYPE_CHECKING:
    from amosflow.config import IdentitySettings

#: Longer inputs are refused: hashing megabytes per attempt would be a cheap denial of service.
MAX_PASSWORD_LENGTH = 1024

# argon2-cffi's defaults are RFC 9106's second recommended option (argon2id, t=3, 64 MiB, p=4).
_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """A hash of a random value no one knows, made once, to verify against when there is none."""
    return _HASHER.hash(secrets.token_urlsafe(32))


def hash_secret(value: str) -> str:
    """Return the argon2id hash (PHC string, salt and parameters included) of ``value``."""
    return _HASHER.hash(value)


def verify_secret(hash: str | None, value: str) -> bool:  # noqa: A002 - the name the callers use
    """Tell whether ``value`` matches ``hash``; never raises for a mismatch or a bad hash.

    With no usable hash (None, empty, or not an argon2 string) it still verifies ``value``
    against a dummy hash and answers False, so an unknown user or an account without a
    password takes as long to refuse as a wrong password.
    """
    if hash:
        try:
            return _HASHER.verify(hash, value)
        except VerificationError:
            return False
        except InvalidHashError:
            pass
    with contextlib.suppress(VerificationError):
        _HASHER.verify(_dummy_hash(), value)
    return False


def needs_rehash(hash: str) -> bool:  # noqa: A002 - the same name as verify_secret's
    """Tell whether ``hash`` was made with other parameters than today's (rehash on sign-in)."""
    try:
        return _HASHER.check_needs_rehash(hash)
    except (InvalidHashError, ValueError):
        return True


def check_password_policy(
    password: str, settings: IdentitySettings, *, username: str | None = None
) -> None:
    """Raise ValidationFailedError (at ``/password``) when ``password`` is too weak to keep.

    The rules are the ones that matter for a password chosen by a person (NIST SP 800-63B):
    a minimum length, a sane maximum, and not the username itself; no composition rules.
    """
    problems: list[str] = []
    if len(password) < settings.min_password_length:
        problems.append(
            f"the password must be at least {settings.min_password_length} characters long"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(f"the password must be at most {MAX_PASSWORD_LENGTH} characters long")
    if username is not None and password.casefold() == username.casefold():
        problems.append("the password must not be the username")
    if problems:
        raise ValidationFailedError([Diagnostic("/password", problem) for problem in problems])
