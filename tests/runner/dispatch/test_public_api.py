"""The public surface of amosflow.runner.dispatch."""

from __future__ import annotations

import amosflow.runner.dispatch

EXPECTED = {
    "CAPABILITIES",
    "Enrollment",
    "FleetEntry",
    "JobRow",
    "JobState",
    "LOCAL_ZONE",
    "Lease",
    "NewJob",
    "PlatformCA",
    "RUNNER_REFUSED",
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
}


def test_exports_are_pinned() -> None:
    """The package exports exactly the names others code against, and each one exists."""
    assert set(amosflow.runner.dispatch.__all__) == EXPECTED
    assert all(hasattr(amosflow.runner.dispatch, name) for name in EXPECTED)
