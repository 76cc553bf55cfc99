"""The Git catalog: saving, reading, versions, history, diffs and deletion on a real repository."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from dulwich import porcelain
from dulwich.repo import Repo

from amosflow.catalog import Catalog, _kinds, register_kind, registered_kinds
from amosflow.dsl import content_hash
from amosflow.errors import Diagnostic, NotFoundError, ValidationFailedError
from tests.catalog.helpers import AUTHOR, commits, flow, tracked_files


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(tmp_path / "catalog")


def test_opening_a_missing_path_creates_a_repository_with_an_empty_commit_on_main(
    tmp_path: Path,
) -> None:
    """A new catalog is a Git repository whose `main` branch starts with one empty commit."""
    Catalog(tmp_path / "new")
    with Repo(str(tmp_path / "new")) as repo:
        assert repo.refs.follow(b"HEAD")[0][-1] == b"refs/heads/main"
    assert len(commits(tmp_path / "new")) == 1
    assert tracked_files(tmp_path / "new") == set()


def test_reopening_an_existing_catalog_adds_no_commit(tmp_path: Path) -> None:
    """Opening the same path twice keeps the history as it is."""
    Catalog(tmp_path / "c").save(
        "flows", "hello", flow("hello"), author=AUTHOR, message="add", folder="default"
    )
    Catalog(tmp_path / "c")
    assert len(commits(tmp_path / "c")) == 2


def test_save_then_get_returns_the_document_and_its_version(catalog: Catalog) -> None:
    """A saved flow reads back equal, with the commit and content hash of the save."""
    version = catalog.save(
        "flows", "hello", flow("hello"), author=AUTHOR, message="Add hello", folder="default"
    )
    entry = catalog.get("flows", "hello", folder="default")
    assert entry.document == flow("hello")
    assert entry.version == version
    assert version.content_hash == content_hash(flow("hello"))
    assert version.commit == commits(catalog.path)[0].id.decode()


def test_the_file_is_pretty_printed_with_sorted_keys_and_a_final_newline(catalog: Catalog) -> None:
    """The stored file is sorted-key, 2-space JSON ending in a newline, in flows/<name>.json."""
    catalog.save("flows", "hello", flow("hello"), author=AUTHOR, message="add", folder="default")
    text = (catalog.path / "flows" / "default" / "hello.json").read_text()
    assert text == json.dumps(flow("hello"), sort_keys=True, indent=2) + "\n"
    assert tracked_files(catalog.path) == {"flows/default/hello.json"}


def test_the_commit_records_author_committer_and_message(catalog: Catalog) -> None:
    """The commit carries the author as author and committer, and the message verbatim."""
    version = catalog.save(
        "flows", "hello", flow("hello"), author=AUTHOR, message="Add hello", folder="default"
    )
    commit = commits(catalog.path)[0]
    assert commit.author == commit.committer == AUTHOR.encode()
    assert commit.message == b"Add hello\n"
    assert (version.author, version.message) == (AUTHOR, "Add hello")


def test_saving_identical_content_returns_the_current_version_without_a_commit(
    catalog: Catalog,
) -> None:
    """A second save of the same document is a no-op that returns the first version."""
    first = catalog.save(
        "flows", "hello", flow("hello"), author=AUTHOR, message="add", folder="default"
    )
    again = catalog.save(
        "flows", "hello", flow("hello"), author="Bob <b@x>", message="again", folder="default"
    )
    assert again == first
    assert len(commits(catalog.path)) == 2


def test_a_version_pins_content_after_an_update(catalog: Catalog) -> None:
    """Getting an old commit, or an old commit's prefix, returns the old document."""
    old = catalog.save(
        "flows", "hello", flow("hello", 1), author=AUTHOR, message="v1", folder="default"
    )
    new = catalog.save(
        "flows", "hello", flow("hello", 2), author=AUTHOR, message="v2", folder="default"
    )
    assert catalog.get("flows", "hello", folder="default").document == flow("hello", 2)
    assert catalog.get("flows", "hello", old.commit, folder="default").document == flow("hello", 1)
    assert catalog.get("flows", "hello", old.commit[:7], folder="default").version == old
    assert catalog.get("flows", "hello", new.commit, folder="default").version == new


def test_a_content_hash_finds_the_version_with_that_content(catalog: Catalog) -> None:
    """A `sha256:` version returns the commit whose document has that hash."""
    old = catalog.save(
        "flows", "hello", flow("hello", 1), author=AUTHOR, message="v1", folder="default"
    )
    catalog.save("flows", "hello", flow("hello", 2), author=AUTHOR, message="v2", folder="default")
    entry = catalog.get("flows", "hello", old.content_hash, folder="default")
    assert (entry.document, entry.version) == (flow("hello", 1), old)


def test_a_commit_of_another_object_is_not_a_version_of_this_one(catalog: Catalog) -> None:
    """Only commits that changed an object are its versions: another's commit is not found."""
    catalog.save("flows", "hello", flow("hello"), author=AUTHOR, message="a", folder="default")
    other = catalog.save(
        "flows", "other", flow("other"), author=AUTHOR, message="b", folder="secret"
    )
    with pytest.raises(NotFoundError) as raised:
        catalog.get("flows", "hello", other.commit, folder="default")
    with pytest.raises(NotFoundError) as unknown:
        catalog.get("flows", "hello", "f" * 40, folder="default")
    assert str(raised.value).replace(other.commit, "X") == str(unknown.value).replace("f" * 40, "X")


@pytest.mark.parametrize("version", [None, "0000000", "sha256:" + "0" * 64, "zz", "abc"])
def test_unknown_objects_and_versions_raise_not_found_naming_kind_and_name(
    catalog: Catalog, version: str | None
) -> None:
    """A missing object or version is NotFoundError whose message names the kind and name."""
    if version is not None:
        catalog.save(
            "flows", "ghost", flow("ghost"), author=AUTHOR, message="add", folder="default"
        )
        name = "ghost"
    else:
        name = "nobody"
    with pytest.raises(NotFoundError) as caught:
        catalog.get("flows", name, version, folder="default")
    if version is None or version.startswith("sha256:"):
        assert "flows" in str(caught.value)
        assert name in str(caught.value)


def test_an_unknown_kind_is_not_found(catalog: Catalog) -> None:
    """Kinds are a closed set; an unregistered one is NotFoundError."""
    with pytest.raises(NotFoundError, match="unknown catalog kind"):
        catalog.list("widgets")


def test_list_returns_the_latest_of_each_object_sorted_by_name(catalog: Catalog) -> None:
    """list gives one entry per object, by name, each at its own last change."""
    b1 = catalog.save(
        "flows", "beta", flow("beta", 1), author=AUTHOR, message="b1", folder="default"
    )
    catalog.save("flows", "alpha", flow("alpha", 1), author=AUTHOR, message="a1", folder="default")
    a2 = catalog.save(
        "flows", "alpha", flow("alpha", 2), author=AUTHOR, message="a2", folder="default"
    )
    config = {"name": "base", "layer": "base", "values": {}}
    catalog.save("configs", "base", config, author=AUTHOR, message="another kind", folder="default")
    entries = catalog.list("flows")
    assert [(e.name, e.document, e.version) for e in entries] == [
        ("alpha", flow("alpha", 2), a2),
        ("beta", flow("beta", 1), b1),
    ]
    assert [e.name for e in catalog.list("configs")] == ["base"]
    assert catalog.list("triggers") == []


def test_history_lists_only_the_commits_that_changed_the_object_newest_first(
    catalog: Catalog,
) -> None:
    """history skips commits of other objects and orders versions newest first."""
    v1 = catalog.save(
        "flows", "hello", flow("hello", 1), author=AUTHOR, message="v1", folder="default"
    )
    catalog.save(
        "flows", "other", flow("other"), author=AUTHOR, message="unrelated", folder="default"
    )
    v2 = catalog.save(
        "flows", "hello", flow("hello", 2), author=AUTHOR, message="v2", folder="default"
    )
    assert catalog.history("flows", "hello", folder="default") == [v2, v1]


def test_diff_is_a_unified_diff_of_the_two_json_texts(catalog: Catalog) -> None:
    """diff shows the changed value as a removed and an added line."""
    v1 = catalog.save(
        "flows", "hello", flow("hello", 1), author=AUTHOR, message="v1", folder="default"
    )
    v2 = catalog.save(
        "flows", "hello", flow("hello", 2), author=AUTHOR, message="v2", folder="default"
    )
    text = catalog.diff("flows", "hello", v1.commit, v2.commit, folder="default")
    assert text.startswith(
        f"--- flows/default/hello.json@{v1.commit[:12]}\n"
        f"+++ flows/default/hello.json@{v2.commit[:12]}\n"
    )
    assert '-        "x": 1\n' in text
    assert '+        "x": 2\n' in text
    assert catalog.diff("flows", "hello", v1.commit, folder="default") == text
    assert catalog.diff("flows", "hello", v2.commit, v2.content_hash, folder="default") == ""


def test_delete_commits_the_removal_and_keeps_the_history(catalog: Catalog) -> None:
    """After delete, get is NotFoundError, the file is gone, and history shows the deletion."""
    saved = catalog.save(
        "flows", "hello", flow("hello"), author=AUTHOR, message="add", folder="default"
    )
    removed = catalog.delete(
        "flows", "hello", author=AUTHOR, message="Remove hello", folder="default"
    )
    with pytest.raises(NotFoundError, match="hello"):
        catalog.get("flows", "hello", folder="default")
    assert catalog.history("flows", "hello", folder="default") == [removed, saved]
    assert removed.deleted
    assert removed.message == "Remove hello"
    assert not (catalog.path / "flows" / "default" / "hello.json").exists()
    assert tracked_files(catalog.path) == set()
    assert catalog.get("flows", "hello", saved.commit, folder="default").document == flow("hello")
    assert catalog.list("flows") == []


def test_deleting_a_missing_object_is_not_found_and_commits_nothing(catalog: Catalog) -> None:
    """delete of an unknown name raises NotFoundError and leaves the history alone."""
    with pytest.raises(NotFoundError):
        catalog.delete("flows", "nobody", author=AUTHOR, message="rm", folder="default")
    assert len(commits(catalog.path)) == 1


@pytest.mark.parametrize(
    ("name", "document", "pointer"),
    [
        ("hello", {"dsl": "amos.flow/v1", "name": "hello", "steps": []}, "/steps"),
        ("hello", flow("other"), "/name"),
        ("hello", flow("hello", bogus=True), "/bogus"),
        ("Bad Name", flow("hello"), ""),
    ],
)
def test_an_invalid_flow_leaves_no_commit_and_no_file(
    catalog: Catalog, name: str, document: dict[str, object], pointer: str
) -> None:
    """A flow that fails validation raises with a pointer, adds no commit and writes no file."""
    with pytest.raises(ValidationFailedError) as caught:
        catalog.save("flows", name, document, author=AUTHOR, message="bad", folder="default")
    assert pointer in [d.pointer for d in caught.value.diagnostics]
    assert len(commits(catalog.path)) == 1
    assert sorted(p.name for p in catalog.path.iterdir()) == [".git"]


def test_a_document_that_is_not_json_is_refused(catalog: Catalog) -> None:
    """Values JSON cannot carry (NaN) are a validation error, not a commit."""
    with pytest.raises(ValidationFailedError):
        catalog.save(
            "triggers", "t", {"x": float("nan")}, author=AUTHOR, message="bad", folder="default"
        )
    assert len(commits(catalog.path)) == 1


def test_concurrent_saves_from_two_threads_both_land_in_a_linear_history(catalog: Catalog) -> None:
    """Two threads saving at once produce two commits, each the parent of the next."""
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def save(name: str) -> None:
        barrier.wait()
        try:
            catalog.save("flows", name, flow(name), author=AUTHOR, message=name, folder="default")
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(name,)) for name in ("left", "right")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    history = commits(catalog.path)
    assert len(history) == 3
    assert [len(c.parents) for c in history] == [1, 1, 0]
    assert history[0].parents == [history[1].id]
    assert {e.name for e in catalog.list("flows")} == {"left", "right"}


def test_two_catalog_objects_on_one_path_serialise_their_writes(tmp_path: Path) -> None:
    """Saves through two Catalog instances (as two processes would) both land."""
    first, second = Catalog(tmp_path / "c"), Catalog(tmp_path / "c")
    first.save("flows", "one", flow("one"), author=AUTHOR, message="one", folder="default")
    second.save("flows", "two", flow("two"), author=AUTHOR, message="two", folder="default")
    assert [e.name for e in first.list("flows")] == ["one", "two"]
    assert (tmp_path / "c" / ".git" / "amos.lock").exists()


def test_the_latest_version_follows_commits_made_through_another_catalog(tmp_path: Path) -> None:
    """Reads keep up with saves and deletes made elsewhere (another process's catalog object).

    The latest version is remembered per head commit, so this proves a new head is noticed:
    an update, a deletion and an object that was missing at the first read.
    """
    reader, writer = Catalog(tmp_path / "c"), Catalog(tmp_path / "c")
    writer.save("flows", "one", flow("one"), author=AUTHOR, message="one", folder="default")
    first = reader.get("flows", "one", folder="default")
    with pytest.raises(NotFoundError):
        reader.get("flows", "two", folder="default")
    changed = {**flow("one"), "description": "changed"}
    updated = writer.save("flows", "one", changed, author=AUTHOR, message="edit", folder="default")
    writer.save("flows", "two", flow("two"), author=AUTHOR, message="two", folder="default")
    again = reader.get("flows", "one", folder="default")
    assert again.document == changed
    assert again.version == updated != first.version
    assert reader.get("flows", "two", folder="default").document == flow("two")
    writer.delete("flows", "two", folder="default", author=AUTHOR, message="gone")
    with pytest.raises(NotFoundError):
        reader.get("flows", "two", folder="default")


def test_a_caller_changing_its_document_does_not_change_the_next_read(catalog: Catalog) -> None:
    """Each read hands out its own copy of the document."""
    catalog.save("flows", "hello", flow("hello"), author=AUTHOR, message="add", folder="default")
    catalog.get("flows", "hello", folder="default").document["steps"].clear()
    assert catalog.get("flows", "hello", folder="default").document == flow("hello")


def test_the_working_copy_stays_clean_after_saves_and_deletes(catalog: Catalog) -> None:
    """Every commit is mirrored into the working tree and index, so git status is clean."""
    catalog.save("flows", "hello", flow("hello"), author=AUTHOR, message="add", folder="default")
    catalog.save("flows", "bye", flow("bye"), author=AUTHOR, message="add", folder="default")
    catalog.delete("flows", "bye", author=AUTHOR, message="rm", folder="default")
    status = porcelain.status(str(catalog.path))
    assert status.staged == {"add": [], "delete": [], "modify": []}
    assert status.unstaged == []
    assert status.untracked == []


def test_a_plugged_in_validator_governs_its_kind(catalog: Catalog) -> None:
    """register_kind replaces a kind's validator, as the triggers module will do."""

    def needs_cron(name: str, document: dict[str, object]) -> None:
        if "cron" not in document:
            raise ValidationFailedError([Diagnostic("/cron", f"{name} needs a schedule")])

    previous = _kinds._validators["triggers"]  # the triggers service may have plugged in its own
    register_kind("triggers", needs_cron)
    try:
        with pytest.raises(ValidationFailedError, match="/cron"):
            catalog.save(
                "triggers", "nightly", {"at": "2am"}, author=AUTHOR, message="bad", folder="default"
            )
        catalog.save(
            "triggers",
            "nightly",
            {"cron": "0 2 * * *"},
            author=AUTHOR,
            message="ok",
            folder="default",
        )
    finally:
        register_kind("triggers", previous)
    assert "triggers" in registered_kinds()
    assert catalog.get("triggers", "nightly", folder="default").document == {"cron": "0 2 * * *"}


def test_a_bare_author_name_is_accepted(catalog: Catalog) -> None:
    """An author without an email still commits, and reads back as given."""
    version = catalog.save(
        "flows", "hello", flow("hello"), author="ci-bot", message="add", folder="default"
    )
    assert version.author == "ci-bot"


def test_saves_from_two_processes_at_once_all_land(tmp_path: Path) -> None:
    """Two processes saving concurrently through the lock file lose no commit."""
    Catalog(tmp_path / "c")
    script = (
        "import sys; from pathlib import Path; from amosflow.catalog import Catalog; "
        "from tests.catalog.helpers import flow; c = Catalog(Path(sys.argv[1])); "
        "[c.save('flows', f'{sys.argv[2]}-{i}', flow(f'{sys.argv[2]}-{i}'), author='p <p@x>', "
        "message=str(i), folder='default') for i in range(5)]"
    )
    root = Path(__file__).parents[2]
    workers = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "c"), tag], cwd=root)
        for tag in ("left", "right")
    ]
    assert [worker.wait(timeout=120) for worker in workers] == [0, 0]
    history = commits(tmp_path / "c")
    assert len(history) == 11
    assert all(len(c.parents) == 1 for c in history[:-1])
    assert len(Catalog(tmp_path / "c").list("flows")) == 10
