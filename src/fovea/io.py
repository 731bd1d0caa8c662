"""Small file helpers: outputs are written to a temporary name and renamed when complete."""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; it is renamed over ``path`` on success.

    Readers see the old file or the new one, never a partial one; on an exception the temporary
    file is removed and ``path`` left as it was. The temporary name keeps ``path``'s suffix, so
    writers that pick a format from it (matplotlib) still do, and holds the process and thread,
    so concurrent writers never share one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}-{threading.get_ident()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


@contextmanager
def atomic_directory(final_dir: Path) -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces ``final_dir`` only on success.

    On an exception the temporary directory is deleted and ``final_dir`` (if any) is left
    untouched. On success an existing ``final_dir`` is moved aside, the new one renamed into
    place, and the old one deleted; the temporary name is a sibling, so the renames stay on
    one file system.
    """
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    temp_dir = final_dir.with_name(f".{final_dir.name}.tmp-{tag}")
    temp_dir.mkdir()
    try:
        yield temp_dir
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    old_dir = final_dir.with_name(f".{final_dir.name}.old-{tag}")
    if final_dir.exists():
        final_dir.rename(old_dir)
    temp_dir.rename(final_dir)
    shutil.rmtree(old_dir, ignore_errors=True)
