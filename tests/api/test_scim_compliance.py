"""The public SCIM compliance suite, ``scim2-tester``, against a fresh node: no errors.

The suite discovers the server as an IdP does (``/ServiceProviderConfig``, ``/ResourceTypes``,
``/Schemas``), with no schema supplied by the client, then creates, reads, queries, replaces,
patches and deletes Users and Groups through it.
"""

from __future__ import annotations

import httpx2
import pytest
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

from tests.api.conftest import Node

pytestmark = pytest.mark.temporal

#: What counts as a failure: a MUST broken, or worse.
_FAILED = {Status.ERROR, Status.CRITICAL}


def test_scim2_tester_reports_no_errors(node: Node) -> None:
    """Every check of the full suite passes, or at most deviates from a SHOULD."""
    http = httpx2.Client(
        base_url=f"{node.url}/scim/v2",
        headers={"Authorization": node.client.headers["Authorization"]},
        timeout=30,
    )
    with http:
        results = check_server(SyncSCIMClient(http))
    failed = [
        f"{r.status.name} {r.resource_type or ''} {r.title}: {r.reason}"
        for r in results
        if r.status in _FAILED
    ]
    ran = [r for r in results if r.status is not Status.SKIPPED]
    assert len(ran) > 50, [f"{r.status.name} {r.title}" for r in results]
    assert failed == [], "\n".join(failed)
