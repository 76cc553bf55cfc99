"""The single node: one supervisor for Temporal, NATS, the API and a worker."""

from amosflow.node._home import claim, claim_dir, hand_over, private_umask, secure_home, share_home
from amosflow.node._service_user import (
    Demotion,
    ServiceUser,
    call_as,
    covers,
    ensure_service_user,
    needed_paths,
)
from amosflow.node._supervisor import Child, NodePlan, Supervisor

__all__ = [
    "Child",
    "Demotion",
    "NodePlan",
    "ServiceUser",
    "Supervisor",
    "call_as",
    "claim",
    "claim_dir",
    "covers",
    "ensure_service_user",
    "hand_over",
    "needed_paths",
    "private_umask",
    "secure_home",
    "share_home",
]
