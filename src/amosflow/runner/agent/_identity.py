"""An enrolled runner's files, and enrollment through the API with a one-time token.

The directory holds the key (0600), the certificate, the pinned platform CA and
``runner.json`` (id, endpoint, zone, capabilities); nothing else identifies the runner.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from amosflow.errors import AmosError, AuthenticationError
from amosflow.host import write_private
from amosflow.runner.agent._keys import RunnerKey, generate_runner_key, key_pem, make_csr

if TYPE_CHECKING:
    from pathlib import Path

KEY_FILE, CERT_FILE, CA_FILE, META_FILE = "runner.key", "runner.crt", "ca.pem", "runner.json"


@dataclass(frozen=True)
class RunnerIdentity:
    """An enrolled runner's files: key (0600), certificate, the pinned CA, and its endpoint."""

    directory: Path
    runner_id: str
    endpoint: str
    zone: str
    capabilities: tuple[str, ...]

    @classmethod
    def load(cls, directory: Path) -> RunnerIdentity:
        """Read an enrolled runner's identity; a clear error when it is not enrolled."""
        meta_path = directory / META_FILE
        if not meta_path.exists():
            raise AuthenticationError(
                f"no runner is enrolled in {directory}: run `amos runner enroll`"
            )
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        return cls(
            directory=directory,
            runner_id=str(meta["runner_id"]),
            endpoint=str(meta["endpoint"]),
            zone=str(meta["zone"]),
            capabilities=tuple(meta["capabilities"]),
        )

    def tls(self) -> ssl.SSLContext:
        """Client TLS: present our certificate, trust only the platform CA."""
        context = ssl.create_default_context(cafile=str(self.directory / CA_FILE))
        context.load_cert_chain(str(self.directory / CERT_FILE), str(self.directory / KEY_FILE))
        return context


def enroll(api_url: str, token: str, name: str, directory: Path) -> RunnerIdentity:
    """Create a key pair, send a CSR with the one-time token, keep what comes back."""
    key = generate_runner_key()
    body = {"token": token, "csr": make_csr(key, name).decode(), "name": name}
    try:
        response = httpx.post(f"{api_url.rstrip('/')}/api/v1/runners/enroll", json=body, timeout=30)
    except httpx.HTTPError as err:
        raise AmosError(f"cannot reach {api_url}: {err}") from None
    if response.status_code == httpx.codes.UNAUTHORIZED:
        raise AuthenticationError("the enrollment token was refused (unknown, used or expired)")
    if response.is_error:
        raise AmosError(f"enrollment refused: HTTP {response.status_code} {response.text[:300]}")
    return save_identity(directory, key, response.json())


def save_identity(directory: Path, key: RunnerKey, enrolled: dict[str, Any]) -> RunnerIdentity:
    """Keep what enrollment gave: the key (0600), certificate, CA and endpoint."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(directory / KEY_FILE, key_pem(key), exclusive=False)
    (directory / CERT_FILE).write_text(enrolled["certificate"], encoding="utf-8")
    (directory / CA_FILE).write_text(enrolled["ca"], encoding="utf-8")
    meta = {k: enrolled[k] for k in ("runner_id", "endpoint", "zone", "capabilities")}
    (directory / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return RunnerIdentity.load(directory)


def repoint(directory: Path, endpoint: str) -> RunnerIdentity | None:
    """Point the runner enrolled in ``directory`` at ``endpoint``; None when none is enrolled.

    The node may have moved its endpoint (another port) since its own runner enrolled.
    """
    meta_path = directory / META_FILE
    if not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["endpoint"] = endpoint
    meta_path.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return RunnerIdentity.load(directory)
