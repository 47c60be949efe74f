"""What the tests and benchmarks fetch from Maven Central (Kafka's jars, Keycloak), kept once
in a cache outside the work tree: ``$<ENV>``, else ``~/.cache/tsunagu/<name>``.

``fetched`` is the one place that makes a cache entry: locked, because several processes (pytest,
a benchmark, ``make kafka``) may ask at once and one of them fetches; atomic, because an entry
is renamed into place only once complete, so an interrupted fetch is never mistaken for one.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

#: Written last into a complete entry.
COMPLETE = ".complete"


def cache_dir(env: str, name: str) -> Path:
    """Where ``name`` lives: the directory ``$env`` names, else ``~/.cache/tsunagu/<name>``."""
    configured = os.environ.get(env)
    if configured:
        return Path(configured)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "tsunagu" / name


def fetched(cache: Path, fetch: Callable[[Path], Path], version: str) -> Path:
    """``cache``, filled on first use by ``fetch(staging)``, which fetches into the empty
    ``staging`` directory and returns the directory to keep (``staging`` or one inside it)."""
    if (cache / COMPLETE).exists():
        return cache
    cache.parent.mkdir(parents=True, exist_ok=True)
    with (cache.parent / f".{cache.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (cache / COMPLETE).exists():
            return cache
        staging = Path(tempfile.mkdtemp(prefix=f".{cache.name}-", dir=cache.parent))
        try:
            kept = fetch(staging)
            (kept / COMPLETE).write_text(version + "\n")
            shutil.rmtree(cache, ignore_errors=True)
            kept.rename(cache)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return cache
