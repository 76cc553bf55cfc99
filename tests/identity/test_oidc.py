"""OIDC bearer tokens: pinned validation against a JWKS cache that keeps working offline."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError

from amosflow.errors import AuthenticationError
from amosflow.identity import OIDC_REFUSED as GENERIC
from amosflow.identity import JwksCache, OidcIdentity, OidcSettings, OidcVerifier, looks_like_jwt
from tests.support.oidc_issuer import (
    AUDIENCE,
    OidcIssuer,
    b64url,
    craft,
    craft_hmac,
    oidc_issuer_fixture,
    public_jwk,
)

issuer_fixture = pytest.fixture(name="issuer")(oidc_issuer_fixture)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_settings(idp: OidcIssuer, tmp_path: Path, **overrides: Any) -> OidcSettings:
    values: dict[str, Any] = {
        "home": tmp_path / "home",
        "issuer": idp.url,
        "audience": AUDIENCE,
        "jwks_uri": idp.jwks_uri,
    }
    return OidcSettings(**(values | overrides))


def make_verifier(
    idp: OidcIssuer, tmp_path: Path, clock: Clock | None = None, **overrides: Any
) -> OidcVerifier:
    settings = make_settings(idp, tmp_path, **overrides)
    return OidcVerifier(settings, JwksCache(settings, clock=clock or Clock()))


async def refusal(verifier: OidcVerifier, token: str) -> str:
    """The reason ``token`` is refused; checks the refusal says nothing about it."""
    with pytest.raises(AuthenticationError) as info:
        await verifier.verify(token)
    err = info.value
    assert str(err) == GENERIC
    assert not token or token not in repr(err)
    assert err.__cause__ is None  # no jwt or httpx exception rides along
    assert err.__context__ is None or err.__suppress_context__
    return str(err.reason)  # type: ignore[attr-defined]


async def refusal_of(call: Awaitable[object]) -> str:
    with pytest.raises(AuthenticationError) as info:
        await call
    return str(info.value.reason)  # type: ignore[attr-defined]


def refused(verifier: OidcVerifier, token: str) -> str:
    return asyncio.run(refusal(verifier, token))


def verified(verifier: OidcVerifier, token: str) -> OidcIdentity:
    return asyncio.run(verifier.verify(token))


# -- accepted ----------------------------------------------------------------------------


def test_a_valid_token_yields_its_identity(issuer: OidcIssuer, tmp_path: Path) -> None:
    verifier = make_verifier(issuer, tmp_path)
    token = issuer.issue()

    identity = verified(verifier, token)

    assert identity.subject == "2b6c1d1e-alice"
    assert identity.username == "alice"
    assert identity.email == "alice@example.test"
    assert identity.groups == ("ops", "flow-admins")
    assert identity.issuer == issuer.url
    assert identity.expires_at.tzinfo is UTC
    assert identity.expires_at > datetime.now(UTC)
    assert identity.claims["aud"] == AUDIENCE
    with pytest.raises(TypeError):
        identity.claims["sub"] = "mallory"  # type: ignore[index]


def test_an_eddsa_token_and_a_list_audience_are_accepted(
    issuer: OidcIssuer, tmp_path: Path
) -> None:
    verifier = make_verifier(issuer, tmp_path)

    identity = verified(verifier, issuer.issue({"aud": ["other", AUDIENCE]}, alg="EdDSA"))

    assert identity.subject == "2b6c1d1e-alice"


def test_claims_are_read_defensively(issuer: OidcIssuer, tmp_path: Path) -> None:
    verifier = make_verifier(issuer, tmp_path, groups_claim="roles", username_claim="upn")

    plain = verified(verifier, issuer.issue({"roles": ["a", 1], "email": 42}))
    assert plain.groups == ()  # not a list of strings
    assert plain.username == plain.subject  # no username claim: the subject
    assert plain.email is None

    good = verified(verifier, issuer.issue({"roles": ["ops"], "upn": "alice@corp"}))
    assert good.groups == ("ops",)
    assert good.username == "alice@corp"

    assert verified(verifier, issuer.issue({"roles": "ops"})).groups == ()


def test_expiry_within_the_leeway_is_tolerated(issuer: OidcIssuer, tmp_path: Path) -> None:
    verifier = make_verifier(issuer, tmp_path)
    now = int(time.time())

    token = issuer.issue({"exp": now - 10, "iat": now - 310})

    assert verified(verifier, token)
    assert refused(make_verifier(issuer, tmp_path, leeway_seconds=0), token) == "expired"


# -- refused -----------------------------------------------------------------------------


def test_refusals(issuer: OidcIssuer, tmp_path: Path) -> None:
    verifier = make_verifier(issuer, tmp_path)
    now = int(time.time())

    assert refused(verifier, issuer.issue({"exp": now - 3600, "iat": now - 7200})) == "expired"
    assert refused(verifier, issuer.issue({"aud": "someone-else"})) == "audience"
    assert refused(verifier, issuer.issue({"aud": None})) == "audience"
    assert refused(verifier, issuer.issue({"iss": "https://evil.example"})) == "issuer"
    assert refused(verifier, issuer.issue({"iss": issuer.url + "/"})) == "issuer"
    assert refused(verifier, issuer.issue({"iss": None})) == "issuer"
    assert refused(verifier, issuer.issue({"sub": None})) == "missing-claim"
    assert refused(verifier, issuer.issue({"sub": ""})) == "subject"
    assert refused(verifier, issuer.issue({"exp": None})) == "missing-claim"
    assert refused(verifier, issuer.issue({"nbf": now + 3600})) == "not-yet-valid"
    assert refused(verifier, issuer.issue({"iat": now + 3600})) == "not-yet-valid"


def test_every_refusal_is_repeated(issuer: OidcIssuer, tmp_path: Path) -> None:
    verifier = make_verifier(issuer, tmp_path)
    expired = issuer.issue({"exp": int(time.time()) - 3600})

    assert [refused(verifier, expired) for _ in range(3)] == ["expired"] * 3


def test_alg_none_is_refused(issuer: OidcIssuer, tmp_path: Path) -> None:
    verifier = make_verifier(issuer, tmp_path)
    claims = issuer.claims()

    assert refused(verifier, craft({"alg": "none"}, claims)) == "algorithm"
    assert refused(verifier, craft({"alg": "none", "kid": "rsa-1"}, claims)) == "algorithm"
    assert refused(verifier, craft({"alg": "None", "typ": "JWT"}, claims)) == "algorithm"
    assert refused(verifier, craft({"typ": "JWT"}, claims)) == "algorithm"
    assert issuer.jwks_requests == 0  # refused before any key is looked up


def test_hs256_with_the_rsa_public_key_as_secret_is_refused(
    issuer: OidcIssuer, tmp_path: Path
) -> None:
    verifier = make_verifier(issuer, tmp_path)
    rsa_key = issuer.current("RS256").key
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = issuer.claims()

    for header in ({"alg": "HS256"}, {"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}):
        assert refused(verifier, craft_hmac(header, claims, pem)) == "algorithm"
    assert verified(verifier, issuer.issue())  # the same key still verifies RS256


def test_hmac_stays_refused_even_when_settings_are_bypassed(
    issuer: OidcIssuer, tmp_path: Path
) -> None:
    settings = make_settings(issuer, tmp_path)
    unchecked = OidcSettings.model_construct(**(settings.model_dump() | {"algorithms": ["HS256"]}))
    verifier = OidcVerifier(unchecked, JwksCache(settings))
    pem = (
        issuer.current("RS256")
        .key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )

    assert refused(
        verifier, craft_hmac({"alg": "HS256", "kid": "rsa-1"}, issuer.claims(), pem)
    ) == ("algorithm")

    async def direct_lookup() -> str:
        cache = JwksCache(settings)
        await cache.refresh()
        return await refusal_of(cache.key_for("rsa-1", "HS256"))

    assert asyncio.run(direct_lookup()) == "algorithm"  # the key store refuses it on its own


def test_a_key_of_another_type_than_the_alg_is_refused(issuer: OidcIssuer, tmp_path: Path) -> None:
    verifier = make_verifier(issuer, tmp_path)
    foreign = ec.generate_private_key(ec.SECP256R1())

    # ES256 header naming the RSA key (and the Ed25519 key): the key cannot be used for it
    assert refused(verifier, issuer.issue(kid="rsa-1", alg="ES256", key=foreign)) == "algorithm"
    assert refused(verifier, issuer.issue(kid="ed-1", alg="ES256", key=foreign)) == "algorithm"
    # RS256 header naming the Ed25519 key
    rsa_key = issuer.current("RS256").key
    assert refused(verifier, issuer.issue(kid="ed-1", alg="RS256", key=rsa_key)) == "algorithm"


def test_an_unknown_kid_is_refused_after_one_refetch(issuer: OidcIssuer, tmp_path: Path) -> None:
    verifier = make_verifier(issuer, tmp_path)
    asyncio.run(verifier.cache.refresh())
    assert issuer.jwks_requests == 1
    stranger = rsa.generate_private_key(65537, 2048)
    token = issuer.issue(kid="ghost", key=stranger)

    assert refused(verifier, token) == "unknown-key"
    assert issuer.jwks_requests == 2  # the one allowed refetch
    assert refused(verifier, token) == "unknown-key"
    assert issuer.jwks_requests == 2  # within min_refetch_seconds: no second fetch


def test_a_forged_signature_is_refused(issuer: OidcIssuer, tmp_path: Path) -> None:
    verifier = make_verifier(issuer, tmp_path)
    header, _payload, signature = issuer.issue().split(".")
    edited = b64url(json.dumps(issuer.claims({"sub": "root", "groups": ["admins"]})))

    assert refused(verifier, f"{header}.{edited}.{signature}") == "signature"
    assert refused(verifier, f"{header}.{edited}.") == "signature"
    stranger = rsa.generate_private_key(65537, 2048)
    assert refused(verifier, issuer.issue(kid="rsa-1", key=stranger)) == "signature"


def test_garbage_is_malformed(issuer: OidcIssuer, tmp_path: Path) -> None:
    verifier = make_verifier(issuer, tmp_path)
    good = issuer.issue()
    header = good.split(".")[0]

    for token in ("", "a.b", "a.b.c", "x" * 20000, good + ".x", f"{header}.!!!.sig"):
        assert refused(verifier, token) == "malformed"
    # a payload that is not a JSON object, validly signed by the IdP's own key
    not_an_object = jwt.PyJWS().encode(
        b"[1, 2]", issuer.current().key, algorithm="RS256", headers={"kid": "rsa-1"}
    )
    assert refused(verifier, not_an_object) == "malformed"
    kid_not_text = craft({"alg": "RS256", "kid": 7}, issuer.claims())
    assert refused(verifier, kid_not_text) == "malformed"


def test_nothing_about_the_token_reaches_the_log(
    issuer: OidcIssuer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    verifier = make_verifier(issuer, tmp_path)
    now = int(time.time())
    tokens = [
        issuer.issue({"exp": now - 3600}),
        issuer.issue({"aud": "x"}),
        issuer.issue(kid="ghost", key=issuer.current("RS256").key),
        craft({"alg": "none"}, issuer.claims()),
    ]

    for token in tokens:
        refused(verifier, token)

    for token in tokens:
        for part in token.split("."):
            if len(part) > 8:
                assert part not in caplog.text


def test_verification_is_off_without_an_issuer(tmp_path: Path) -> None:
    settings = OidcSettings(home=tmp_path)
    verifier = OidcVerifier(settings)

    assert not settings.enabled
    assert refused(verifier, craft({"alg": "RS256"}, {"sub": "x"}, b"sig")) == "disabled"


# -- rotation and the refetch limit ------------------------------------------------------


def test_a_rotated_key_triggers_exactly_one_refetch(issuer: OidcIssuer, tmp_path: Path) -> None:
    verifier = make_verifier(issuer, tmp_path)
    asyncio.run(verifier.cache.refresh())  # at start, as run_refresh_loop does
    assert verified(verifier, issuer.issue())
    assert issuer.jwks_requests == 1

    new_kid = issuer.rotate()
    token = issuer.issue(kid=new_kid)
    identity = verified(verifier, token)

    assert identity.subject == "2b6c1d1e-alice"
    assert issuer.jwks_requests == 2
    assert verified(verifier, issuer.issue(kid=new_kid))
    assert verified(verifier, issuer.issue(kid="rsa-1", key=issuer.keys[0].key))
    assert issuer.jwks_requests == 2
    assert new_kid in verifier.cache.kids


def test_a_dropped_key_stops_verifying_after_the_next_refresh(
    issuer: OidcIssuer, tmp_path: Path
) -> None:
    verifier = make_verifier(issuer, tmp_path)
    old = issuer.issue()
    assert verified(verifier, old)

    issuer.rotate(drop_old=True)
    asyncio.run(verifier.cache.refresh())

    assert "rsa-1" not in verifier.cache.kids
    assert refused(verifier, old) == "unknown-key"


def test_random_kids_cannot_make_us_hammer_the_idp(issuer: OidcIssuer, tmp_path: Path) -> None:
    clock = Clock()
    verifier = make_verifier(issuer, tmp_path, clock=clock, min_refetch_seconds=30)
    stranger = rsa.generate_private_key(65537, 2048)

    def flood() -> list[str]:
        return [issuer.issue(kid=secrets.token_hex(8), key=stranger) for _ in range(20)]

    async def scenario() -> None:
        await verifier.cache.refresh()
        assert issuer.jwks_requests == 1

        results = await asyncio.gather(
            *(verifier.verify(token) for token in flood()), return_exceptions=True
        )
        assert all(isinstance(r, AuthenticationError) for r in results)
        assert {r.reason for r in results} == {"unknown-key"}  # type: ignore[union-attr]
        assert issuer.jwks_requests == 2  # twenty unknown kids, one fetch

        clock.advance(29)
        for token in flood():
            assert await refusal(verifier, token) == "unknown-key"
        assert issuer.jwks_requests == 2

        clock.advance(1)
        for token in flood():
            assert await refusal(verifier, token) == "unknown-key"
        assert issuer.jwks_requests == 3  # the window passed: one more fetch, no more

        # a known kid never waits for the window
        assert await verifier.verify(issuer.issue())

    asyncio.run(scenario())


# -- offline -----------------------------------------------------------------------------


def test_a_restart_without_network_still_verifies(issuer: OidcIssuer, tmp_path: Path) -> None:
    settings = make_settings(issuer, tmp_path, cache_path=tmp_path / "keys" / "jwks.json")
    token = issuer.issue()
    assert verified(OidcVerifier(settings), token)
    assert settings.cache_file.exists()
    stored = json.loads(settings.cache_file.read_text())
    assert {k["kid"] for k in stored["keys"]} == {"rsa-1", "ed-1"}
    assert all("d" not in k for k in stored["keys"])
    assert settings.cache_file.stat().st_mode & 0o077 == 0

    issuer.stop()
    restarted = OidcVerifier(settings)  # a new process: only the cache file is left

    assert restarted.cache.kids == ("rsa-1", "ed-1")
    assert verified(restarted, token).subject == "2b6c1d1e-alice"
    assert verified(restarted, token).groups == ("ops", "flow-admins")
    # an unknown kid while offline: a failed refetch, still a clean refusal
    stranger = rsa.generate_private_key(65537, 2048)
    assert refused(restarted, issuer.issue(kid="ghost", key=stranger)) == "unknown-key"


def test_the_default_cache_path_is_under_amos_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMOS_HOME", str(tmp_path / "amos"))
    monkeypatch.setenv("AMOS_OIDC_ISSUER", "https://idp.example")
    monkeypatch.setenv("AMOS_OIDC_AUDIENCE", "amos")
    monkeypatch.setenv("AMOS_OIDC_ALGORITHMS", '["ES256"]')

    settings = OidcSettings()

    assert settings.cache_path == tmp_path / "amos" / "identity" / "jwks.json"
    assert settings.issuer == "https://idp.example"
    assert settings.algorithms == ["ES256"]


def test_a_scheduled_refresh_keeps_the_keys_when_the_idp_is_down(
    issuer: OidcIssuer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    verifier = make_verifier(issuer, tmp_path)
    asyncio.run(verifier.cache.refresh())
    before = verifier.settings.cache_file.read_bytes()
    token = issuer.issue()

    issuer.stop()
    with caplog.at_level(logging.WARNING, logger="amosflow.identity.oidc"):
        asyncio.run(verifier.cache.refresh())  # does not raise

    assert "cannot fetch the OIDC signing keys" in caplog.text
    assert verifier.cache.kids == ("rsa-1", "ed-1")
    assert verifier.settings.cache_file.read_bytes() == before
    assert verified(verifier, token)


def test_a_bad_jwks_keeps_the_keys(issuer: OidcIssuer, tmp_path: Path) -> None:
    verifier = make_verifier(issuer, tmp_path)
    asyncio.run(verifier.cache.refresh())
    token = issuer.issue()

    for key in issuer.keys:
        key.published = False  # an empty key set
    asyncio.run(verifier.cache.refresh())

    assert verifier.cache.kids == ("rsa-1", "ed-1")
    assert verified(verifier, token)


def test_a_corrupt_cache_file_is_ignored(
    issuer: OidcIssuer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(issuer, tmp_path)
    settings.cache_file.parent.mkdir(parents=True)
    settings.cache_file.write_text("{not json")

    with caplog.at_level(logging.WARNING, logger="amosflow.identity.oidc"):
        verifier = OidcVerifier(settings)

    assert verifier.cache.kids == ()
    assert "unreadable OIDC key cache" in caplog.text
    assert verified(verifier, issuer.issue())
    assert json.loads(settings.cache_file.read_text())["keys"]


def test_private_and_symmetric_keys_are_never_kept(issuer: OidcIssuer, tmp_path: Path) -> None:
    settings = make_settings(issuer, tmp_path)
    private = public_jwk(issuer.current().key, kid="rsa-1", alg="RS256")
    private["d"] = "c2VjcmV0"
    document = {"keys": [private, {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}, {"kty": "RSA"}]}
    settings.cache_file.parent.mkdir(parents=True)
    settings.cache_file.write_text(json.dumps(document))

    cache = JwksCache(settings)

    assert cache.kids == ("rsa-1",)
    assert verified(OidcVerifier(settings, cache), issuer.issue())


# -- discovery, redirects, the refresh loop ----------------------------------------------


def test_the_jwks_uri_is_discovered_once(issuer: OidcIssuer, tmp_path: Path) -> None:
    verifier = make_verifier(issuer, tmp_path, jwks_uri=None)

    async def scenario() -> None:
        await verifier.cache.refresh()
        await verifier.cache.refresh()

    asyncio.run(scenario())

    assert verifier.cache.jwks_uri == issuer.jwks_uri
    assert issuer.discovery_requests == 1
    assert issuer.jwks_requests == 2
    assert verified(verifier, issuer.issue())


def test_a_discovery_document_of_another_issuer_is_refused(
    issuer: OidcIssuer, tmp_path: Path
) -> None:
    settings = make_settings(issuer, tmp_path, jwks_uri=None, issuer=issuer.url + "/tenant")
    issuer.redirects["/tenant/.well-known/openid-configuration"] = (
        "/.well-known/openid-configuration"  # same host: followed, but names another issuer
    )
    cache = JwksCache(settings)

    asyncio.run(cache.refresh())

    assert issuer.discovery_requests == 1
    assert cache.kids == ()
    assert cache.jwks_uri is None


def test_redirects_are_followed_only_within_the_host(issuer: OidcIssuer, tmp_path: Path) -> None:
    same = make_verifier(issuer, tmp_path / "same")
    issuer.redirects["/jwks.json"] = "/keys"
    asyncio.run(same.cache.refresh())
    assert same.cache.kids == ("rsa-1", "ed-1")

    other = make_verifier(issuer, tmp_path / "other")
    port = issuer.url.rsplit(":", 1)[1]
    issuer.redirects["/jwks.json"] = f"http://localhost:{port}/keys"
    asyncio.run(other.cache.refresh())
    assert other.cache.kids == ()
    assert issuer.jwks_requests == 1  # only the same-host fetch reached the keys


def test_the_refresh_loop_runs_until_stopped(issuer: OidcIssuer, tmp_path: Path) -> None:
    settings = make_settings(issuer, tmp_path, refresh_seconds=0.001)

    class Counting(JwksCache):
        def __init__(self, settings: OidcSettings, stop: asyncio.Event) -> None:
            super().__init__(settings)
            self.stop, self.calls = stop, 0

        async def refresh(self) -> None:
            await super().refresh()
            self.calls += 1
            if self.calls == 3:
                self.stop.set()

    async def scenario() -> tuple[int, int]:
        stop = asyncio.Event()
        cache = Counting(settings, stop)
        await asyncio.wait_for(cache.run_refresh_loop(stop), timeout=30)
        already = asyncio.Event()
        already.set()
        await cache.run_refresh_loop(already)  # stopped before it starts: no fetch
        return cache.calls, issuer.jwks_requests

    assert asyncio.run(scenario()) == (3, 3)


def test_the_refresh_loop_survives_an_unreachable_idp(issuer: OidcIssuer, tmp_path: Path) -> None:
    settings = make_settings(issuer, tmp_path, refresh_seconds=0.001)
    issuer.stop()

    async def scenario() -> None:
        stop = asyncio.Event()

        class Stopping(JwksCache):
            async def refresh(self) -> None:
                await super().refresh()  # fails: nothing listens any more
                stop.set()

        cache = Stopping(settings)
        await asyncio.wait_for(cache.run_refresh_loop(stop), timeout=30)
        assert cache.kids == ()

    asyncio.run(scenario())


# -- shape and settings ------------------------------------------------------------------


def test_looks_like_jwt(issuer: OidcIssuer) -> None:
    token = issuer.issue()

    assert looks_like_jwt(token)
    assert looks_like_jwt(craft({"alg": "none"}, {"sub": "x"}))
    for other in (
        "",
        "amos_pat_abcdef",
        "a.b",
        "a.b.c",
        "....",
        token + ".x",
        f"{b64url(b'[1]')}.{b64url(b'{}')}.",
        f"{b64url(b'not json')}.{b64url(b'{}')}.",
        "é.é.é",
        "=.=.=",
        "A" * 20000 + ".a.b",
    ):
        assert not looks_like_jwt(other), other
    assert not looks_like_jwt(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "algorithms",
    [["none"], ["HS256"], ["RS256", "HS512"], ["hs384"], ["NONE"], [], ["ES521"], ["RSA-OAEP"]],
)
def test_settings_refuse_unsafe_algorithms(algorithms: list[str], tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="algorithm"):
        OidcSettings(home=tmp_path, algorithms=algorithms)


def test_settings_need_an_audience_and_urls(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="AMOS_OIDC_AUDIENCE"):
        OidcSettings(home=tmp_path, issuer="https://idp.example")
    with pytest.raises(ValidationError, match="http"):
        OidcSettings(home=tmp_path, issuer="idp.example", audience="a")
    with pytest.raises(ValidationError, match="http"):
        OidcSettings(
            home=tmp_path, issuer="https://idp.example", audience="a", jwks_uri="file:///k"
        )
