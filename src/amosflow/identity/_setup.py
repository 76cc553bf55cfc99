"""The first administrator: created from the console or through a one-time setup link.

There is no default account and no default password. A fresh install has no principal at
all (the node later adds its own service account, which cannot sign in); the operator either
runs ``amos admin create`` on the host, or ``amos admin setup-link`` and opens the printed
link. The link's token is kept only as its SHA-256 in a 0600 file, is consumed by its first
successful use, and is useless once any user exists, because ``create_first_admin`` refuses
then.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING

from sqlalchemy import text

from amosflow.errors import ConflictError
from amosflow.host import exposure, write_private
from amosflow.identity._bindings import grant
from amosflow.identity._principal import ALL_FOLDERS
from amosflow.identity._sessions import IdentityKeyError
from amosflow.identity._users import count_principals, create_user

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from amosflow.config import IdentitySettings
    from amosflow.store import PrincipalRow

ADMINISTRATOR = "administrator"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_setup_token(settings: IdentitySettings) -> str:
    """Make a new setup token, keep its SHA-256 (0600), and return the token, shown once.

    A previous token stops working: only the latest link is valid.
    """
    token = secrets.token_urlsafe(32)
    write_private(settings.setup_token_path, f"{_digest(token)}\n".encode(), exclusive=False)
    return token


def setup_pending(settings: IdentitySettings) -> bool:
    """Whether a setup token is waiting to be used."""
    return settings.setup_token_path.exists()


def consume_setup_token(settings: IdentitySettings, token: str) -> bool:
    """Use up the setup token: True (and the file is gone) when ``token`` is the pending one.

    False when there is no pending token or it does not match. The comparison takes the same
    time whatever the token; of two requests racing with the right token, only the one whose
    delete succeeds gets True. Raises IdentityKeyError when others can read or write the file.
    """
    path = settings.setup_token_path
    try:
        problem = exposure(path)
        stored = path.read_bytes().strip()
    except FileNotFoundError:
        return False
    if problem is not None:
        raise IdentityKeyError(f"refusing {path}: {problem}")
    if not hmac.compare_digest(stored, _digest(token).encode()):
        return False
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def setup_complete(session: Session) -> bool:
    """Whether a user account exists, so the first administrator has been created.

    Service accounts do not count: the node creates its own (``amos-node``) on its first
    start, before anyone could have set up an administrator. Accounts are deactivated,
    never deleted, so once a user exists this stays true.
    """
    return count_principals(session, kind="user") > 0


def create_first_admin(
    session: Session, *, username: str, password: str, settings: IdentitySettings
) -> PrincipalRow:
    """Create the first user account, a local administrator on every folder.

    Raises ConflictError once any user exists (active or not), so the setup link and the
    console command cannot add a second administrator behind everyone's back.
    """
    if session.get_bind().dialect.name == "postgresql":
        # Two concurrent first setups must not both see an empty table: this lock conflicts
        # with itself and with every insert, so they take turns. SQLite's writer lock (taken
        # when the session began) serialises them already.
        session.execute(text("LOCK TABLE principals IN SHARE ROW EXCLUSIVE MODE"))
    if setup_complete(session):
        raise ConflictError(
            "the first administrator exists already; sign in as an administrator to add accounts"
        )
    row = create_user(session, username=username, password=password, settings=settings)
    grant(session, subject_kind="principal", subject=row.id, role=ADMINISTRATOR, folder=ALL_FOLDERS)
    return row
