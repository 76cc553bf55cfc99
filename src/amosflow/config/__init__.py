"""Typed settings, one class per area."""

from amosflow.config.settings import EngineSettings

__all__ = ["EngineSettings"]
