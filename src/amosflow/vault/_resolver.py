"""Where a worker's ``${secrets.NAME}`` values come from: its run's folder's vault, then the env.

Only the worker that runs an action resolves a value, and only in the folder of the run the
action belongs to, which it reads from the run's record in the store: nothing the run itself
carries can point it at another folder. ``AMOS_SECRET_<NAME>`` variables are the worker
host's own settings, the same for every folder's runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from amosflow.config import StoreSettings, env_secret, env_secret_bound
from amosflow.errors import ActionError, AuditError, NotFoundError, VaultError, VaultSealedError
from amosflow.store import open_store, runs
from amosflow.vault._service import Vault
from amosflow.vault._settings import is_configured, open_vault

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy.orm import Session

    from amosflow.store import Store

#: Resolves ``${secrets.NAME}`` for a step: ``(name, run_id, step) -> value``.
Resolver = Callable[[str, str, str], str]
#: Records one read in the reader's transaction: ``(session, name, folder, run_id, step)``.
ReadRecorder = Callable[["Session", str, str, str, str], None]


def bound_names(names: list[str], folder: str, store: Store | None = None) -> set[str]:
    """The subset of ``names`` bound in ``folder``'s vault (no key needed) or the env."""
    in_vault = Vault(store, None).names(list(names), folder) if store is not None else set()
    return in_vault | {name for name in names if env_secret_bound(name)}


class VaultResolver:
    """A worker's resolver: its run's folder's vault first, environment variables after.

    The vault is opened lazily (the control plane may create it after the worker starts),
    reading the store and the key file only; no value is cached. Every read is recorded by
    ``record`` in a transaction of its own before the value is handed out.
    """

    def __init__(self, home: Path, record: ReadRecorder, store_url: str | None = None) -> None:
        self.home = home
        self.store_url = store_url or StoreSettings(home=home).url
        self._record = record
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

    def __call__(self, name: str, run_id: str, step: str = "") -> str:
        """Resolve ``name`` in the folder of run ``run_id``; a sealed vault fails closed.

        A run the store does not know (one started by `amos run`, outside any node) has no
        folder and gets environment bindings only.
        """
        try:
            vault = self._open()
            folder = self._folder_of(run_id) if vault is not None else None
            if vault is not None and folder is not None:
                value = vault.reveal(name, folder)
                assert self._store is not None  # _open() made it
                with self._store.session() as session:
                    self._record(session, name, folder, run_id, step)
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
        return env_secret(name)

    def _folder_of(self, run_id: str) -> str | None:
        """The folder of a run, from its record; None for a run the store does not know."""
        assert self._store is not None  # _open() made it
        try:
            with self._store.session(read_only=True) as session:
                return runs.get_run(session, runs.root_run_id(run_id)).folder
        except NotFoundError:
            return None
