"""Folders: the namespaces every object, run and role binding lives in."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from amosflow.errors import ConflictError, Diagnostic, ValidationFailedError
from amosflow.identity._clock import utc_now
from amosflow.store import FolderRow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

#: What a folder name may look like: lower case, safe in a URL path segment and a file name.
FOLDER_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")


def create_folder(session: Session, name: str, description: str = "") -> FolderRow:
    """Create a folder; ConflictError when it exists, ValidationFailedError for a bad name."""
    problems: list[Diagnostic] = []
    if FOLDER_NAME.fullmatch(name) is None:
        problems.append(
            Diagnostic(
                "/name",
                "a folder name is 1 to 100 lower-case letters, digits or . _ - and starts "
                "with a letter or digit",
            )
        )
    if len(description) > 500:  # noqa: PLR2004 - the column's length
        problems.append(Diagnostic("/description", "at most 500 characters"))
    if problems:
        raise ValidationFailedError(problems)
    if folder_exists(session, name):
        raise ConflictError(f"folder {name!r} exists already")
    row = FolderRow(name=name, description=description, created_at=utc_now(None))
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError as exc:
        raise ConflictError(f"folder {name!r} exists already") from exc
    return row


def list_folders(session: Session) -> list[FolderRow]:
    """Every folder, by name."""
    return list(session.scalars(select(FolderRow).order_by(FolderRow.name)))


def folder_exists(session: Session, name: str) -> bool:
    """Whether a folder called ``name`` exists."""
    return session.get(FolderRow, name) is not None
