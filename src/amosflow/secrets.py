"""Where secret values come from: the run's folder's vault, then ``AMOS_SECRET_<NAME>``.

Only the worker that runs an action resolves a value, and only in the folder of the run the
action belongs to, which it reads from the run's record in the store: nothing the run itself
carries can point it at another folder. The control plane only asks whether a binding exists,
so it can refuse a run that would need a missing secret. ``AMOS_SECRET_<NAME>`` variables
are the worker host's own settings, the same for every folder's runs.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from temporalio import activity

from amosflow import audit, redaction
from amosflow.config import StoreSettings
from amosflow.engine.types import root_run_id
from amosflow.errors import ActionError, AuditError, NotFoundError, VaultError, VaultSealedError
from amosflow.store import open_store, runs
from amosflow.vault import Vault, is_configured, open_vault

if TYPE_CHECKING:
    from pathlib import Path

    from amosflow.store import Store


def env_name(name: str) -> str:
    """The environment variable that binds secret ``name`` (`erp.token` → AMOS_SECRET_ERP_TOKEN)."""
    return "AMOS_SECRET_" + "".join(c if c.isalnum() else "_" for c in name).upper()


def is_bound(name: str) -> bool:
    """Tell whether secret ``name`` has an environment binding, without reading it."""
    return env_name(name) in os.environ


def bound_names(names: list[str], folder: str, store: Store | None = None) -> set[str]:
    """The subset of ``names`` bound in ``folder``'s vault (no key needed) or the env."""
    in_vault = Vault(store, None).names(list(names), folder) if store is not None else set()
    return in_vault | {name for name in names if is_bound(name)}


#: Resolves ``${secrets.NAME}`` for the run ``run_id``: ``(name, run_id) -> value``.
Resolver = Callable[[str, str], str]


def resolve(name: str, run_id: str = "") -> str:
    """Read the value of secret ``name`` from the environment; unbound fails at once, no retry."""
    del run_id  # the environment is the worker's, the same for every run
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

    def __call__(self, name: str, run_id: str) -> str:
        """Resolve ``name`` in the folder of run ``run_id``; a sealed vault fails closed.

        A run the store does not know (one started by `amos run`, outside any node) has no
        folder and gets environment bindings only.
        """
        try:
            vault = self._open()
            folder = self._folder_of(run_id) if vault is not None else None
            if vault is not None and folder is not None:
                value = vault.reveal(name, folder)
                redaction.hold(value)  # masked in every log line while the step runs
                self._audit_read(name, folder, run_id)
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

    def _folder_of(self, run_id: str) -> str | None:
        """The folder of a run, from its record; None for a run the store does not know."""
        assert self._store is not None  # _open() made it
        try:
            with self._store.session(read_only=True) as session:
                return runs.get_run(session, root_run_id(run_id)).folder
        except NotFoundError:
            return None

    def _audit_read(self, name: str, folder: str, run_id: str) -> None:
        """Record who read which secret for which run and step; never the value."""
        details: dict[str, str] = {"secret": name, "run_id": run_id}
        if activity.in_activity():
            details["step"] = activity.info().activity_id
        assert self._store is not None  # _open() made it
        with self._store.session() as session:
            audit.append(
                session,
                actor="engine:worker",
                action="secrets.read",
                resource=f"secrets/{name}",
                folder=folder,
                details=details,
            )


def resolver_for(home: Path) -> Resolver:
    """The resolver a worker in ``home`` uses for ``${secrets.NAME}``."""
    return VaultResolver(home)
