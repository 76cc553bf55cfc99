"""The enterprise IdP whose JWT access tokens the API accepts: ``AMOS_OIDC_*``."""

from __future__ import annotations

from pathlib import Path
from typing import Final, Self
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The asymmetric signature algorithms a token may use (RFC 7518, RFC 8037).
SIGNING_ALGORITHMS: Final = frozenset(
    {
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES384",
        "ES512",
        "ES256K",
        "EdDSA",
    }
)


def _default_home() -> Path:
    return Path.home() / ".amos"


def check_idp_url(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise ValueError(f"{name} must be an absolute http(s) URL, got {value!r}")
    return value


class OidcSettings(BaseSettings):
    """The enterprise IdP whose JWT access tokens the API accepts, from ``AMOS_OIDC_*``.

    OIDC is off while ``issuer`` is unset. ``home`` is read from ``AMOS_HOME``.
    """

    model_config = SettingsConfigDict(
        env_prefix="AMOS_OIDC_", extra="ignore", validate_by_name=True, validate_by_alias=True
    )

    home: Path = Field(
        default_factory=_default_home,
        validation_alias=AliasChoices("AMOS_HOME"),
        description="Data directory (AMOS_HOME).",
    )
    issuer: str | None = Field(
        default=None, description="The IdP's issuer URL, compared exactly; unset: OIDC off."
    )
    audience: str | None = Field(
        default=None, description="The audience our tokens must name; required with an issuer."
    )
    jwks_uri: str | None = Field(
        default=None,
        description="JWKS URL; unset: discovered once from the issuer's OpenID configuration.",
    )
    algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "ES256", "EdDSA"],
        description="Accepted signature algorithms; asymmetric only (never none or HS*).",
    )
    groups_claim: str = Field(default="groups", description="Claim holding the group names.")
    username_claim: str = Field(
        default="preferred_username", description="Claim holding the username; falls back to sub."
    )
    leeway_seconds: int = Field(
        default=30, ge=0, le=600, description="Clock skew tolerated on exp, nbf and iat."
    )
    refresh_seconds: float = Field(
        default=3600.0, gt=0, description="How often the JWKS is fetched again."
    )
    min_refetch_seconds: float = Field(
        default=30.0,
        ge=0,
        description="Least time between two fetches triggered by tokens with unknown kids.",
    )
    cache_path: Path | None = Field(
        default=None,
        description="File of the last good JWKS; unset: <home>/identity/jwks.json.",
    )
    timeout_seconds: float = Field(default=5.0, gt=0, description="Timeout of one fetch.")

    @field_validator("algorithms")
    @classmethod
    def _only_asymmetric(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one signature algorithm is required")
        for alg in value:
            if alg.strip().lower() == "none" or alg.strip().upper().startswith("HS"):
                raise ValueError(
                    f"algorithm {alg!r} is refused: unsigned and HMAC (HS*) tokens are never "
                    "accepted; use the IdP's asymmetric algorithm (RS*, PS*, ES*, EdDSA)"
                )
            if alg not in SIGNING_ALGORITHMS:
                known = ", ".join(sorted(SIGNING_ALGORITHMS))
                raise ValueError(f"unknown algorithm {alg!r}; choose from {known}")
        return list(dict.fromkeys(value))

    @field_validator("issuer")
    @classmethod
    def _issuer_is_url(cls, value: str | None) -> str | None:
        return check_idp_url(value, "issuer")

    @field_validator("jwks_uri")
    @classmethod
    def _jwks_uri_is_url(cls, value: str | None) -> str | None:
        return check_idp_url(value, "jwks_uri")

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.issuer is not None and not self.audience:
            raise ValueError("AMOS_OIDC_AUDIENCE is required when AMOS_OIDC_ISSUER is set")
        if self.cache_path is None:
            self.cache_path = self.home / "identity" / "jwks.json"
        return self

    @property
    def enabled(self) -> bool:
        """Whether bearer JWTs are accepted at all."""
        return self.issuer is not None

    @property
    def cache_file(self) -> Path:
        """The JWKS cache file actually used."""
        return self.cache_path or self.home / "identity" / "jwks.json"

    @property
    def discovery_url(self) -> str | None:
        """Where the IdP publishes its OpenID configuration."""
        if self.issuer is None:
            return None
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"
