"""The transit provider against a transit-compatible server on loopback (decision 0030).

The shared provider suite (tests/vault/test_vault.py, test_envelope.py) already runs with
``provider=transit``; these tests cover what only the transit protocol has.
"""

from __future__ import annotations

import pytest

from amosflow.errors import VaultError, VaultSealedError
from amosflow.store import Store
from amosflow.vault import Vault
from amosflow.vault._transit import TransitProvider
from tests.support.transit_server import TransitServer
from tests.vault.conftest import CANARY, transit_provider


def test_a_wrong_token_seals_the_vault(transit_server: TransitServer, store: Store) -> None:
    """A refused X-Vault-Token is a sealed vault: reads fail closed, the token is not echoed."""
    good = transit_provider(transit_server, "sealing")
    vault = Vault(store, good)
    vault.set("a", CANARY, "default")
    bad = TransitProvider(transit_server.url, "s.not-the-token", "sealing")
    with pytest.raises(VaultSealedError, match="refused the token") as caught:
        Vault(store, bad).reveal("a", "default")
    assert "s.not-the-token" not in str(caught.value)
    assert CANARY not in str(caught.value)


def test_an_unreachable_service_seals_the_vault(transit_server: TransitServer) -> None:
    """No server at the URL: the provider says sealed, not a crash."""
    gone = TransitServer().start()
    url = gone.url  # a port nothing listens on any more
    gone.stop()
    with pytest.raises(VaultSealedError, match="unreachable"):
        TransitProvider(url, transit_server.token, "k").wrap(b"\0" * 32)


def test_ciphertexts_carry_their_key_version_and_retired_versions_stop_decrypting(
    transit_server: TransitServer,
) -> None:
    """`vault:vN:` names the version; raising min_decryption_version retires the oldest."""
    provider = transit_provider(transit_server)
    first_version, first = provider.wrap(b"k" * 32)
    assert first_version == 1
    assert first.startswith(b"vault:v1:")
    assert provider.rotate() == 2
    second_version, second = provider.wrap(b"q" * 32)
    assert (second_version, second[:9]) == (2, b"vault:v2:")
    assert provider.unwrap(1, first) == b"k" * 32
    with pytest.raises(VaultError, match="does not belong"):
        provider.unwrap(2, first)
    with pytest.raises(VaultError, match="oldest, non-current"):
        provider.retire(2)
    provider.retire(1)
    assert provider.versions() == [2]
    with pytest.raises(VaultError, match="answered 400"):
        provider.unwrap(1, first)
    assert provider.unwrap(2, second) == b"q" * 32
