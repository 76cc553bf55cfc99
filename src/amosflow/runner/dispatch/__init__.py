"""The control plane's side of the runner fleet: leases, the CA and enrollment, the endpoint.

Runners are outbound-only workers in other network zones. The dispatch activity queues a
step's side effect as a job; a runner leases it (with a fencing token) through the mTLS
endpoint, renews it while it works and reports it; a report from a lease that moved on is
refused. The platform CA enrolls a runner with a one-time token and checks its client
certificate on every request. Store functions take the caller's Session and an explicit
``now``; the fleet's use cases (``enroll_with_token``, ``fleet``, ``drain_runner`` …) open
their own transaction.
"""

from amosflow.runner.dispatch._activity import dispatch_activity
from amosflow.runner.dispatch._ca import PlatformCA
from amosflow.runner.dispatch._enrollment import (
    Enrollment,
    create_enrollment_token,
    enroll,
    token_hash,
    verify_client_cert,
)
from amosflow.runner.dispatch._fleet import (
    FleetEntry,
    drain_runner,
    enroll_with_token,
    fleet,
    issue_enrollment_token,
    revoke_runner,
)
from amosflow.runner.dispatch._grants import (
    CAPABILITIES,
    RUNNER_REFUSED,
    RunnerRefused,
    RunnerStatus,
)
from amosflow.runner.dispatch._jobs import JobRow, JobState, NewJob, enqueue, expire, get_job
from amosflow.runner.dispatch._leases import (
    Lease,
    acquire,
    complete,
    complete_or_deny,
    renew,
)
from amosflow.runner.dispatch._local import LOCAL_ZONE, enroll_local
from amosflow.runner.dispatch._registry import (
    drain,
    eligible_runners,
    get_runner,
    heartbeat,
    list_runners,
    no_eligible_runner_message,
    register_runner,
    resume,
    revoke,
)
from amosflow.runner.dispatch._server import endpoint_url, fleet_server

__all__ = [
    "CAPABILITIES",
    "LOCAL_ZONE",
    "RUNNER_REFUSED",
    "Enrollment",
    "FleetEntry",
    "JobRow",
    "JobState",
    "Lease",
    "NewJob",
    "PlatformCA",
    "RunnerRefused",
    "RunnerStatus",
    "acquire",
    "complete",
    "complete_or_deny",
    "create_enrollment_token",
    "dispatch_activity",
    "drain",
    "drain_runner",
    "eligible_runners",
    "endpoint_url",
    "enqueue",
    "enroll",
    "enroll_local",
    "enroll_with_token",
    "expire",
    "fleet",
    "fleet_server",
    "get_job",
    "get_runner",
    "heartbeat",
    "issue_enrollment_token",
    "list_runners",
    "no_eligible_runner_message",
    "register_runner",
    "renew",
    "resume",
    "revoke",
    "revoke_runner",
    "token_hash",
    "verify_client_cert",
]
