"""Model definitions: which OpenAI-compatible endpoint, model and pinned revision a name means.

Definitions are catalog objects of kind ``models``, versioned in Git like flows. Nothing
else names an endpoint: with no definition, an AI step fails closed (decision 0037).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from amosflow.catalog import register_kind
from amosflow.catalog._kinds import NAME_PATTERN
from amosflow.errors import AIConfigurationError, Diagnostic, NotFoundError, ValidationFailedError

if TYPE_CHECKING:
    from amosflow.catalog import Catalog

__all__ = ["KIND", "ModelDefinition", "resolve_model"]

KIND = "models"
#: Request fields a definition's ``parameters`` may not set: the gateway owns them.
_RESERVED = frozenset({"model", "messages", "stream", "tools", "response_format"})


class ModelDefinition(BaseModel):
    """One configured model: endpoint, model id, pinned revision, defaults and budgets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, StringConstraints(pattern=NAME_PATTERN)] = Field(
        description="The name steps use (`with.model`)."
    )
    base_url: str = Field(
        max_length=2000,
        description="Root of the OpenAI-compatible API, e.g. `http://vllm.internal:8000/v1`.",
    )
    model: str = Field(min_length=1, max_length=300, description="The model id sent upstream.")
    revision: str = Field(
        min_length=1,
        max_length=300,
        description="Pinned revision or digest of the weights, recorded in every result.",
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="Default request fields (temperature, top_p, seed …); a step's own win.",
    )
    budget_run_tokens: int | None = Field(
        default=None, gt=0, description="Most tokens one run may spend on this model."
    )
    budget_folder_tokens: int | None = Field(
        default=None,
        gt=0,
        description="Most tokens one folder may spend on this model per UTC day.",
    )
    timeout_s: float = Field(default=60.0, gt=0, le=3600, description="Per-call timeout.")
    tool_calls: Literal["native", "prompted"] = Field(
        default="native",
        description=(
            "How tools reach the model: `native` (the server's own tool calling) or `prompted`"
            " (the gateway asks for a JSON-Schema-constrained call, for models without it)."
        ),
    )
    api_key_secret: str | None = Field(
        default=None,
        max_length=200,
        description="Name of a vault secret sent as the bearer token; none when absent.",
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials; use api_key_secret")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or a fragment")
        return value.rstrip("/")

    @field_validator("parameters")
    @classmethod
    def _not_reserved(cls, value: dict[str, Any]) -> dict[str, Any]:
        taken = sorted(_RESERVED & set(value))
        if taken:
            raise ValueError(f"may not set {', '.join(taken)}: the gateway sets them per call")
        return value

    @property
    def chat_url(self) -> str:
        """The chat-completions endpoint of this model."""
        return f"{self.base_url}/chat/completions"


def _pointer(location: tuple[int | str, ...]) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in location)


def _validate(name: str, document: dict[str, Any]) -> None:
    try:
        definition = ModelDefinition.model_validate(document)
    except ValidationError as exc:
        diagnostics = [Diagnostic(_pointer(err["loc"]), err["msg"]) for err in exc.errors()]
        raise ValidationFailedError(diagnostics) from None
    if definition.name != name:
        message = f"must equal the catalog name {name!r}, got {definition.name!r}"
        raise ValidationFailedError([Diagnostic("/name", message)])


register_kind(KIND, _validate)


def _not_configured(name: str) -> AIConfigurationError:
    return AIConfigurationError(
        f"no model configured under the name {name!r} in this run's folder: an AI step only"
        " calls a model an administrator defined in the flow's own folder. Create one there"
        f" with PUT /api/v1/models/{name} (or `amos model push FILE.json --folder FOLDER`)"
        f" giving name {name!r}, base_url (an OpenAI-compatible endpoint), model and revision"
    )


def resolve_model(name: str, catalog: Catalog, *, folder: str) -> ModelDefinition:
    """The definition named ``name`` in ``folder``, or AIConfigurationError saying what to do.

    A run looks only in its own folder: a model of another folder is another folder's to
    spend, and the answer is the same as for a model that does not exist.
    """
    try:
        entry = catalog.get(KIND, name, folder=folder)
    except NotFoundError:
        raise _not_configured(name) from None
    try:
        return ModelDefinition.model_validate(entry.document)
    except ValidationError as exc:
        raise AIConfigurationError(
            f"model {name!r} in the catalog is not a valid definition: {exc.errors()[0]['msg']}"
        ) from None
