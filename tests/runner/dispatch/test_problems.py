"""The runner endpoint answers its errors with the status and slug the API gives them."""

from __future__ import annotations

import pytest

from amosflow import errors
from amosflow.api import problems as api_problems
from amosflow.runner.dispatch import RunnerRefused
from amosflow.runner.dispatch import _problems as endpoint_problems

RAISED_BY_THE_ENDPOINT = [
    RunnerRefused("revoked"),
    errors.AuthenticationError("a runner client certificate is required"),
    errors.PermissionDeniedError("not enrolled for sql"),
    errors.NotFoundError("runner not found"),
    errors.StaleLeaseError("stale", job_id="j", runner_id="r", fence=1, current_fence=2),
    errors.ConflictError("runner exists already"),
    errors.ValidationFailedError([errors.Diagnostic("/load", "not negative")]),
    errors.VaultSealedError("this control plane has no vault"),
    errors.AuditError("the chain is broken"),
    errors.VaultError("unsafe key"),
    errors.AmosError("anything else"),
]


@pytest.mark.parametrize("err", RAISED_BY_THE_ENDPOINT, ids=lambda e: type(e).__name__)
def test_the_endpoint_and_the_api_agree(err: errors.AmosError) -> None:
    """Every error the runner protocol raises maps to the API's status and problem type."""
    assert endpoint_problems.status_for(err) == api_problems.status_for(err)
