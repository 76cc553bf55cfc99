"""Where secret values come from: the vault when the install has one, ``AMOS_SECRET_<NAME>`` else.

Only the worker that runs an action resolves a value; the control plane only asks whether a
binding exists, so it can refuse a run that would need a missing secret.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from temporalio import activity

from amosflow import audit, redaction
from amosflow.config import StoreSettings
from amosflow.errors import ActionError, AuditError, NotFoundError, VaultError, VaultSealedError
from amosflow.store import open_store
from amosflow.vault import Vault, is_configured, open_vault

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from amosflow.store import Store


def env_name(name: str) -> str:
    """The environment variable that binds secret ``name`` (`erp.token` → AMOS_SECRET_ERP_TOKEN)."""
    return "AMOS_SECRET_" + "".join(c if c.isalnum() else "_" for c in name).upper()


def is_bound(name: str) -> bool:
    """Tell whether secret ``name`` has an environment binding, without reading it."""
    return env_name(name) in os.environ


def bound_names(names: list[str], store: Store | None = None) -> set[str]:
    """The subset of ``names`` bound in the vault of ``store`` (no key needed) or the env."""
    in_vault = Vault(store, None).names(list(names)) if store is not None else set()
    return in_vault | {name for name in names if is_bound(name)}


def resolve(name: str) -> str:
    """Read the value of secret ``name``; an unbound secret fails at once, without retry."""
    value = os.environ.get(env_name(name))
    if value is None:
        raise ActionError(f"secret {name!r} is not bound", type_="SecretMissing", retryable=False)
    redaction.hold(value)  # masked in every log line while the step runs
    return value


class VaultResolver:
    """The local worker's resolver: the install's vault first, environment variables after.

    The vault is opened lazily (the control plane may create it after the worker starts),
    reading the store and the key file only; no value is cached.
    """

    def __init__(self, home: Path, store_url: str | None = None) -> None:
        self.home = home
        self.store_url = store_url or StoreSettings(home=home).url
        self._lock = threading.Lock()
        self._vault: Vault | None = None
        self._store: Store | None = None

    def _open(self) -> Vault | None:
        with self._lock:
            if self._vault is not None and not self._vault.sealed:
                return self._vault
            if not is_configured(self.home):
                return None
            if self._store is None:
                self._store = open_store(self.store_url)
            self._vault = open_vault(self._store, self.home, create=False)
            return self._vault

    def __call__(self, name: str) -> str:
        """Resolve ``name``; a sealed vault fails closed and retryable, so the run waits."""
        try:
            vault = self._open()
            if vault is not None:
                value = vault.reveal(name)
                redaction.hold(value)  # masked in every log line while the step runs
                self._audit_read(vault, name)
                return value
        except NotFoundError:
            pass
        except VaultSealedError as err:
            raise ActionError(str(err), type_="VaultSealed", retryable=True) from None
        except VaultError as err:
            raise ActionError(str(err), type_="VaultError", retryable=False) from None
        except AuditError as err:
            # No record, no value: the step waits (retries) until the trail can be written.
            raise ActionError(str(err), type_="AuditUnavailable", retryable=True) from None
        return resolve(name)

    def _audit_read(self, vault: Vault, name: str) -> None:
        """Record who read which secret for which run and step; never the value."""
        details: dict[str, str] = {"secret": name}
        if activity.in_activity():
            info = activity.info()
            details |= {"run_id": info.workflow_id or "", "step": info.activity_id}
        assert self._store is not None  # _open() made it
        folder = vault.metadata(name).folder
        with self._store.session() as session:
            audit.append(
                session,
                actor="engine:worker",
                action="secrets.read",
                resource=f"secrets/{name}",
                folder=folder,
                details=details,
            )


def resolver_for(home: Path) -> Callable[[str], str]:
    """The resolver a worker in ``home`` uses for ``${secrets.NAME}``."""
    return VaultResolver(home)
