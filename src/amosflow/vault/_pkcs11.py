"""A PKCS#11 key provider: KEKs are non-extractable AES keys inside an HSM token.

Data keys are wrapped with ``CKM_AES_KEY_WRAP_PAD`` (RFC 5649) by ``C_WrapKey``; KEK bytes
never leave the token. Each KEK version is a token key labelled ``<label>/v<N>``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import PKCS11Error

from amosflow.errors import VaultError, VaultSealedError

if TYPE_CHECKING:
    from collections.abc import Iterator

_MECHANISM = Mechanism.AES_KEY_WRAP_PAD
_KEK_TEMPLATE = {
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.WRAP: True,
    Attribute.UNWRAP: True,
    Attribute.ENCRYPT: False,
    Attribute.DECRYPT: False,
}
# The data key is a session object that lives only while it is being wrapped or unwrapped.
_DEK_TEMPLATE = {Attribute.TOKEN: False, Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True}


class Pkcs11Provider:
    """Wraps data keys with AES keys kept in a PKCS#11 token (tested with SoftHSM2)."""

    def __init__(self, module: str, token_label: str, pin: str, *, label: str = "amos-kek") -> None:
        self._label = label
        self._token_label = token_label
        self._pin = pin
        self._lock = threading.Lock()
        try:
            self._token = pkcs11.lib(module).get_token(token_label=token_label)
        except (PKCS11Error, RuntimeError, OSError) as err:
            raise VaultSealedError(
                f"the PKCS#11 token {token_label!r} is not available ({type(err).__name__})"
            ) from None
        if not self.versions():
            self._generate(1)

    @property
    def kek_id(self) -> str:
        """``pkcs11:<token label>/<key label>``."""
        return f"pkcs11:{self._token_label}/{self._label}"

    def _session(self, *, rw: bool = False) -> Any:
        try:
            return self._token.open(user_pin=self._pin, rw=rw)
        except PKCS11Error as err:
            raise VaultSealedError(
                f"cannot log in to the PKCS#11 token {self._token_label!r} ({type(err).__name__})"
            ) from None

    def _keys(self, session: Any) -> Iterator[tuple[int, Any]]:
        prefix = f"{self._label}/v"
        found = session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})
        for key in found:
            label = str(key.label or "")
            if label.startswith(prefix) and label[len(prefix) :].isdigit():
                yield int(label[len(prefix) :]), key

    def _kek(self, session: Any, version: int) -> Any:
        for found, key in self._keys(session):
            if found == version:
                return key
        raise VaultError(f"KEK version {version} of {self.kek_id!r} is retired or unknown")

    def _generate(self, version: int) -> None:
        with self._lock, self._session(rw=True) as session:
            session.generate_key(
                KeyType.AES, 256, label=f"{self._label}/v{version}", store=True,
                template=_KEK_TEMPLATE,
            )  # fmt: skip

    def versions(self) -> list[int]:
        """The KEK versions present in the token."""
        with self._lock, self._session() as session:
            return sorted(version for version, _ in self._keys(session))

    def _current(self) -> int:
        found = self.versions()
        if not found:
            raise VaultSealedError(f"the token holds no KEK labelled {self._label!r}")
        return found[-1]

    def wrap(self, plaintext_dek: bytes) -> tuple[int, bytes]:
        """Wrap the data key inside the token with the newest KEK."""
        version = self._current()
        with self._lock, self._session() as session:
            dek = session.create_object(
                {
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.KEY_TYPE: KeyType.AES,
                    Attribute.VALUE: plaintext_dek,
                    **_DEK_TEMPLATE,
                }
            )
            try:
                wrapped: bytes = self._kek(session, version).wrap_key(dek, mechanism=_MECHANISM)
            except PKCS11Error as err:
                raise VaultError(
                    f"the token could not wrap a data key ({type(err).__name__})"
                ) from None
            finally:
                dek.destroy()
        return version, wrapped

    def unwrap(self, kek_version: int, wrapped: bytes) -> bytes:
        """Unwrap inside the token and read the data key back; tampering fails the wrap check."""
        with self._lock, self._session() as session:
            kek = self._kek(session, kek_version)
            try:
                dek = kek.unwrap_key(
                    ObjectClass.SECRET_KEY, KeyType.AES, wrapped, mechanism=_MECHANISM,
                    store=False, template=_DEK_TEMPLATE,
                )  # fmt: skip
            except PKCS11Error:
                raise VaultError(
                    f"a data key wrapped by KEK version {kek_version} failed the token's check"
                ) from None
            try:
                value: bytes = dek[Attribute.VALUE]
            finally:
                dek.destroy()
        return value

    def rotate(self) -> int:
        """Generate the next KEK version inside the token."""
        version = self._current() + 1
        self._generate(version)
        return version

    def retire(self, version: int) -> None:
        """Destroy KEK ``version`` in the token; the newest one cannot be retired."""
        if version == self._current():
            raise VaultError(f"KEK version {version} is current and cannot be retired")
        with self._lock, self._session(rw=True) as session:
            self._kek(session, version).destroy()
