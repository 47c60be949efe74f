"""The platform's files are its own: directories 0700, files 0600, whatever the umask.

The data directory holds keys, the store, the bus, the vault and connectors' outboxes, all of
them personal data or secrets; another user of the machine must not read them.
"""

from __future__ import annotations

import os
from pathlib import Path


def private_dir(path: Path, *, tighten: bool = False) -> None:
    """Create ``path`` and its missing parents readable by their owner only.

    With ``tighten``, an existing ``path`` owned by this user is set to 0700 too (the data
    directory is the platform's own); a directory someone else owns is left alone.
    """
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    for created in missing:
        created.chmod(0o700)  # mkdir's mode is masked by the umask
    if tighten and not missing and path.stat().st_uid == os.geteuid():
        path.chmod(0o700)


def private_file(path: Path) -> None:
    """Create ``path`` (empty) with 0600, or tighten our own existing file to 0600.

    For a SQLite database, call it before SQLite opens the file: SQLite gives its WAL and
    shared-memory files the database file's mode, so 0600 here covers them too.
    """
    private_dir(path.parent)
    try:
        # Only ever open a file that does not exist yet: closing any descriptor of an open
        # SQLite database drops every POSIX lock this process holds on it (SQLite then reports
        # "disk I/O error" and may corrupt the file).
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        if path.stat().st_uid == os.geteuid():
            path.chmod(0o600)
