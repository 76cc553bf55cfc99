"""Effective Config: layered config bundles merged into one immutable, hashed snapshot per run."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from amosflow.catalog._kinds import NAME_PATTERN, register_kind
from amosflow.dsl import canonical_json
from amosflow.errors import Diagnostic, ValidationFailedError

if TYPE_CHECKING:
    from amosflow.catalog._catalog import Catalog
    from amosflow.dsl import Flow

__all__ = ["ConfigBundle", "EffectiveConfig", "effective_config", "missing_requirements"]

Layer = Literal["base", "environment", "trigger"]
_LAYERS: tuple[Layer, ...] = ("base", "environment", "trigger")


class ConfigBundle(BaseModel):
    """A named set of config values for one layer: base, an environment, or a trigger."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
    layer: Layer
    environment: str | None = Field(default=None, validate_default=True)
    values: dict[str, Any] = Field(default_factory=dict)

    @field_validator("environment")
    @classmethod
    def _environment_matches_layer(cls, value: str | None, info: ValidationInfo) -> str | None:
        layer = info.data.get("layer")
        if layer == "environment" and not value:
            raise ValueError("an environment bundle must name its environment")
        if layer in {"base", "trigger"} and value is not None:
            raise ValueError(f"a {layer} bundle applies to every environment; leave this out")
        return value


def _pointer(location: tuple[int | str, ...]) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in location)


def _validate_bundle(name: str, document: dict[str, Any]) -> None:
    try:
        bundle = ConfigBundle.model_validate(document)
    except ValidationError as exc:
        diagnostics = [Diagnostic(_pointer(err["loc"]), err["msg"]) for err in exc.errors()]
        raise ValidationFailedError(diagnostics) from None
    if bundle.name != name:
        message = f"must equal the catalog name {name!r}, got {bundle.name!r}"
        raise ValidationFailedError([Diagnostic("/name", message)])


register_kind("configs", _validate_bundle)


@dataclass(frozen=True, slots=True)
class EffectiveConfig:
    """The merged config of one run: read-only values, their hash and the bundles they came from."""

    values: Mapping[str, Any]
    """Deep-frozen: mappings are read-only proxies and lists are tuples."""
    sha256: str
    """``sha256:<hex>`` of the RFC 8785 canonical JSON of the values; pinned to the run."""
    sources: tuple[tuple[str, str], ...]
    """``(bundle name, commit)`` in merge order, so a run shows where each value came from."""

    def to_dict(self) -> dict[str, Any]:
        """Return a mutable deep copy as plain JSON values (for workflow inputs and the API)."""
        thawed: dict[str, Any] = _thaw(self.values)
        return thawed


def effective_config(
    catalog: Catalog,
    *,
    environment: str | None,
    trigger: str | None,
    folder: str,
) -> EffectiveConfig:
    """Merge ``folder``'s base bundles, then its environment's, then its trigger's.

    Only bundles filed in the run's own folder count: a bundle of another folder can change
    nothing of this folder's runs (their egress policy, endpoints or anything else).
    """
    bundles = [
        (ConfigBundle.model_validate(entry.document), entry.version.commit)
        for entry in catalog.list("configs", folder)  # one commit, name order
    ]
    chosen = [
        (bundle, commit)
        for layer in _LAYERS
        for bundle, commit in bundles
        if bundle.layer == layer
        and (layer != "environment" or bundle.environment == environment)
        and (layer != "trigger" or bundle.name == trigger)
    ]
    merged: dict[str, Any] = {}
    for bundle, _ in chosen:
        merged = deep_merge(merged, bundle.values)
    digest = "sha256:" + hashlib.sha256(canonical_json(merged)).hexdigest()
    sources = tuple((bundle.name, commit) for bundle, commit in chosen)
    return EffectiveConfig(values=_freeze(merged), sha256=digest, sources=sources)


def deep_merge(lower: Mapping[str, Any], upper: Mapping[str, Any]) -> dict[str, Any]:
    """Overlay ``upper`` on ``lower``: objects merge key by key, lists and scalars replace."""
    merged = copy.deepcopy(dict(lower))
    for key, value in upper.items():
        below = merged.get(key)
        if isinstance(below, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(below, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def missing_requirements(
    flow: Flow, config: Mapping[str, Any], secret_names: set[str]
) -> list[str]:
    """Name every required config key (``config:a.b``) and secret (``secret:x``) with no binding."""
    missing = [
        f"config:{key}" for key in dict.fromkeys(flow.requires.config) if not _bound(config, key)
    ]
    missing += [
        f"secret:{name}"
        for name in dict.fromkeys(flow.requires.secrets)
        if name not in secret_names
    ]
    return missing


def _bound(config: Mapping[str, Any], dotted: str) -> bool:
    """Whether a dotted path resolves to a non-null value; null counts as unbound (fail closed)."""
    value: Any = config
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False
        value = value[part]
    return value is not None


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({key: _freeze(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(item) for item in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _thaw(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [_thaw(item) for item in value]
    return value
