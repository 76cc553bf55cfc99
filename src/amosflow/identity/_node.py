"""The node's own principal: how `amos up` loads examples and runs its smoke test.

Whoever can read the session key in AMOS_HOME can mint any session token already, so a
process on the node that holds it gains nothing by minting one for ``amos-node``; it only
makes those calls show up in the audit trail under a name of their own. The account has no
secret, so it cannot sign in from anywhere else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amosflow.identity._bindings import grant
from amosflow.identity._sessions import SessionSigner
from amosflow.identity._users import create_service_account, find_by_username

if TYPE_CHECKING:
    from amosflow.config import IdentitySettings
    from amosflow.store import Store

NODE_ACCOUNT = "amos-node"
NODE_TOKEN_SECONDS = 900


def node_token(store: Store, settings: IdentitySettings) -> str:
    """A short session token for the node's own administrator account, created on first use."""
    with store.session() as session:
        row = find_by_username(session, NODE_ACCOUNT)
        if row is None:
            row, _ = create_service_account(session, name=NODE_ACCOUNT, settings=settings)
            row.password_hash = None  # no client secret: it can only be minted here
            grant(session, subject_kind="principal", subject=row.id, role="administrator")
        principal_id = row.id
    token, _ = SessionSigner.from_settings(settings).issue(
        principal_id, ttl_seconds=NODE_TOKEN_SECONDS
    )
    return token
