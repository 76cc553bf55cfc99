"""The file actions: ``file.read``, ``file.write`` and ``file.list``, inside named roots only.

A root is a directory the operator of the worker or runner names in ``AMOS_FILE_ROOTS``
(``name=/absolute/path,…``); a flow names the root and a path relative to it, never a host
path. A literal path that would leave its root is refused when the flow is validated; every
path (literal or computed) is checked again where the action runs (decision 0027).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from amosflow.dsl._models import EXPRESSION_MARK, RENDERED
from amosflow.dsl.actions._registry import ActionSpec, Expr, WithModel, register

ROOT_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"
MAX_PATH_CHARS = 4096
INLINE_READ_BYTES = 16 * 1024 * 1024
MAX_READ_BYTES = 256 * 1024 * 1024
MAX_WRITE_CHARS = 16 * 1024 * 1024 * 4 // 3 + 4  # 16 MiB once base64 is decoded
MAX_LIST_ENTRIES = 100_000
DEFAULT_LIST_ENTRIES = 10_000
DEFAULT_FILE_MODE = 0o600
FILE_MODE_PATTERN = r"^0?[0-7]{3}$"

RootName = Annotated[str, StringConstraints(pattern=ROOT_NAME_PATTERN)]
Encoding = Literal["utf-8", "base64"]
MaxEntries = Annotated[int, Field(ge=1, le=MAX_LIST_ENTRIES)]


def _check_mode(value: str) -> str:
    if not re.fullmatch(FILE_MODE_PATTERN, value):
        raise ValueError(f"{value[:20]!r} is not octal permission bits such as '0600' or '0640'")
    mode = int(value, 8)
    if mode & 0o002:
        raise ValueError(f"mode {value} lets every user write the file; drop the last 2")
    if not mode & 0o400:
        raise ValueError(f"mode {value} does not let the owner read the file")
    return value


FileMode = Annotated[
    str,
    AfterValidator(_check_mode),
    WithJsonSchema({"type": "string", "pattern": FILE_MODE_PATTERN, "examples": ["0600", "0640"]}),
]


def file_mode(value: str | None) -> int:
    """The permission bits ``file.write`` gives a file: ``mode`` as octal, else 0600."""
    return DEFAULT_FILE_MODE if value is None else int(value, 8)


def path_problem(path: str) -> str | None:
    """Why a path relative to a root is refused, or None when it is acceptable."""
    if "\x00" in path:
        return "contains a NUL byte"
    if path.startswith("/"):
        return "is absolute; give a path relative to the root"
    if ".." in path.split("/"):
        return "has a '..' component"
    if len(path) > MAX_PATH_CHARS:
        return f"is longer than {MAX_PATH_CHARS} characters"
    return None


def _literal(value: str, info: ValidationInfo) -> bool:
    """A value written as is (not rendered, no expression): checked at validation time."""
    rendered = isinstance(info.context, dict) and bool(info.context.get(RENDERED))
    return not rendered and EXPRESSION_MARK not in value


class _FileWith(WithModel):
    root: Expr[RootName]
    path: str

    @field_validator("path")
    @classmethod
    def _path_stays_inside(cls, value: str, info: ValidationInfo) -> str:
        # At run time the activity refuses the path itself (FileAccessDenied), so a computed
        # path that escapes fails as a refusal, not as a validation error.
        if _literal(value, info):
            problem = path_problem(value)
            if problem is not None:
                raise ValueError(f"path {value!r} {problem}")
        return value


class FileReadWith(_FileWith):
    """``with`` of ``file.read``: a file of a root, returned as UTF-8 text or base64.

    Output: ``{"content", "encoding", "size", "sha256"}``. A file larger than 16 MiB is
    stored in the artifact store and ``content`` is its reference
    (``{"$ref": "artifact://sha256/…", "sha256", "size"}``, the raw bytes) with
    ``encoding: "artifact"``; files over 256 MiB are refused (``FileTooLarge``). A file that
    is not UTF-8 fails with ``FileNotText`` unless ``encoding`` is ``base64``.
    """

    path: str = Field(min_length=1)
    encoding: Expr[Encoding] = "utf-8"


class FileWriteWith(_FileWith):
    """``with`` of ``file.write``: write ``content`` to a file of a root, atomically.

    The bytes go to a temporary file in the same directory, are synced, and are moved into
    place with one rename, so a reader sees the old file or the new one, never half of it.
    ``overwrite: false`` (the default) refuses an existing file, unless it already holds
    exactly these bytes (a retried write). ``parents: true`` creates missing directories.
    ``mode`` (octal text such as ``"0640"``; the owner must read it, other users may not
    write it) sets the file's permission bits, exactly, whatever the process umask; without
    it the file is ``0600``, whether it is new or replaces another. Directories it creates
    are ``0700``, plus read and search for the group or others where ``mode`` lets them read.
    Output: ``{"root", "path", "size", "sha256", "created"}``.
    """

    path: str = Field(min_length=1)
    content: str = Field(max_length=MAX_WRITE_CHARS)
    encoding: Expr[Encoding] = "utf-8"
    overwrite: Expr[bool] = False
    parents: Expr[bool] = False
    mode: Expr[FileMode] | None = None


class FileListWith(_FileWith):
    """``with`` of ``file.list``: the entries of a directory of a root (default: the root).

    ``pattern`` is a glob (``*.csv``, ``report-??.txt``) matched against each entry's name,
    as ``find -name`` does; ``recursive`` descends into subdirectories (never through a
    symbolic link). Output: ``{"entries": [{"name", "path", "type", "size", "modified"}],
    "truncated"}``, ``name`` relative to the listed directory, ``path`` relative to the root,
    ``type`` one of ``file``, ``dir``, ``symlink``, ``other``, ``modified`` an RFC 3339 UTC
    time; at most ``max_entries`` entries, in path order.
    """

    path: str = ""
    pattern: str | None = Field(default=None, min_length=1, max_length=1024)
    recursive: Expr[bool] = False
    max_entries: Expr[MaxEntries] = DEFAULT_LIST_ENTRIES

    @field_validator("pattern")
    @classmethod
    def _pattern_is_a_name_glob(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and _literal(value, info) and "/" in value:
            raise ValueError("pattern is matched against entry names and cannot contain '/'")
        return value


_ROOTS = "inside one of the runner's named roots (AMOS_FILE_ROOTS) only"

register(
    ActionSpec(
        name="file.read",
        capability="file",
        with_model=FileReadWith,
        description=f"Reads a file {_ROOTS}; returns content, encoding, size and sha256.",
    )
)
register(
    ActionSpec(
        name="file.write",
        capability="file",
        with_model=FileWriteWith,
        description=f"Writes a file atomically {_ROOTS}; returns path, size and sha256.",
    )
)
register(
    ActionSpec(
        name="file.list",
        capability="file",
        with_model=FileListWith,
        description=f"Lists a directory {_ROOTS}, optionally recursive and filtered by a glob.",
    )
)
