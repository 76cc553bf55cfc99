"""The Temporal payload codec: every payload and failure leaves the process AES-256-GCM encrypted.

Defence in depth (issue 8, decision 0029): Temporal keeps run inputs, step outputs and error
messages in its history for as long as the namespace retains them. With this codec on every
client of a node, a history that leaks (a database dump, an export, a debugging session with
``temporal workflow show``) reads as ciphertext. The key is a codec data key wrapped by the
vault's KEK (``amosflow.vault._codec_keys``); its id travels in the payload metadata, so a
rotated codec key keeps older runs readable. Payloads without our encoding (histories written
before the codec, or by a plain client) decode unchanged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
import time
from typing import TYPE_CHECKING

import temporalio.converter
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload

from amosflow.config import VaultSettings
from amosflow.errors import PayloadCodecError, VaultError, VaultSealedError
from amosflow.vault import make_provider
from amosflow.vault._codec_keys import CodecKeyRing, codec_keys_path

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

log = logging.getLogger(__name__)
ENCODING = b"binary/amos-encrypted"
KEY_ID = "amos-codec-key"
NONCE_BYTES = 12
_AAD = b"amos.codec/v1|"
#: While sealed, look for key material again at most this often (a PKCS#11 module load or a
#: transit round trip per payload would be a storm).
SEALED_RETRY_S = 1.0


def _aad(key_id: str) -> bytes:
    return _AAD + key_id.encode()


class VaultPayloadCodec(temporalio.converter.PayloadCodec):
    """Encrypts payloads under the node's current codec key; decrypts by the key id they name.

    The key ring is opened on first use, not at construction: a worker may start before the
    node that creates the vault. Without key material every encode and decode raises
    ``VaultSealedError``: nothing is written or read in plaintext instead.
    """

    def __init__(self, home: Path, settings: VaultSettings | None = None, *, create: bool) -> None:
        self.home = home
        self.settings = settings
        self.create = create
        self._lock = threading.Lock()
        self._ring: CodecKeyRing | None = None
        self._sealed: VaultSealedError | None = None
        self._sealed_at = 0.0

    def _open(self) -> CodecKeyRing:
        with self._lock:
            if self._ring is not None:
                return self._ring
            if self._sealed is not None and time.monotonic() - self._sealed_at < SEALED_RETRY_S:
                raise self._sealed
            try:
                provider = make_provider(
                    self.home, self.settings or VaultSettings(), create=self.create
                )
                self._ring = CodecKeyRing(codec_keys_path(self.home), provider)
            except VaultSealedError as err:
                sealed = VaultSealedError(
                    f"the payload codec is sealed ({err}): Temporal payloads are neither written "
                    "nor read without the vault's key material"
                )
                if self._sealed is None:
                    log.warning("%s", sealed)  # the cause only, never key bytes
                self._sealed, self._sealed_at = sealed, time.monotonic()
                raise sealed from None
            self._sealed = None
            return self._ring

    async def ring(self) -> CodecKeyRing:
        """The opened key ring (opening it off the event loop the first time)."""
        if self._ring is not None:
            return self._ring
        return await asyncio.to_thread(self._open)

    def sealed_reason(self) -> str | None:
        """Why the codec cannot work right now, or None when it holds its key material."""
        try:
            self._open()
        except VaultSealedError as err:
            return str(err)
        return None

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Encrypt each payload (its whole serialized form, metadata included)."""
        key_id, key = (await self.ring()).current()
        aead = AESGCM(key)
        encoded = []
        for payload in payloads:
            nonce = os.urandom(NONCE_BYTES)
            sealed = aead.encrypt(nonce, payload.SerializeToString(), _aad(key_id))
            encoded.append(
                Payload(
                    metadata={"encoding": ENCODING, KEY_ID: key_id.encode()}, data=nonce + sealed
                )
            )
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Decrypt our payloads; anything without our encoding passes through unchanged."""
        if not any(p.metadata.get("encoding") == ENCODING for p in payloads):
            return list(payloads)
        ring = await self.ring()
        return [self._decode_one(ring, p) for p in payloads]

    @staticmethod
    def _decode_one(ring: CodecKeyRing, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID, b"").decode("ascii", errors="replace")
        if not key_id:
            raise PayloadCodecError("an encrypted Temporal payload names no codec key")
        try:
            key = ring.key(key_id)
        except VaultSealedError:
            raise
        except VaultError as err:
            raise PayloadCodecError(
                f"an encrypted Temporal payload cannot be opened: {err}"
            ) from None
        data = payload.data
        try:
            plain = AESGCM(key).decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], _aad(key_id))
        except (InvalidTag, ValueError):
            raise PayloadCodecError(
                f"an encrypted Temporal payload (codec key {key_id}) failed authentication: "
                "its bytes or its key id were altered"
            ) from None
        try:
            return Payload.FromString(plain)
        except DecodeError:
            raise PayloadCodecError(
                f"an encrypted Temporal payload (codec key {key_id}) holds no payload"
            ) from None


def data_converter(
    codec: temporalio.converter.PayloadCodec | None,
) -> temporalio.converter.DataConverter:
    """The data converter of a node: JSON payloads, failures' messages and traces encoded.

    With ``encode_common_attributes`` the failure converter moves a failure's message and
    stack trace into an (encrypted) payload, so error text is as protected as outputs.
    """
    base = temporalio.converter.DataConverter.default
    if codec is None:
        return base
    return dataclasses.replace(
        base,
        payload_codec=codec,
        failure_converter_class=temporalio.converter.DefaultFailureConverterWithEncodedAttributes,
    )


def payload_codec(home: Path, *, create: bool = False) -> VaultPayloadCodec:
    """The codec of the install in ``home``, with the vault's configured key provider.

    ``create`` lets the vault's key file be created on first use (the node, ``amos run``);
    a standalone worker passes False and stays sealed until the node has created it.
    """
    return VaultPayloadCodec(home, create=create)
