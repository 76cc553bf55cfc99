"""A catalog of the old layout (`<kind>/<name>.json`) moves into its folders, once."""

from __future__ import annotations

from pathlib import Path

import pytest
from dulwich.repo import Repo

from amosflow.catalog import Catalog, _git
from amosflow.catalog._kinds import render_document
from amosflow.errors import NotFoundError
from tests.catalog.helpers import AUTHOR, bundle, flow


def legacy(path: Path) -> Catalog:
    """A catalog whose objects were committed at the paths an older release used."""
    catalog = Catalog(path)
    with Repo(str(path)) as repo:
        for file, document in (
            ("flows/payroll.json", flow("payroll")),
            ("flows/hello.json", flow("hello")),
            ("configs/base.json", bundle("base", "base", {"a": 1})),
        ):
            head = _git.head_id(repo)
            assert head is not None
            data = render_document(document).encode()
            _git.commit_change(repo, head, file.encode(), data, who=b"old <o@x>", message="old")
    return catalog


def test_old_objects_move_into_the_folders_the_store_recorded(tmp_path: Path) -> None:
    """Each object lands in its recorded folder (`default` when none); a second pass is a no-op."""
    catalog = legacy(tmp_path / "c")
    placed = {("flows", "payroll"): "hr"}
    moved = catalog.adopt_legacy(lambda kind, name: placed.get((kind, name), "default"))
    assert sorted(moved) == [
        ("configs", "default", "base"),
        ("flows", "default", "hello"),
        ("flows", "hr", "payroll"),
    ]
    assert catalog.get("flows", "payroll", folder="hr").document == flow("payroll")
    with pytest.raises(NotFoundError):
        catalog.get("flows", "payroll", folder="default")
    assert catalog.folders_holding("flows", "payroll") == ["hr"]
    assert not (tmp_path / "c" / "flows" / "payroll.json").exists()
    assert (tmp_path / "c" / "flows" / "hr" / "payroll.json").exists()
    assert catalog.adopt_legacy(lambda _kind, _name: "default") == []


def test_a_moved_object_can_be_saved_and_listed_in_its_folder(tmp_path: Path) -> None:
    """After the move the object behaves like any other of its folder."""
    catalog = legacy(tmp_path / "c")
    catalog.adopt_legacy(lambda kind, _name: "hr" if kind == "flows" else "default")
    catalog.save("flows", "payroll", flow("payroll", 2), folder="hr", author=AUTHOR, message="v2")
    assert [(e.folder, e.name) for e in catalog.list("flows")] == [
        ("hr", "hello"),
        ("hr", "payroll"),
    ]
    assert [e.name for e in catalog.list("flows", "default")] == []
