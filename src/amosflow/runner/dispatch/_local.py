"""The node's own runner: enrolled directly against the store and the CA, no token on a wire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from amosflow.runner import agent
from amosflow.runner.dispatch._ca import PlatformCA
from amosflow.runner.dispatch._enrollment import create_enrollment_token, enroll
from amosflow.runner.dispatch._grants import CAPABILITIES
from amosflow.runner.dispatch._server import endpoint_url

if TYPE_CHECKING:
    from pathlib import Path

    from amosflow.config import RunnerSettings
    from amosflow.store import Store

#: The zone of the runner `amos up` starts on the node itself.
LOCAL_ZONE = "local"


def enroll_local(
    store: Store,
    settings: RunnerSettings,
    directory: Path,
    *,
    name: str = "local",
    zone: str = LOCAL_ZONE,
) -> agent.RunnerIdentity:
    """Enroll a runner of this node directly against the store and the CA.

    `amos up` owns both, so no token crosses a network; the runner still gets its own key
    and certificate and talks to the endpoint over mTLS like any other. A runner enrolled
    before is only pointed at the endpoint's current address.
    """
    enrolled = agent.repoint(directory, endpoint_url(settings))
    if enrolled is not None:
        return enrolled
    ca = PlatformCA.load_or_create(settings.directory / "ca")
    key = agent.generate_runner_key()
    now = datetime.now(UTC)
    with store.session() as session:
        token = create_enrollment_token(
            session,
            zone=zone,
            capabilities=sorted(CAPABILITIES),
            created_by="service:amos-node",
            ttl=timedelta(minutes=5),
            now=now,
        )
        done = enroll(
            session, ca, token=token, csr_pem=agent.make_csr(key, name), name=name, now=now
        )
    identity = {
        "certificate": done.cert_pem.decode(),
        "ca": done.ca_pem.decode(),
        "runner_id": done.runner_id,
        "endpoint": endpoint_url(settings),
        "zone": done.zone,
        "capabilities": list(done.capabilities),
    }
    return agent.save_identity(directory, key, identity)
