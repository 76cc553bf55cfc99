"""A small, real OIDC issuer on loopback: discovery, a JWKS, and tokens signed with pyjwt.

Tests start it on 127.0.0.1 (a ``ThreadingHTTPServer`` in a daemon thread), issue tokens
with its RSA and Ed25519 keys, rotate keys, count JWKS fetches, and ``stop()`` it to play
an IdP that cannot be reached.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | Ed25519PrivateKey

AUDIENCE = "amos-api"


def b64url(data: bytes | str | Mapping[str, Any]) -> str:
    """Base64url without padding of bytes, text, or a JSON object."""
    if isinstance(data, Mapping):
        data = json.dumps(dict(data), separators=(",", ":"))
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def craft(header: Mapping[str, Any], claims: Mapping[str, Any], signature: bytes = b"") -> str:
    """A compact JWT assembled by hand (for tokens pyjwt refuses to make)."""
    return f"{b64url(header)}.{b64url(claims)}.{b64url(signature)}"


def craft_hmac(header: Mapping[str, Any], claims: Mapping[str, Any], secret: bytes) -> str:
    """A hand-made HS256 token whose HMAC secret is ``secret`` (e.g. a public key PEM)."""
    signing_input = f"{b64url(header)}.{b64url(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def public_jwk(key: PrivateKey, *, kid: str, alg: str) -> dict[str, Any]:
    """The public JWK of a private key, with its kid, alg and use."""
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


@dataclass
class SigningKey:
    """One key of the issuer, published in its JWKS while ``published``."""

    kid: str
    alg: str
    key: PrivateKey
    published: bool = True


class OidcIssuer:
    """A real OIDC issuer on 127.0.0.1:<free port>; use ``start()``/``stop()`` or ``with``."""

    def __init__(self, *, audience: str = AUDIENCE) -> None:
        self.audience = audience
        self.keys: list[SigningKey] = [
            SigningKey("rsa-1", "RS256", rsa.generate_private_key(65537, 2048)),
            SigningKey("ed-1", "EdDSA", Ed25519PrivateKey.generate()),
        ]
        self.jwks_requests = 0
        self.discovery_requests = 0
        #: path -> Location answered with 302 instead of the document
        self.redirects: dict[str, str] = {}
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._url = ""

    # -- addresses ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The issuer identifier (``iss``) and base URL, e.g. ``http://127.0.0.1:40123``."""
        return self._url

    @property
    def jwks_uri(self) -> str:
        return f"{self._url}/jwks.json"

    # -- keys --------------------------------------------------------------------------

    def current(self, alg: str = "RS256") -> SigningKey:
        """The newest published key for ``alg``."""
        for signing in reversed(self.keys):
            if signing.alg == alg and signing.published:
                return signing
        raise LookupError(f"no published key for {alg}")

    def jwks(self) -> dict[str, Any]:
        """The JWK Set as served: the public halves of the published keys."""
        with self.lock:
            return {
                "keys": [public_jwk(k.key, kid=k.kid, alg=k.alg) for k in self.keys if k.published]
            }

    def rotate(self, *, drop_old: bool = False, alg: str = "RS256") -> str:
        """Add a new key (new kid) for ``alg``; ``drop_old`` unpublishes the older ones."""
        key: PrivateKey = (
            Ed25519PrivateKey.generate()
            if alg == "EdDSA"
            else rsa.generate_private_key(65537, 2048)
        )
        kid = f"{alg.lower()}-{secrets.token_hex(4)}"
        with self.lock:
            if drop_old:
                for signing in self.keys:
                    if signing.alg == alg:
                        signing.published = False
            self.keys.append(SigningKey(kid, alg, key))
        return kid

    # -- tokens ------------------------------------------------------------------------

    def claims(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Default claims of a valid token; an override of None removes that claim."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self._url,
            "aud": self.audience,
            "sub": "2b6c1d1e-alice",
            "preferred_username": "alice",
            "email": "alice@example.test",
            "groups": ["ops", "flow-admins"],
            "iat": now,
            "exp": now + 300,
        }
        for name, value in (overrides or {}).items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def issue(
        self,
        overrides: Mapping[str, Any] | None = None,
        *,
        kid: str | None = None,
        alg: str = "RS256",
        key: PrivateKey | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """A token signed with the current key for ``alg`` (or ``key``), named ``kid``."""
        if key is None:
            signing = self.current(alg)
            key = signing.key
            kid = kid or signing.kid
        extra = {"kid": kid, **(headers or {})} if kid is not None else dict(headers or {})
        return jwt.encode(self.claims(overrides), key, algorithm=alg, headers=extra)

    # -- server ------------------------------------------------------------------------

    def start(self) -> Self:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                return

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                location = owner.redirects.get(path)
                if location is not None:
                    self.send_response(302)
                    self.send_header("location", location)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                if path == "/.well-known/openid-configuration":
                    with owner.lock:
                        owner.discovery_requests += 1
                    self._send(
                        200,
                        {
                            "issuer": owner.url,
                            "jwks_uri": owner.jwks_uri,
                            "id_token_signing_alg_values_supported": ["RS256", "EdDSA"],
                        },
                    )
                elif path in {"/jwks.json", "/keys"}:
                    with owner.lock:
                        owner.jwks_requests += 1
                    self._send(200, owner.jwks())
                else:
                    self._send(404, {"error": "not found"})

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        host, port = self._server.server_address[:2]
        self._url = f"http://{host!s}:{port}"
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        """Shut the server down and close its socket: the IdP is now unreachable."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running_oidc_issuer(*, audience: str = AUDIENCE) -> Iterator[OidcIssuer]:
    """A started issuer, stopped on exit."""
    with OidcIssuer(audience=audience) as issuer:
        yield issuer


def oidc_issuer_fixture() -> Iterator[OidcIssuer]:
    """Generator for a pytest fixture: ``issuer = pytest.fixture(name="issuer")(...)``."""
    with running_oidc_issuer() as issuer:
        yield issuer
