"""Files that hold key material: made 0600 in a 0700 directory, refused when others can read."""

from __future__ import annotations

import os
import secrets
import stat
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

PRIVATE_MODE = 0o600


def exposure(path: Path) -> str | None:
    """Say why ``path`` is too open for key material, or None when only its owner can read it."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return f"mode {mode:04o} lets other users read it; run `chmod 600 {path}`"
    return None


def write_private(path: Path, content: bytes, *, exclusive: bool) -> None:
    """Write ``content`` through a 0600 temporary file; ``exclusive`` keeps an existing file.

    With ``exclusive``, link() fails when the name exists, so two first starts racing each
    other keep one key, never two.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    try:
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if exclusive:
            os.link(temporary, path)
        else:
            temporary.replace(path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink(missing_ok=True)
