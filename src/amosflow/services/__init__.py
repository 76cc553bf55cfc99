"""Use cases of the control plane: every state change goes through here."""

from amosflow.services import _access as access
from amosflow.services import _audit_trail as audit_trail
from amosflow.services import _auditing as auditing
from amosflow.services import _auth as auth
from amosflow.services import _health as health
from amosflow.services import _identity as identity
from amosflow.services import _runs as runs
from amosflow.services import _scim as scim
from amosflow.services import _triggers as triggers
from amosflow.services import _upgrade as upgrade
from amosflow.services._progress import diff, follow
from amosflow.services._runs import ControlPlane, RunRecord
from amosflow.services._watcher import RunWatcher

__all__ = [
    "ControlPlane",
    "RunRecord",
    "RunWatcher",
    "access",
    "audit_trail",
    "auditing",
    "auth",
    "diff",
    "follow",
    "health",
    "identity",
    "runs",
    "scim",
    "triggers",
    "upgrade",
]
