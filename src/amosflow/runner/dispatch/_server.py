"""Serve the runner endpoint beside the API: its own port, its own certificate, mTLS."""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING

import uvicorn

from amosflow.host import write_private
from amosflow.runner.dispatch import _wake as wake
from amosflow.runner.dispatch._ca import PlatformCA
from amosflow.runner.dispatch._endpoint import Fleet, create_endpoint
from amosflow.runner.dispatch._tls import PeerCertProtocol

if TYPE_CHECKING:
    import socket

    from temporalio.client import Client

    from amosflow.config import RunnerSettings
    from amosflow.store import Store
    from amosflow.vault import Vault

SERVER_CERT = "endpoint.crt"
SERVER_KEY = "endpoint.key"
KEEP_ALIVE_S = 75


class FleetServer(uvicorn.Server):
    """The endpoint's uvicorn server; when it stops, so does its store's job listener.

    At its start it delivers again the completions of recently finished jobs, which a
    previous process may have stored without Temporal taking them (decision 0066).
    """

    def __init__(self, config: uvicorn.Config, fleet: Fleet) -> None:
        super().__init__(config)
        self.fleet = fleet
        self.store = fleet.store

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve until told to exit, then close the LISTEN connection (PostgreSQL)."""
        redeliver = asyncio.create_task(self.fleet.deliveries.redeliver_recent())
        try:
            await super().serve(sockets)
        finally:
            redeliver.cancel()
            await asyncio.gather(redeliver, return_exceptions=True)
            await self.fleet.deliveries.close()
            await asyncio.to_thread(wake.stop_listening, self.store)


def endpoint_url(settings: RunnerSettings) -> str:
    """The URL runners are told to use."""
    return f"https://{settings.host}:{settings.port}"


def fleet_server(
    store: Store, client: Client, settings: RunnerSettings, vault: Vault | None = None
) -> uvicorn.Server:
    """A uvicorn server for the runner endpoint, requiring a client certificate of our CA.

    The server certificate is re-issued at every start (short-lived, names from settings);
    runners trust it through the CA they received at enrollment.
    """
    directory = settings.directory
    ca = PlatformCA.load_or_create(directory / "ca")
    cert_pem, key_pem = ca.issue_server_cert(settings.server_names)
    cert_path, key_path = directory / SERVER_CERT, directory / SERVER_KEY
    cert_path.write_bytes(cert_pem)
    write_private(key_path, key_pem, exclusive=False)
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca.certificate_pem)
    fleet = Fleet(store=store, ca=ca, client=client, settings=settings, vault=vault)
    config = uvicorn.Config(
        create_endpoint(fleet),
        host=settings.host,
        port=settings.port,
        ssl_certfile=str(cert_path),
        ssl_keyfile=str(key_path),
        ssl_ca_certs=str(ca_path),
        ssl_cert_reqs=ssl.CERT_REQUIRED,
        http=PeerCertProtocol,
        lifespan="off",
        # Longer than a runner's heartbeat interval, so its connections stay open between
        # requests: no TLS handshake per heartbeat, report or lease.
        timeout_keep_alive=KEEP_ALIVE_S,
        log_level="warning",
        proxy_headers=False,  # runners connect directly; no proxy speaks for them
    )
    return FleetServer(config, fleet)
