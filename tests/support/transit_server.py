"""A transit-compatible KMS on loopback: the protocol peer the transit key provider is tested against.

It speaks the subset of the OpenBao / HashiCorp Vault transit secrets engine HTTP API that
``amosflow.vault._transit.TransitProvider`` uses, as the public API documentation describes
it: ``POST /v1/<mount>/encrypt/<key>`` (base64 plaintext in, ``vault:v<N>:<base64>`` out,
creating the key on first use), ``POST /v1/<mount>/decrypt/<key>``, ``GET
/v1/<mount>/keys/<key>`` (``keys``, ``latest_version``, ``min_decryption_version``), ``POST
/v1/<mount>/keys/<key>/rotate`` and ``POST /v1/<mount>/keys/<key>/config``
(``min_decryption_version``). Requests authenticate with ``X-Vault-Token``; errors answer
``{"errors": [...]}`` with 400, 403 or 404. Key versions are AES-256-GCM keys with a 96-bit
nonce prepended to the ciphertext, as the engine's default ``aes256-gcm96`` type. Why a peer
and not the real server: decision 0030.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_PATH = re.compile(r"^/v1/(?P<mount>[\w\-/]+?)/(?P<op>encrypt|decrypt|keys)/(?P<key>[\w\-.]+)(?P<rest>/rotate|/config)?$")  # fmt: skip
_CIPHERTEXT = re.compile(r"^vault:v(?P<version>\d+):(?P<body>[A-Za-z0-9+/=]+)$")
_NONCE = 12


@dataclass
class TransitKey:
    """A named key: its versions (number → AES key, creation time) and its decryption floor."""

    versions: dict[int, tuple[bytes, int]] = field(default_factory=dict)
    min_decryption_version: int = 1

    def add_version(self) -> int:
        """Create the next version and return its number."""
        version = max(self.versions, default=0) + 1
        self.versions[version] = (AESGCM.generate_key(bit_length=256), int(time.time()))
        return version

    @property
    def latest(self) -> int:
        """The version new encryptions use."""
        return max(self.versions)


class _TransitError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class TransitServer:
    """The server: ``start()`` on 127.0.0.1, ``url`` to reach it, ``stop()`` at the end."""

    def __init__(self, token: str | None = None, mount: str = "transit") -> None:
        self.token = token or f"s.{secrets.token_hex(12)}"
        self.mount = mount
        self.keys: dict[str, TransitKey] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL of the server (``http://127.0.0.1:<port>``)."""
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    def start(self) -> TransitServer:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=10)

    # -- the engine ---------------------------------------------------------------------

    def _encrypt(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        key = self.keys.get(name)
        if key is None:  # the engine upserts a key on its first encryption
            key = self.keys[name] = TransitKey()
            key.add_version()
        try:
            plaintext = base64.b64decode(str(body["plaintext"]), validate=True)
        except (KeyError, binascii.Error):
            raise _TransitError(400, "invalid request: plaintext must be base64") from None
        version = key.latest
        nonce = os.urandom(_NONCE)
        sealed = AESGCM(key.versions[version][0]).encrypt(nonce, plaintext, None)
        text = base64.b64encode(nonce + sealed).decode()
        return {"ciphertext": f"vault:v{version}:{text}", "key_version": version}

    def _decrypt(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        key = self._existing(name)
        match = _CIPHERTEXT.match(str(body.get("ciphertext", "")))
        if match is None:
            raise _TransitError(400, "invalid ciphertext: no prefix")
        version = int(match["version"])
        if version < key.min_decryption_version:
            raise _TransitError(
                400, "ciphertext or signature version is disallowed by policy (too old)"
            )
        if version not in key.versions:
            raise _TransitError(400, "invalid key version")
        blob = base64.b64decode(match["body"])
        try:
            plain = AESGCM(key.versions[version][0]).decrypt(blob[:_NONCE], blob[_NONCE:], None)
        except (InvalidTag, ValueError):
            raise _TransitError(400, "cipher: message authentication failed") from None
        return {"plaintext": base64.b64encode(plain).decode()}

    def _read(self, name: str) -> dict[str, Any]:
        key = self._existing(name)
        return {
            "name": name,
            "type": "aes256-gcm96",
            "keys": {
                str(v): created
                for v, (_, created) in key.versions.items()
                if v >= key.min_decryption_version
            },
            "latest_version": key.latest,
            "min_decryption_version": key.min_decryption_version,
            "min_encryption_version": 0,
            "supports_encryption": True,
            "supports_decryption": True,
        }

    def _config(self, name: str, body: dict[str, Any]) -> None:
        key = self._existing(name)
        floor = int(body.get("min_decryption_version", key.min_decryption_version))
        if floor < 1 or floor > key.latest:
            raise _TransitError(400, "cannot set min decryption version above the latest version")
        key.min_decryption_version = floor  # older versions are archived: they decrypt no more

    def _existing(self, name: str) -> TransitKey:
        key = self.keys.get(name)
        if key is None:
            raise _TransitError(404, f"encryption key not found: {name}")
        return key

    def handle(
        self, method: str, path: str, token: str | None, body: dict[str, Any]
    ) -> tuple[int, Any]:
        """Answer one request: ``(status, JSON body or None)``."""
        self.requests.append((method, path))
        if token != self.token:
            return 403, {"errors": ["permission denied"]}
        match = _PATH.match(path)
        if match is None or match["mount"] != self.mount:
            return 404, {"errors": [f"no handler for route {path!r}"]}
        operation = (method, match["op"], match["rest"])
        name = match["key"]
        with self._lock:
            try:
                return self._dispatch(operation, name, body)
            except _TransitError as failure:
                return failure.status, {"errors": [str(failure)]}

    def _dispatch(
        self, operation: tuple[str, str, str | None], name: str, body: dict[str, Any]
    ) -> tuple[int, Any]:
        match operation:
            case ("POST", "encrypt", None):
                return 200, {"data": self._encrypt(name, body)}
            case ("POST", "decrypt", None):
                return 200, {"data": self._decrypt(name, body)}
            case ("GET", "keys", None):
                return 200, {"data": self._read(name)}
            case ("POST", "keys", "/rotate"):
                self._existing(name).add_version()
                return 204, None
            case ("POST", "keys", "/config"):
                self._config(name, body)
                return 204, None
            case _:
                raise _TransitError(405, f"unsupported operation {operation}")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    body = None
                if not isinstance(body, dict):
                    status, answer = 400, {"errors": ["failed to parse JSON input"]}
                else:
                    status, answer = server.handle(
                        self.command, self.path, self.headers.get("X-Vault-Token"), body
                    )
                data = json.dumps(answer).encode() if answer is not None else b""
                self.send_response(status)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve  # noqa: N815 - http.server's handler names

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                """Keep the test output quiet."""

        return Handler
