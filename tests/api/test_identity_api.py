"""Signing in, tokens, service accounts and OIDC through a real node (SCIM: test_scim*.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from amosflow.bus.embedded import EmbeddedNats
from amosflow.config import EngineSettings
from amosflow.identity import OidcSettings
from tests.api.conftest import Node, running_node
from tests.api.flows_util import doc, save
from tests.support.identity import PASSWORD
from tests.support.oidc_issuer import AUDIENCE, OidcIssuer, running_oidc_issuer

pytestmark = pytest.mark.temporal


def _login(node: Node, username: str, password: str) -> httpx.Response:
    with node.as_caller(None) as anonymous:
        return anonymous.post(
            "/api/v1/auth/login", json={"username": username, "password": password}
        )


def _audit(node: Node, **params: str) -> list[dict[str, object]]:
    items: list[dict[str, object]] = node.client.get("/api/v1/audit", params=params).json()["items"]
    return items


def test_login_gives_a_session_token_that_works(node: Node) -> None:
    """A local user signs in and calls the API with the session token; both are audited."""
    node.token_for("lena", "analyst", "default")
    login = _login(node, "lena", PASSWORD)
    assert login.status_code == 200, login.text
    body = login.json()
    assert body["token_type"] == "Bearer"
    assert 0 < body["expires_in"] <= 900
    with node.as_caller(body["access_token"]) as lena:
        me = lena.get("/api/v1/me").json()
    assert me["username"] == "lena"
    assert me["via"] == "session"
    assert {"role": "analyst", "folder": "default", "condition": None} in me["bindings"]
    assert _audit(node, action="auth.login")[0]["actor"] == "user:lena"


def test_wrong_passwords_lock_the_account_and_are_audited(node: Node) -> None:
    """Five failures lock the account: then even the right password is refused, and it shows."""
    node.token_for("max", "analyst", "default")
    for _ in range(5):
        assert _login(node, "max", "not the password").status_code == 401
    locked = _login(node, "max", PASSWORD)
    assert locked.status_code == 401
    assert locked.json()["detail"] == _login(node, "nobody", "x").json()["detail"]
    denied = [r for r in _audit(node, action="auth.login") if r["outcome"] == "denied"]
    reasons = [r["details"]["reason"] for r in denied]  # type: ignore[index]
    assert "locked" in reasons
    assert "bad_secret" in reasons
    assert all(PASSWORD not in str(r) for r in denied)


def test_too_many_attempts_from_one_address_get_429(node: Node) -> None:
    """The per-address limit answers 429 with Retry-After before checking any password."""
    codes = [_login(node, f"u{i}", "x").status_code for i in range(15)]
    assert 429 in codes
    limited = _login(node, "u99", "x")
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1


def test_personal_tokens_are_shown_once_and_revocable(node: Node) -> None:
    """A token is returned once, listed without its value, and dead once revoked."""
    token = node.token_for("pia", "operator", "default")
    with node.as_caller(token) as pia:
        issued = pia.post("/api/v1/me/tokens", json={"name": "ci", "expires_in_days": 7})
        assert issued.status_code == 201, issued.text
        new = issued.json()
        listed = pia.get("/api/v1/me/tokens").json()
        assert new["id"] in {t["id"] for t in listed}
        assert new["token"] not in str(listed)
        assert pia.delete(f"/api/v1/me/tokens/{new['id']}").status_code == 200
    with node.as_caller(new["token"]) as revoked:
        assert revoked.get("/api/v1/flows").status_code == 401


def test_a_service_account_uses_client_credentials(node: Node) -> None:
    """OAuth2 client credentials: the secret is shown once, a grant gives a working token."""
    created = node.client.post("/api/v1/service-accounts", json={"name": "ci-bot"})
    assert created.status_code == 201, created.text
    account = created.json()
    binding = {"subject_kind": "principal", "subject": account["id"], "role": "service"}
    assert node.client.post("/api/v1/role-bindings", json=binding).status_code == 201
    save(node.client, doc("greet"))
    form = {
        "grant_type": "client_credentials",
        "client_id": account["client_id"],
        "client_secret": account["client_secret"],
    }
    with node.as_caller(None) as anonymous:
        granted = anonymous.post("/api/v1/auth/token", data=form)
        assert granted.status_code == 200, granted.text
        wrong = anonymous.post("/api/v1/auth/token", data=form | {"client_secret": "nope"})
        assert wrong.status_code == 401
    with node.as_caller(granted.json()["access_token"]) as bot:
        assert bot.get("/api/v1/me").json()["kind"] == "service"
        started = bot.post("/api/v1/runs", json={"flow": "greet", "inputs": {"who": "bot"}})
        assert started.status_code == 201, started.text
        assert started.json()["started_by"] == "service:ci-bot"
        assert bot.put("/api/v1/flows/greet", json={"document": doc()}).status_code == 403


@pytest.fixture
def oidc_node(
    settings: EngineSettings, tmp_path: Path, nats_server: EmbeddedNats
) -> Iterator[tuple[Node, OidcIssuer]]:
    """A node that trusts a loopback OIDC issuer the test started."""
    with running_oidc_issuer() as issuer:
        oidc = OidcSettings(
            home=settings.home, issuer=issuer.url, audience=AUDIENCE, min_refetch_seconds=0
        )
        with running_node(settings, tmp_path, nats_server, oidc=oidc) as node:
            yield node, issuer


def test_an_idp_token_maps_its_groups_to_roles_and_folders(
    oidc_node: tuple[Node, OidcIssuer],
) -> None:
    """A JWT from the IdP is accepted; its `groups` claim decides the folders it sees."""
    node, issuer = oidc_node
    node.client.post("/api/v1/folders", json={"name": "ops-folder"})
    binding = {"subject_kind": "group", "subject": "ops", "role": "analyst", "folder": "ops-folder"}
    assert node.client.post("/api/v1/role-bindings", json=binding).status_code == 201
    body = {"document": doc("opsflow"), "folder": "ops-folder"}
    assert node.client.put("/api/v1/flows/opsflow", json=body).status_code == 200
    save(node.client, doc("elsewhere"))
    with node.as_caller(issuer.issue()) as alice:
        me = alice.get("/api/v1/me").json()
        assert me["via"] == "oidc"
        assert "ops" in me["groups"]
        assert [f["name"] for f in alice.get("/api/v1/flows").json()] == ["opsflow"]
        assert alice.get("/api/v1/flows/elsewhere").status_code == 404
    for bad in (
        issuer.issue({"exp": 1}),
        issuer.issue({"aud": "someone-else"}),
        issuer.issue({"iss": "http://127.0.0.1:9/evil"}),
        issuer.issue(kid="nobody-knows"),
    ):
        with node.as_caller(bad) as stranger:
            assert stranger.get("/api/v1/me").status_code == 401


def test_mutations_fail_with_503_when_the_audit_trail_cannot_be_written(node: Node) -> None:
    """A broken audit table stops run starts (503) and nothing is recorded half-way."""
    save(node.client, doc("greet"))
    database = node.config.store_url.removeprefix("sqlite:///")
    with sqlite3.connect(database) as conn:
        conn.execute(
            "CREATE TRIGGER no_audit BEFORE INSERT ON audit_records "
            "BEGIN SELECT RAISE(ABORT, 'audit store unavailable'); END"
        )
    try:
        started = node.client.post("/api/v1/runs", json={"flow": "greet", "inputs": {"who": "x"}})
        assert started.status_code == 503, started.text
        assert started.json()["code"] == "amos.audit"
        assert node.client.get("/api/v1/runs").json()["items"] == []
    finally:
        with sqlite3.connect(database) as conn:
            conn.execute("DROP TRIGGER no_audit")
