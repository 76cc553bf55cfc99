"""Dependencies of the routes, as `Annotated` aliases; no globals in routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from amosflow.services.runs import ControlPlane
from amosflow.services.watcher import RunWatcher


def _control_plane(request: Request) -> ControlPlane:
    cp: ControlPlane = request.app.state.control_plane
    return cp


def _watcher(request: Request) -> RunWatcher:
    watcher: RunWatcher = request.app.state.watcher
    return watcher


ControlPlaneDep = Annotated[ControlPlane, Depends(_control_plane)]
WatcherDep = Annotated[RunWatcher, Depends(_watcher)]
