"""Dependencies of the routes, as `Annotated` aliases; no globals in routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from amosflow.errors import EngineError
from amosflow.identity import Authenticator, IdentitySettings
from amosflow.services import ControlPlane


def _control_plane(request: Request) -> ControlPlane:
    cp: ControlPlane | None = getattr(request.app.state, "control_plane", None)
    if cp is None:  # the API is up, Temporal not yet (decision 0065)
        raise EngineError("the workflow engine is not reachable yet; try again shortly")
    return cp


def _authenticator(request: Request) -> Authenticator:
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator


def _identity_settings(request: Request) -> IdentitySettings:
    settings: IdentitySettings = request.app.state.authenticator.settings
    return settings


ControlPlaneDep = Annotated[ControlPlane, Depends(_control_plane)]
AuthenticatorDep = Annotated[Authenticator, Depends(_authenticator)]
IdentitySettingsDep = Annotated[IdentitySettings, Depends(_identity_settings)]
