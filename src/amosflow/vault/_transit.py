"""An external KMS facade: an OpenBao / HashiCorp Vault transit-compatible HTTP client.

The KEK lives in the external service; data keys travel to it base64-encoded over the
configured (TLS) URL and come back as ``vault:v<N>:…`` ciphertexts.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx

from amosflow.errors import VaultError, VaultSealedError

TIMEOUT_S = 10.0


class TransitProvider:
    """Wraps data keys through ``/v1/transit/encrypt|decrypt/<key>`` of a transit engine."""

    def __init__(
        self,
        url: str,
        token: str,
        key: str,
        *,
        mount: str = "transit",
        client: httpx.Client | None = None,
    ) -> None:
        self._key = key
        self._mount = mount.strip("/")
        self._client = client or httpx.Client(base_url=url.rstrip("/"), timeout=TIMEOUT_S)
        self._client.headers["X-Vault-Token"] = token

    @property
    def kek_id(self) -> str:
        """``transit:<mount>/<key>``."""
        return f"transit:{self._mount}/{self._key}"

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        url = f"/v1/{self._mount}/{path}"
        try:
            response = self._client.request(method, url, json=body)
        except httpx.TransportError as err:
            raise VaultSealedError(
                f"the transit service is unreachable ({type(err).__name__})"
            ) from None
        if response.status_code in {401, 403}:
            raise VaultSealedError(
                f"the transit service refused the token ({response.status_code})"
            )
        if response.is_error:
            # The body may echo what we sent; never put it in the message.
            raise VaultError(f"the transit service answered {response.status_code} to {url}")
        if response.status_code == httpx.codes.NO_CONTENT or not response.content:
            return {}
        payload: Any = response.json()
        data = payload.get("data") if isinstance(payload, dict) else None
        return data if isinstance(data, dict) else {}

    def wrap(self, plaintext_dek: bytes) -> tuple[int, bytes]:
        """Encrypt the data key with the newest version of the transit key."""
        data = self._call(
            "POST", f"encrypt/{self._key}", {"plaintext": base64.b64encode(plaintext_dek).decode()}
        )
        ciphertext = str(data.get("ciphertext", ""))
        parts = ciphertext.split(":", 2)
        if len(parts) != 3 or not parts[1].startswith("v") or not parts[1][1:].isdigit():  # noqa: PLR2004
            raise VaultError("the transit service returned a malformed ciphertext")
        return int(parts[1][1:]), ciphertext.encode()

    def unwrap(self, kek_version: int, wrapped: bytes) -> bytes:
        """Decrypt a data key; the version inside the ciphertext must match the recorded one."""
        if not wrapped.startswith(f"vault:v{kek_version}:".encode()):
            raise VaultError(f"a wrapped data key does not belong to KEK version {kek_version}")
        try:
            ciphertext = wrapped.decode("ascii")
        except UnicodeDecodeError:
            raise VaultError("a wrapped data key is not a transit ciphertext") from None
        data = self._call("POST", f"decrypt/{self._key}", {"ciphertext": ciphertext})
        try:
            return base64.b64decode(str(data["plaintext"]), validate=True)
        except (KeyError, ValueError):
            raise VaultError("the transit service returned a malformed data key") from None

    def rotate(self) -> int:
        """Rotate the transit key and return its newest version."""
        self._call("POST", f"keys/{self._key}/rotate")
        return int(self._call("GET", f"keys/{self._key}").get("latest_version", 0))

    def versions(self) -> list[int]:
        """The key versions the transit engine still decrypts with."""
        info = self._call("GET", f"keys/{self._key}")
        floor = int(info.get("min_decryption_version", 1))
        return sorted(int(v) for v in info.get("keys", {}) if int(v) >= floor)

    def retire(self, version: int) -> None:
        """Raise ``min_decryption_version`` past ``version``; only the oldest can be retired."""
        found = self.versions()
        if not found or version != found[0] or version == found[-1]:
            raise VaultError(
                f"transit can only retire its oldest, non-current version (asked {version})"
            )
        self._call("POST", f"keys/{self._key}/config", {"min_decryption_version": version + 1})
