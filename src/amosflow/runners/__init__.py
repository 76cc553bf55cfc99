"""The control-plane core of the runner fleet: job leases with fencing tokens, and the CA.

Runners are outbound-only workers in other network zones. ``leases`` keeps the queue of
their jobs and the registry of runners in the store (every function takes the caller's
Session and an explicit ``now``); ``pki`` is the platform CA that enrolls a runner with a
one-time token and checks its client certificate on every request.
"""

from __future__ import annotations

from amosflow.runners.leases import (
    CAPABILITIES,
    RUNNER_REFUSED,
    JobRow,
    JobState,
    Lease,
    NewJob,
    RunnerRefused,
    RunnerRow,
    RunnerStatus,
    acquire,
    complete,
    complete_or_deny,
    drain,
    eligible_runners,
    enqueue,
    expire,
    get_job,
    get_runner,
    heartbeat,
    list_runners,
    no_eligible_runner_message,
    record_stale,
    register_runner,
    renew,
    resume,
    revoke,
)
from amosflow.runners.pki import (
    Enrollment,
    PlatformCA,
    create_enrollment_token,
    enroll,
    generate_runner_key,
    make_csr,
    verify_client_cert,
)

__all__ = [
    "CAPABILITIES",
    "RUNNER_REFUSED",
    "Enrollment",
    "JobRow",
    "JobState",
    "Lease",
    "NewJob",
    "PlatformCA",
    "RunnerRefused",
    "RunnerRow",
    "RunnerStatus",
    "acquire",
    "complete",
    "complete_or_deny",
    "create_enrollment_token",
    "drain",
    "eligible_runners",
    "enqueue",
    "enroll",
    "expire",
    "generate_runner_key",
    "get_job",
    "get_runner",
    "heartbeat",
    "list_runners",
    "make_csr",
    "no_eligible_runner_message",
    "record_stale",
    "register_runner",
    "renew",
    "resume",
    "revoke",
    "verify_client_cert",
]
