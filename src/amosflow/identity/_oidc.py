"""Bearer JWTs from the enterprise IdP, checked against a JWKS that keeps working offline.

The IdP's signing keys (its JWKS) are fetched over HTTP, kept in memory and stored on disk
after every good fetch, so a restart without network still validates tokens. A token's
header picks a key by ``kid``; an unknown ``kid`` may trigger one refetch, at most once per
``min_refetch_seconds``, so tokens with made-up kids cannot make us hammer the IdP.

Everything is pinned: only the configured asymmetric algorithms (never ``none``, never HS*),
a key whose type fits the header's algorithm, the exact issuer, our audience, an expiry.
Every refusal is an ``AuthenticationError`` with one generic message and a short ``reason``
for the audit trail; neither the token nor a library exception ever leaves this module.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urljoin, urlsplit

import httpx
import jwt

from amosflow.config import SIGNING_ALGORITHMS, OidcSettings, check_idp_url
from amosflow.errors import AuthenticationError
from amosflow.host import write_private

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

# The name it had before the module went private, so logging configurations keep working.
log = logging.getLogger("amosflow.identity.oidc")

#: The one message every refused token gets; the reason goes to the audit trail only.
OIDC_REFUSED = "invalid bearer token"
#: Longer tokens are refused before any parsing.
MAX_TOKEN_CHARS: Final = 16384
#: A discovery document or JWKS larger than this is refused.
MAX_DOCUMENT_BYTES: Final = 1 << 20
#: Redirects followed when fetching, and only within the same origin.
MAX_REDIRECTS: Final = 3

_EC_CURVES: Final = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521", "ES256K": "secp256k1"}
_OKP_CURVES: Final = frozenset({"Ed25519", "Ed448"})
_KEY_TYPES: Final = frozenset({"RSA", "EC", "OKP"})
#: JWK members kept from a fetched set; private members (``d``, ``p`` …) are never stored.
_PUBLIC_MEMBERS: Final = frozenset(
    {"kty", "kid", "use", "alg", "key_ops", "n", "e", "crv", "x", "y", "x5c", "x5t", "x5t#S256"}
)
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


@dataclass(frozen=True, slots=True)
class OidcIdentity:
    """Who a verified IdP token names; ``claims`` are all of its (verified) claims."""

    subject: str
    username: str
    email: str | None
    groups: tuple[str, ...]
    issuer: str
    expires_at: datetime
    claims: Mapping[str, Any]


class OidcTokenError(AuthenticationError):
    """A bearer JWT was refused; ``reason`` says why, for the audit trail only.

    Reasons: malformed, algorithm, unknown-key, key, signature, expired, not-yet-valid,
    issuer, audience, missing-claim, subject, disabled.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(OIDC_REFUSED)


def _segment_json(segment: str) -> dict[str, Any] | None:
    """The JSON object a base64url segment encodes, or None; never raises."""
    if not _BASE64URL.fullmatch(segment):
        return None
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(raw)
    except (ValueError, binascii.Error, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _header(token: object) -> dict[str, Any] | None:
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        return None
    parts = token.split(".")
    if len(parts) != 3 or not parts[0] or not parts[1]:  # noqa: PLR2004 - header.payload.signature
        return None
    if not (_BASE64URL.fullmatch(parts[1]) and _BASE64URL.fullmatch(parts[2])):
        return None
    return _segment_json(parts[0])


def looks_like_jwt(token: str) -> bool:
    """Whether ``token`` has the shape of a JWS compact JWT (three base64url parts, JSON header)."""
    try:
        return _header(token) is not None
    except Exception:  # pragma: no cover - _header already refuses everything it cannot read
        return False


def _fits(jwk: Mapping[str, Any], alg: str) -> bool:
    """Whether a public JWK may verify a signature made with ``alg`` (no key confusion)."""
    if jwk.get("use", "sig") != "sig" or jwk.get("alg", alg) != alg:
        return False
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return False
    kty = jwk.get("kty")
    if alg.startswith(("RS", "PS")):
        return kty == "RSA"
    if alg in _EC_CURVES:
        return kty == "EC" and jwk.get("crv") == _EC_CURVES[alg]
    return alg == "EdDSA" and kty == "OKP" and jwk.get("crv") in _OKP_CURVES


def parse_jwks(document: object) -> list[dict[str, Any]]:
    """The usable public signature keys of a JWK Set; ValueError or TypeError when none.

    Symmetric (``oct``) keys, encryption keys and keys that do not parse are skipped, and
    only public members are kept, so private material never reaches the disk cache.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise TypeError("not a JWK Set (no 'keys' list)")
    usable: list[dict[str, Any]] = []
    for entry in document["keys"]:
        if not isinstance(entry, dict):
            continue
        public = {name: value for name, value in entry.items() if name in _PUBLIC_MEMBERS}
        if public.get("kty") not in _KEY_TYPES or public.get("use", "sig") != "sig":
            continue
        if not isinstance(public.get("kid", ""), str):
            continue
        try:
            jwt.PyJWK(public)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            continue
        usable.append(public)
    if not usable:
        raise ValueError("the JWK Set holds no usable public signature key")
    return usable


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


async def _get_json(client: httpx.AsyncClient, url: str) -> object:
    """GET a JSON document, following redirects only within the same origin, size-capped."""
    for _ in range(MAX_REDIRECTS + 1):
        async with client.stream("GET", url) as response:
            if response.is_redirect:
                target = urljoin(url, response.headers["location"])
                if _origin(target) != _origin(url):
                    raise ValueError(f"refusing the redirect from {url} to another host")
                url = target
                continue
            response.raise_for_status()
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise ValueError(f"{url} answered more than {MAX_DOCUMENT_BYTES} bytes")
            return json.loads(bytes(body))
    raise ValueError(f"too many redirects fetching {url}")


class JwksCache:
    """The IdP's signing keys: in memory, on disk, refreshed on a schedule and on unknown kids.

    ``clock`` is a monotonic clock in seconds; tests inject one to drive the refetch limit.
    Use one instance per event loop.
    """

    def __init__(
        self, settings: OidcSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._keys: tuple[dict[str, Any], ...] = ()
        self._parsed: dict[tuple[int, str], jwt.PyJWK] = {}
        self._jwks_uri = settings.jwks_uri
        self._lock = asyncio.Lock()
        self._last_kid_fetch: float | None = None
        self._load()

    @property
    def kids(self) -> tuple[str | None, ...]:
        """The ``kid`` of every key held, in the IdP's order."""
        return tuple(jwk.get("kid") for jwk in self._keys)

    @property
    def jwks_uri(self) -> str | None:
        """The JWKS URL configured or discovered so far."""
        return self._jwks_uri

    def _load(self) -> None:
        path = self.settings.cache_file
        if not path.exists():
            return
        try:
            self._install(parse_jwks(json.loads(path.read_bytes())))
        except (OSError, ValueError, TypeError, RecursionError) as err:
            log.warning("ignoring the unreadable OIDC key cache %s: %s", path, err)
        else:
            log.info("loaded %d OIDC signing key(s) from %s", len(self._keys), path)

    def _install(self, keys: list[dict[str, Any]]) -> None:
        self._keys = tuple(keys)
        self._parsed = {}

    def _pyjwk(self, index: int, alg: str) -> jwt.PyJWK | None:
        cached = self._parsed.get((index, alg))
        if cached is None:
            try:
                cached = jwt.PyJWK(self._keys[index], algorithm=alg)
            except (jwt.PyJWTError, ValueError, TypeError, KeyError):
                return None
            self._parsed[index, alg] = cached
        return cached

    def _lookup(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        """The key for ``kid`` fit for ``alg``; None when unknown; refuses a misfit."""
        if kid is None:
            fitting = [i for i, jwk in enumerate(self._keys) if _fits(jwk, alg)]
            return self._pyjwk(fitting[0], alg) if len(fitting) == 1 else None
        named = [i for i, jwk in enumerate(self._keys) if jwk.get("kid") == kid]
        for index in named:
            if _fits(self._keys[index], alg) and (key := self._pyjwk(index, alg)) is not None:
                return key
        if named:
            raise OidcTokenError("algorithm")
        return None

    def _may_refetch(self) -> bool:
        now = self._clock()
        last = self._last_kid_fetch
        if last is not None and now - last < self.settings.min_refetch_seconds:
            return False
        self._last_kid_fetch = now
        return True

    async def key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
        """The verification key for a token's ``kid`` and ``alg``.

        An unknown kid triggers at most one refetch per ``min_refetch_seconds``; concurrent
        callers wait for the one fetch in flight. Raises ``OidcTokenError`` with reason
        ``unknown-key``, or ``algorithm`` when the key named does not fit ``alg``.
        """
        key = self._lookup(kid, alg)
        if key is not None:
            return key
        async with self._lock:
            key = self._lookup(kid, alg)  # the fetch we waited for may have brought it
            if key is None and self._may_refetch():
                await self._fetch_quietly()
                key = self._lookup(kid, alg)
        if key is None:
            raise OidcTokenError("unknown-key")
        return key

    async def refresh(self) -> None:
        """Fetch the JWKS again; on any failure keep the keys held and log a warning."""
        async with self._lock:
            await self._fetch_quietly()

    async def run_refresh_loop(self, stop: asyncio.Event) -> None:
        """Refresh now and then every ``refresh_seconds``, until ``stop`` is set."""
        while not stop.is_set():
            try:
                await self.refresh()
            except Exception:  # refresh() never raises; a subclass might
                log.exception("the scheduled OIDC key refresh failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.refresh_seconds)

    async def _fetch_quietly(self) -> bool:
        try:
            await self._fetch()
        except Exception as err:
            log.warning(
                "cannot fetch the OIDC signing keys (%s: %s); keeping the %d key(s) held",
                type(err).__name__,
                err,
                len(self._keys),
            )
            return False
        return True

    async def _fetch(self) -> None:
        async with httpx.AsyncClient(
            timeout=self.settings.timeout_seconds,
            follow_redirects=False,
            headers={"accept": "application/json"},
        ) as client:
            uri = self._jwks_uri or await self._discover(client)
            keys = parse_jwks(await _get_json(client, uri))
        self._install(keys)
        log.info("fetched %d OIDC signing key(s) from %s", len(keys), uri)
        path = self.settings.cache_file
        content = json.dumps({"keys": keys}, indent=2, sort_keys=True).encode() + b"\n"
        try:
            await asyncio.to_thread(write_private, path, content, exclusive=False)
        except OSError as err:
            log.warning("cannot store the OIDC key cache %s: %s", path, err)

    async def _discover(self, client: httpx.AsyncClient) -> str:
        issuer, url = self.settings.issuer, self.settings.discovery_url
        if issuer is None or url is None:
            raise ValueError("neither AMOS_OIDC_JWKS_URI nor AMOS_OIDC_ISSUER is set")
        document = await _get_json(client, url)
        if not isinstance(document, dict) or document.get("issuer") != issuer:
            raise ValueError(f"the OpenID configuration at {url} names another issuer")
        uri = document.get("jwks_uri")
        if not isinstance(uri, str) or check_idp_url(uri, "jwks_uri") is None:
            raise ValueError(f"the OpenID configuration at {url} has no jwks_uri")
        if urlsplit(issuer).scheme == "https" and urlsplit(uri).scheme != "https":
            raise ValueError(f"the OpenID configuration at {url} names a plain-http jwks_uri")
        self._jwks_uri = uri
        log.info("discovered the OIDC JWKS at %s", uri)
        return uri


def _reason(err: jwt.PyJWTError) -> str:  # noqa: PLR0911 - one answer per library error
    if isinstance(err, jwt.ExpiredSignatureError):
        return "expired"
    if isinstance(err, jwt.ImmatureSignatureError):
        return "not-yet-valid"
    if isinstance(err, jwt.InvalidAudienceError):
        return "audience"
    if isinstance(err, jwt.InvalidIssuerError):
        return "issuer"
    if isinstance(err, jwt.MissingRequiredClaimError):
        return {"aud": "audience", "iss": "issuer"}.get(err.claim, "missing-claim")
    if isinstance(err, jwt.InvalidSignatureError):
        return "signature"
    if isinstance(err, jwt.InvalidAlgorithmError):
        return "algorithm"
    if isinstance(err, jwt.InvalidKeyError):
        return "key"
    return "malformed"


class OidcVerifier:
    """Verifies the IdP's bearer JWTs; one per process, shared by every request."""

    def __init__(self, settings: OidcSettings, cache: JwksCache | None = None) -> None:
        self.settings = settings
        self.cache = cache if cache is not None else JwksCache(settings)

    async def verify(self, token: str) -> OidcIdentity:
        """The identity a valid token names; ``OidcTokenError`` (an AuthenticationError) else."""
        issuer, audience = self.settings.issuer, self.settings.audience
        if issuer is None or audience is None:
            raise OidcTokenError("disabled")
        header = _header(token)
        if header is None:
            raise OidcTokenError("malformed")
        alg = header.get("alg")
        allowed = self.settings.algorithms
        if not isinstance(alg, str) or alg not in allowed or alg not in SIGNING_ALGORITHMS:
            raise OidcTokenError("algorithm")  # the settings refuse none/HS*; so does this
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise OidcTokenError("malformed")
        key = await self.cache.key_for(kid, alg)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=audience,
                issuer=issuer,
                leeway=self.settings.leeway_seconds,
                options={
                    "verify_signature": True,
                    "verify_exp": True,
                    "verify_nbf": True,
                    "verify_iat": True,
                    "verify_aud": True,
                    "verify_iss": True,
                    "verify_sub": True,
                    "require": ["exp", "iss", "aud", "sub"],
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.PyJWTError as err:
            reason = _reason(err)
            log.debug("refused an OIDC token: %s (%s)", reason, type(err).__name__)
            raise OidcTokenError(reason) from None
        except (ValueError, TypeError, KeyError, OverflowError, RecursionError):
            raise OidcTokenError("malformed") from None
        return self._identity(claims, issuer)

    def _identity(self, claims: dict[str, Any], issuer: str) -> OidcIdentity:
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise OidcTokenError("subject")
        if claims.get("iss") != issuer:  # decode() checked it; never rely on one check alone
            raise OidcTokenError("issuer")
        exp = claims.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
            raise OidcTokenError("malformed")
        try:
            expires_at = datetime.fromtimestamp(exp, UTC)
        except (OverflowError, OSError, ValueError):
            raise OidcTokenError("malformed") from None
        username = claims.get(self.settings.username_claim)
        email = claims.get("email")
        return OidcIdentity(
            subject=subject,
            username=username if isinstance(username, str) and username else subject,
            email=email if isinstance(email, str) and email else None,
            groups=_groups(claims.get(self.settings.groups_claim)),
            issuer=issuer,
            expires_at=expires_at,
            claims=MappingProxyType(dict(claims)),
        )


def _groups(value: object) -> tuple[str, ...]:
    """The group names of a claim that is a list of strings; none for anything else."""
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        return ()
    return tuple(str(name) for name in value)
