"""Config bundles in the catalog and the Effective Config merged from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from amosflow.catalog import Catalog, ConfigBundle, effective_config, missing_requirements
from amosflow.dsl import parse_flow
from amosflow.errors import ValidationFailedError
from tests.catalog.helpers import AUTHOR, bundle, commits, flow


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(tmp_path / "catalog")


def put(catalog: Catalog, document: dict[str, Any]) -> str:
    return catalog.save(
        "configs", document["name"], document, author=AUTHOR, message="cfg", folder="default"
    ).commit


def test_layers_apply_base_then_environment_then_trigger(catalog: Catalog) -> None:
    """A key set by base, environment and trigger takes the trigger's value; the sources say so."""
    base = put(catalog, bundle("defaults", "base", {"level": "base", "only_base": 1}))
    prod = put(
        catalog, bundle("prod", "environment", {"level": "env", "only_env": 2}, "production")
    )
    put(catalog, bundle("staging", "environment", {"level": "staging"}, "staging"))
    hook = put(catalog, bundle("nightly", "trigger", {"level": "trigger"}))
    config = effective_config(
        catalog, environment="production", trigger="nightly", folder="default"
    )
    assert config.to_dict() == {"level": "trigger", "only_base": 1, "only_env": 2}
    assert config.sources == (("defaults", base), ("prod", prod), ("nightly", hook))


def test_base_bundles_merge_in_name_order_and_other_scopes_stay_out(catalog: Catalog) -> None:
    """Base bundles apply sorted by name; another environment's and trigger's bundles are ignored."""
    put(catalog, bundle("b-second", "base", {"who": "b"}))
    put(catalog, bundle("a-first", "base", {"who": "a"}))
    put(catalog, bundle("other", "environment", {"who": "other"}, "staging"))
    put(catalog, bundle("hook", "trigger", {"who": "hook"}))
    config = effective_config(catalog, environment=None, trigger=None, folder="default")
    assert config.values["who"] == "b"
    assert [name for name, _ in config.sources] == ["a-first", "b-second"]


def test_objects_merge_recursively_while_lists_and_scalars_replace(catalog: Catalog) -> None:
    """Nested objects combine key by key; a list or scalar from a higher layer replaces wholesale."""
    put(
        catalog,
        bundle("base", "base", {"erp": {"url": "http://base", "timeout": 5, "tags": ["a", "b"]}}),
    )
    put(
        catalog,
        bundle(
            "prod", "environment", {"erp": {"url": "https://prod", "tags": ["c"]}}, "production"
        ),
    )
    config = effective_config(catalog, environment="production", trigger=None, folder="default")
    assert config.to_dict() == {"erp": {"url": "https://prod", "timeout": 5, "tags": ["c"]}}


def test_the_snapshot_is_immutable(catalog: Catalog) -> None:
    """Neither the merged mapping nor its nested values can be changed in place."""
    put(catalog, bundle("base", "base", {"erp": {"url": "x", "tags": ["a"]}}))
    config = effective_config(catalog, environment=None, trigger=None, folder="default")
    with pytest.raises(TypeError):
        config.values["erp"]["url"] = "y"
    with pytest.raises(AttributeError):
        config.values["erp"]["tags"].append("b")
    copy = config.to_dict()
    copy["erp"]["url"] = "y"
    assert config.values["erp"]["url"] == "x"


def test_the_hash_depends_on_values_not_on_key_order(tmp_path: Path) -> None:
    """The same values written in different key orders, in different catalogs, hash the same."""
    one, two = Catalog(tmp_path / "one"), Catalog(tmp_path / "two")
    put(one, bundle("base", "base", {"a": 1, "b": {"x": True, "y": [1, 2]}}))
    put(two, {"values": {"b": {"y": [1, 2], "x": True}, "a": 1}, "layer": "base", "name": "base"})
    first = effective_config(one, environment=None, trigger=None, folder="default")
    second = effective_config(two, environment=None, trigger=None, folder="default")
    assert first.sha256 == second.sha256
    assert first.sha256.startswith("sha256:")
    assert len(first.sha256) == len("sha256:") + 64


def test_the_hash_changes_when_a_value_changes(catalog: Catalog) -> None:
    """Any change to the merged values gives a different hash."""
    put(catalog, bundle("base", "base", {"a": 1}))
    before = effective_config(catalog, environment=None, trigger=None, folder="default").sha256
    put(catalog, bundle("base", "base", {"a": 2}))
    assert (
        effective_config(catalog, environment=None, trigger=None, folder="default").sha256 != before
    )


def test_an_empty_catalog_gives_an_empty_config(catalog: Catalog) -> None:
    """With no bundles the values are empty and the hash is that of `{}`."""
    config = effective_config(
        catalog, environment="production", trigger="nightly", folder="default"
    )
    assert config.to_dict() == {}
    assert config.sources == ()


@pytest.mark.parametrize(
    ("document", "pointer"),
    [
        (bundle("prod", "environment", {}), "/environment"),
        (bundle("base", "base", {}, "production"), "/environment"),
        (bundle("base", "global", {}), "/layer"),
        ({"name": "base", "layer": "base", "values": [], "extra": 1}, "/values"),
        (bundle("other", "base", {}), "/name"),
    ],
)
def test_an_invalid_bundle_is_refused_with_a_pointer_and_no_commit(
    catalog: Catalog, document: dict[str, Any], pointer: str
) -> None:
    """Bundles are checked against ConfigBundle before any commit."""
    name = "prod" if document["name"] == "prod" else "base"
    with pytest.raises(ValidationFailedError) as caught:
        catalog.save("configs", name, document, author=AUTHOR, message="bad", folder="default")
    assert pointer in [d.pointer for d in caught.value.diagnostics]
    assert len(commits(catalog.path)) == 1


def test_a_config_bundle_model_round_trips() -> None:
    """ConfigBundle parses the stored shape and refuses an environment bundle without one."""
    assert ConfigBundle.model_validate(
        bundle("prod", "environment", {"a": 1}, "production")
    ).values == {"a": 1}
    with pytest.raises(ValueError, match="environment"):
        ConfigBundle(name="prod", layer="environment", values={})


def requiring(config: list[str], secrets: list[str]) -> Any:
    return parse_flow(flow("needy", requires={"config": config, "secrets": secrets}))


def test_missing_requirements_names_every_unbound_key_and_secret() -> None:
    """Every required dotted config key and secret without a binding is named, in order."""
    needy = requiring(
        ["erp.url", "erp.timeout", "mail.host", "region"], ["erp.token", "mail.password"]
    )
    config = {"erp": {"url": "https://erp", "timeout": None}, "mail": "not-an-object"}
    assert missing_requirements(needy, config, {"mail.password"}) == [
        "config:erp.timeout",
        "config:mail.host",
        "config:region",
        "secret:erp.token",
    ]


def test_missing_requirements_is_empty_when_everything_is_bound(catalog: Catalog) -> None:
    """A flow whose requirements are all bound by the effective config may run."""
    put(catalog, bundle("base", "base", {"erp": {"url": "https://erp"}, "flag": False}))
    config = effective_config(catalog, environment=None, trigger=None, folder="default")
    needy = requiring(["erp.url", "flag"], ["erp.token"])
    assert missing_requirements(needy, config.values, {"erp.token"}) == []


def test_a_folder_merges_only_its_own_bundles(catalog: Catalog) -> None:
    """A run's config is made of its folder's bundles: another folder's change nothing of it."""
    catalog.save(
        "configs",
        "defaults",
        bundle("defaults", "base", {"egress": {"allow": ["api.example.com"]}, "limit": 1}),
        author=AUTHOR,
        message="finance",
        folder="finance",
    )
    catalog.save(
        "configs",
        "defaults",
        bundle("defaults", "base", {"egress": {"allow": ["evil.example"]}, "limit": 9}),
        author=AUTHOR,
        message="sales",
        folder="sales",
    )
    finance = effective_config(catalog, environment=None, trigger=None, folder="finance")
    assert finance.to_dict() == {"egress": {"allow": ["api.example.com"]}, "limit": 1}
    sales = effective_config(catalog, environment=None, trigger=None, folder="sales")
    assert sales.to_dict() == {"egress": {"allow": ["evil.example"]}, "limit": 9}
    nobody = effective_config(catalog, environment=None, trigger=None, folder="marketing")
    assert nobody.to_dict() == {}
    assert finance.sha256 != sales.sha256
