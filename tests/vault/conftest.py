"""Vault fixtures: SQLite and PostgreSQL stores, each key provider (file, SoftHSM2, transit)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from amosflow.config import EngineSettings
from amosflow.store import Store
from amosflow.vault import KeyFileProvider, KeyProvider, Vault
from tests.store.conftest import pg_store, store, store_url  # noqa: F401
from tests.support.transit_server import TransitServer

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN = "amos-test"
PIN = "1234"
MISSING_SOFTHSM = (
    "SoftHSM2 (softhsm2-util and libsofthsm2.so) is not installed; the PKCS#11 vault tests "
    "need it: run `make deps` (apt-get install softhsm2) and try again."
)
CANARY = "canary-vault-5e1d-do-not-leak"


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One SoftHSM2 token initialised in a temp dir (SOFTHSM2_CONF) for the session."""
    util = shutil.which("softhsm2-util")
    if util is None or not Path(SOFTHSM_MODULE).exists():
        pytest.fail(MISSING_SOFTHSM, pytrace=False)
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\n")
    before = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        [util, "--init-token", "--free", "--label", TOKEN, "--so-pin", "5678", "--pin", PIN],
        check=True,
        capture_output=True,
    )
    try:
        yield SOFTHSM_MODULE
    finally:
        if before is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = before


def pkcs11_provider(module: str, label: str | None = None) -> KeyProvider:
    """A PKCS#11 provider with its own key ring (a fresh key label) in the session token."""
    from amosflow.vault._pkcs11 import Pkcs11Provider

    return Pkcs11Provider(module, TOKEN, PIN, label=label or f"kek-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def transit_server() -> Iterator[TransitServer]:
    """One transit-compatible KMS on loopback for the session (decision 0030)."""
    server = TransitServer().start()
    try:
        yield server
    finally:
        server.stop()


def transit_provider(server: TransitServer, key: str | None = None) -> KeyProvider:
    """A transit provider with its own key ring (a fresh key name) on the session server."""
    from amosflow.vault._transit import TransitProvider

    return TransitProvider(server.url, server.token, key or f"kek-{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["file", "pkcs11", "transit"])
def provider(request: pytest.FixtureRequest, tmp_path: Path) -> KeyProvider:
    """Each key provider: the key file, a SoftHSM2 token through PKCS#11, a transit KMS."""
    if request.param == "file":
        return KeyFileProvider(tmp_path / "home" / "vault" / "kek.json")
    if request.param == "transit":
        return transit_provider(request.getfixturevalue("transit_server"))
    return pkcs11_provider(request.getfixturevalue("softhsm"))


@pytest.fixture
def vault(store: Store, provider: KeyProvider) -> Vault:  # noqa: F811
    """An unsealed vault on each backend with each provider."""
    return Vault(store, provider)


@pytest.fixture
def settings(settings: EngineSettings, tmp_path: Path, monkeypatch) -> EngineSettings:
    """Engine settings whose worker finds the API node's store (tests.api.conftest layout)."""
    monkeypatch.setenv("AMOS_DATABASE_URL", f"sqlite:///{tmp_path / 'amos.db'}")
    return settings
