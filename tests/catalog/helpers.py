"""Documents and repository probes shared by the catalog tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dulwich.repo import Repo

AUTHOR = "Ada Lovelace <ada@example.com>"


def flow(name: str, value: int = 1, **extra: Any) -> dict[str, Any]:
    """A minimal valid flow whose single `set` step stores ``value``."""
    return {
        "dsl": "amos.flow/v1",
        "name": name,
        "steps": [{"id": "keep", "type": "set", "values": {"x": value}}],
        **extra,
    }


def bundle(
    name: str, layer: str, values: dict[str, Any], environment: str | None = None
) -> dict[str, Any]:
    """A config bundle document."""
    document: dict[str, Any] = {"name": name, "layer": layer, "values": values}
    if environment is not None:
        document["environment"] = environment
    return document


def commits(path: Path) -> list[Any]:
    """Every commit reachable from HEAD, newest first, read straight from the repository."""
    with Repo(str(path)) as repo:
        return [entry.commit for entry in repo.get_walker(include=[repo.head()])]


def tracked_files(path: Path) -> set[str]:
    """Every file in the HEAD tree."""
    with Repo(str(path)) as repo:
        tree = repo[repo[repo.head()].tree]
        return {item.path.decode() for item in repo.object_store.iter_tree_contents(tree.id)}
