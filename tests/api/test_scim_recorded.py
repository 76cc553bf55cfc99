"""The request sequences Microsoft Entra ID and Okta send, replayed against a real node.

Each sequence follows the IdP's public provisioning guide: Microsoft's "Develop a sample SCIM
endpoint" request examples (the Entra provisioning service), and Okta's "SCIM 2.0" reference
(its SCIM client). Each step's request body is the documented one, with our own names and ids.
After each sequence the test reads what the node made of it: principals (through SCIM and
``/api/v1/me``), groups, role bindings in effect, and the audit records, each attributed to
the IdP's own token. Both run on SQLite and on PostgreSQL, where the kept document is JSONB.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from amosflow.bus.embedded import EmbeddedNats
from amosflow.config import EngineSettings, StoreSettings
from tests.api.conftest import Node, running_node
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.temporal
SCIM = {"Content-Type": "application/scim+json"}
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@pytest.fixture(params=["sqlite", "postgresql"])
def node(
    request: pytest.FixtureRequest,
    settings: EngineSettings,
    tmp_path: Path,
    nats_server: EmbeddedNats,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Node]:
    """A running node on SQLite, then on PostgreSQL."""
    if request.param == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        monkeypatch.setenv("AMOS_DATABASE_URL", server.create_database())
    store_url = StoreSettings(home=settings.home).url
    with running_node(settings, tmp_path, nats_server, store_url=store_url) as running:
        yield running


def _ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    if status == 204:
        return {}
    body: dict[str, Any] = response.json()
    return body


def _ops(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


def _actions(node: Node, actor: str, resource: str) -> list[str]:
    items = node.client.get(
        "/api/v1/audit", params={"actor": actor, "resource": resource, "limit": 500}
    ).json()["items"]
    return [str(item["action"]) for item in reversed(items)]


def _groups_of(node: Node, username: str) -> list[str]:
    """The groups the node puts in the user's identity (what role bindings match on)."""
    with node.as_caller(node.token_for(username, None)) as user:
        me = user.get("/api/v1/me")
    assert me.status_code == 200, me.text
    groups: list[str] = me.json()["groups"]
    return groups


def test_entra_id_provisioning_sequence(node: Node) -> None:
    """Entra's create, update, rename, disable, enable, group push and member changes land."""
    idp_token = node.token_for("entra-provisioning", "administrator", "*")
    idp = node.as_caller(idp_token)
    binding = {"subject_kind": "group", "subject": "Finance", "role": "operator"}
    assert node.client.post("/api/v1/role-bindings", json=binding).status_code == 201
    with idp:
        # Look-up before create: no such user yet (Entra matches on userName).
        found = _ok(idp.get("/scim/v2/Users", params={"filter": 'userName eq "Ada@contoso.com"'}))
        assert found["totalResults"] == 0
        created = _ok(
            idp.post(
                "/scim/v2/Users",
                headers=SCIM,
                json={
                    "schemas": [USER, ENTERPRISE],
                    "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
                    "userName": "Ada@contoso.com",
                    "active": True,
                    "emails": [{"primary": True, "type": "work", "value": "Ada@contoso.com"}],
                    "meta": {"resourceType": "User"},
                    "name": {
                        "formatted": "Ada Lovelace",
                        "familyName": "Lovelace",
                        "givenName": "Ada",
                    },
                    "roles": [],
                },
            ),
            201,
        )
        user_id = created["id"]
        # The look-up again, in another letter case, finds her: no duplicate is created.
        again = _ok(idp.get("/scim/v2/Users", params={"filter": 'userName eq "ada@contoso.com"'}))
        assert [u["id"] for u in again["Resources"]] == [user_id]
        # Update: Entra's value-filter path and a sub-attribute path, with capitalised ops.
        _ok(
            idp.patch(
                f"/scim/v2/Users/{user_id}",
                headers=SCIM,
                json=_ops(
                    {
                        "op": "Replace",
                        "path": 'emails[type eq "work"].value',
                        "value": "ada.l@contoso.com",
                    },
                    {"op": "Replace", "path": "name.familyName", "value": "King"},
                    {"op": "Add", "path": f"{ENTERPRISE}:department", "value": "Finance"},
                    {"op": "Add", "path": f"{ENTERPRISE}:manager", "value": "2819c223-7f76-453a"},
                ),
            )
        )
        # Rename: userName changes.
        _ok(
            idp.patch(
                f"/scim/v2/Users/{user_id}",
                headers=SCIM,
                json=_ops({"op": "Replace", "path": "userName", "value": "ada.king@contoso.com"}),
            )
        )
        read = _ok(idp.get(f"/scim/v2/Users/{user_id}"))
        assert read["userName"] == "ada.king@contoso.com"
        assert read["emails"] == [{"primary": True, "type": "work", "value": "ada.l@contoso.com"}]
        assert read["name"]["familyName"] == "King"
        assert read[ENTERPRISE]["department"] == "Finance"
        assert read[ENTERPRISE]["manager"]["value"] == "2819c223-7f76-453a"
        # Group push: the group is created bare, found with members excluded, then filled.
        group = _ok(
            idp.post(
                "/scim/v2/Groups",
                headers=SCIM,
                json={
                    "schemas": [GROUP],
                    "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
                    "displayName": "Finance",
                    "meta": {"resourceType": "Group"},
                },
            ),
            201,
        )
        listed = _ok(
            idp.get(
                "/scim/v2/Groups",
                params={"excludedAttributes": "members", "filter": 'displayName eq "Finance"'},
            )
        )
        assert [g["id"] for g in listed["Resources"]] == [group["id"]]
        assert "members" not in listed["Resources"][0]
        group_url = f"/scim/v2/Groups/{group['id']}"
        _ok(
            idp.patch(
                group_url,
                headers=SCIM,
                json=_ops(
                    {"op": "Add", "path": "members", "value": [{"$ref": None, "value": user_id}]}
                ),
            )
        )
        assert _groups_of(node, "ada.king@contoso.com") == ["Finance"]
        by_external = _ok(
            idp.get(
                "/scim/v2/Groups",
                params={"filter": 'externalId eq "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159"'},
            )
        )
        assert [m["value"] for m in by_external["Resources"][0]["members"]] == [user_id]
        # The operator role comes through the group binding.
        with node.as_caller(node.token_for("ada.king@contoso.com", None)) as ada:
            assert ada.get("/api/v1/runs").status_code == 200
        # Disable (Entra sends the boolean as a string without its compliance flag), enable.
        _ok(
            idp.patch(
                f"/scim/v2/Users/{user_id}",
                headers=SCIM,
                json=_ops({"op": "Replace", "path": "active", "value": "False"}),
            )
        )
        assert _ok(idp.get(f"/scim/v2/Users/{user_id}"))["active"] is False
        _ok(
            idp.patch(
                f"/scim/v2/Users/{user_id}",
                headers=SCIM,
                json=_ops({"op": "Replace", "path": "active", "value": True}),
            )
        )
        assert _ok(idp.get(f"/scim/v2/Users/{user_id}"))["active"] is True
        # Member removal the Entra way: `remove` on members with the value to remove.
        _ok(
            idp.patch(
                group_url,
                headers=SCIM,
                json=_ops(
                    {"op": "Remove", "path": "members", "value": [{"$ref": None, "value": user_id}]}
                ),
            )
        )
        assert _groups_of(node, "ada.king@contoso.com") == []
        # Deprovision.
        _ok(idp.delete(f"/scim/v2/Users/{user_id}"), 204)
        assert idp.get(f"/scim/v2/Users/{user_id}").status_code == 404

    actor = "user:entra-provisioning"
    assert _actions(node, actor, f"principals/{user_id}") == [
        "users.create",
        "users.update",
        "users.update",
        "users.update",
        "users.update",
        "users.delete",
    ]
    assert _actions(node, actor, f"groups/{group['id']}") == [
        "groups.create",
        "groups.update",
        "groups.update",
    ]


def test_okta_provisioning_sequence(node: Node) -> None:
    """Okta's import check, create, PUT update, deactivate, reactivate and group push land."""
    idp_token = node.token_for("okta-provisioning", "administrator", "*")
    binding = {"subject_kind": "group", "subject": "Engineering", "role": "operator"}
    assert node.client.post("/api/v1/role-bindings", json=binding).status_code == 201
    with node.as_caller(idp_token) as idp:
        # Test connection: constant paging parameters.
        assert (
            _ok(idp.get("/scim/v2/Users", params={"startIndex": 1, "count": 2}))["startIndex"] == 1
        )
        assert "Resources" in _ok(
            idp.get("/scim/v2/Groups", params={"startIndex": 1, "count": 100})
        )
        found = _ok(
            idp.get(
                "/scim/v2/Users",
                params={"filter": 'userName eq "grace@example.com"', "startIndex": 1, "count": 100},
            )
        )
        assert found["totalResults"] == 0
        user = {
            "schemas": [USER],
            "userName": "grace@example.com",
            "name": {"givenName": "Grace", "familyName": "Hopper"},
            "emails": [{"primary": True, "value": "grace@example.com", "type": "work"}],
            "displayName": "Grace Hopper",
            "locale": "en-US",
            "externalId": "00ujl29u0le5T6Aj10h7",
            "groups": [],
            "password": "1mz050nq",
            "active": True,
        }
        created = _ok(idp.post("/scim/v2/Users", headers=SCIM, json=user), 201)
        user_id = created["id"]
        assert "password" not in created
        # Profile update: Okta PUTs the whole user back with the change.
        replaced = _ok(
            idp.put(
                f"/scim/v2/Users/{user_id}",
                headers=SCIM,
                json=user | {"id": user_id, "displayName": "Rear Admiral Hopper", "title": "RADM"},
            )
        )
        assert (replaced["displayName"], replaced["title"]) == ("Rear Admiral Hopper", "RADM")
        # Rename: a PUT with another userName.
        renamed = _ok(
            idp.put(
                f"/scim/v2/Users/{user_id}",
                headers=SCIM,
                json=user | {"id": user_id, "userName": "g.hopper@example.com"},
            )
        )
        assert renamed["userName"] == "g.hopper@example.com"
        # Group push: created empty, renamed with Okta's path-less replace carrying the id,
        # then members added, replaced and removed.
        group = _ok(
            idp.post(
                "/scim/v2/Groups",
                headers=SCIM,
                json={"schemas": [GROUP], "displayName": "Eng", "members": []},
            ),
            201,
        )
        group_url = f"/scim/v2/Groups/{group['id']}"
        _ok(
            idp.patch(
                group_url,
                headers=SCIM,
                json=_ops(
                    {"op": "replace", "value": {"id": group["id"], "displayName": "Engineering"}}
                ),
            )
        )
        _ok(
            idp.patch(
                group_url,
                headers=SCIM,
                json=_ops(
                    {
                        "op": "add",
                        "path": "members",
                        "value": [{"value": user_id, "display": "g.hopper@example.com"}],
                    }
                ),
            )
        )
        assert _groups_of(node, "g.hopper@example.com") == ["Engineering"]
        with node.as_caller(node.token_for("g.hopper@example.com", None)) as grace:
            assert grace.get("/api/v1/runs").status_code == 200
            # Deactivate, the Okta way: a path-less replace. Her token dies with it.
            deactivated = _ok(
                idp.patch(
                    f"/scim/v2/Users/{user_id}",
                    headers=SCIM,
                    json=_ops({"op": "replace", "value": {"active": False}}),
                )
            )
            assert deactivated["active"] is False
            assert grace.get("/api/v1/runs").status_code == 401
        reactivated = _ok(
            idp.patch(
                f"/scim/v2/Users/{user_id}",
                headers=SCIM,
                json=_ops({"op": "replace", "value": {"active": True}}),
            )
        )
        assert reactivated["active"] is True
        _ok(
            idp.patch(
                group_url,
                headers=SCIM,
                json=_ops({"op": "remove", "path": f'members[value eq "{user_id}"]'}),
            )
        )
        assert _groups_of(node, "g.hopper@example.com") == []
        _ok(
            idp.put(
                group_url,
                headers=SCIM,
                json={
                    "schemas": [GROUP],
                    "displayName": "Engineering",
                    "members": [{"value": user_id}],
                },
            )
        )
        assert _groups_of(node, "g.hopper@example.com") == ["Engineering"]
        _ok(idp.delete(group_url), 204)
        assert _groups_of(node, "g.hopper@example.com") == []
        assert idp.get(group_url).status_code == 404

    actor = "user:okta-provisioning"
    assert _actions(node, actor, f"principals/{user_id}") == [
        "users.create",
        "users.update",
        "users.update",
        "users.update",
        "users.update",
    ]
    assert _actions(node, actor, f"groups/{group['id']}") == [
        "groups.create",
        "groups.update",
        "groups.update",
        "groups.update",
        "groups.update",
        "groups.delete",
    ]


def test_concurrent_membership_changes_are_not_lost(node: Node) -> None:
    """Entra sends one group's membership changes in parallel; every one of them lands."""
    ids = [
        _ok(
            node.client.post(
                "/scim/v2/Users", json={"schemas": [USER], "userName": f"p{n}@example.com"}
            ),
            201,
        )["id"]
        for n in range(12)
    ]
    leaving, staying, joining = ids[:4], ids[4:8], ids[8:]
    group = _ok(
        node.client.post(
            "/scim/v2/Groups",
            json={
                "schemas": [GROUP],
                "displayName": "Parallel",
                "members": [{"value": i} for i in leaving + staying],
            },
        ),
        201,
    )
    url = f"/scim/v2/Groups/{group['id']}"
    token = node.client.headers["Authorization"].removeprefix("Bearer ")

    def change(step: tuple[str, str]) -> int:
        op, user_id = step
        body = _ops({"op": op, "path": "members", "value": [{"value": user_id}]})
        with node.as_caller(token) as idp:
            return idp.patch(url, headers=SCIM, json=body).status_code

    steps = [("Remove", i) for i in leaving] + [("Add", i) for i in joining]
    with ThreadPoolExecutor(max_workers=len(steps)) as pool:
        assert list(pool.map(change, steps)) == [200] * len(steps)
    members = _ok(node.client.get(url))["members"]
    assert sorted(m["value"] for m in members) == sorted(staying + joining)
