"""Small file helpers: outputs are written to a temporary name and renamed when complete."""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


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


@contextmanager
def staged_outputs(*finals: Path, publish: bool = True) -> Iterator[tuple[Path, ...]]:
    """Yield a staging path for each of a stage's outputs; publish them all together on success.

    Write each output (a file or a directory) to its staging path. When the block ends without
    an exception, every staged output replaces its final path, one right after another, so a
    stage's outputs (e.g. the VAE's weights and ``metrics/vae.json``) come from one run. On an
    exception, or with ``publish=False`` (the non-main processes of a multi-process run), the
    staged outputs are deleted and the previous outputs stay as they were. A staging path is a
    sibling of its final path, so the renames stay on one file system.
    """
    finals = tuple(Path(final) for final in finals)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    stage_dirs = []
    for final in finals:
        final.parent.mkdir(parents=True, exist_ok=True)
        stage_dir = final.with_name(f".{final.name}.staged-{tag}")
        stage_dir.mkdir()
        stage_dirs.append(stage_dir)
    try:
        staged = tuple(stage_dir / final.name for stage_dir, final in zip(stage_dirs, finals, strict=False))
        yield staged
        if publish:
            missing = [str(final) for final, path in zip(finals, staged, strict=False) if not path.exists()]
            if missing:
                raise RuntimeError(f"outputs not written: {', '.join(missing)}")
            for final, path, stage_dir in zip(finals, staged, stage_dirs, strict=False):
                # The previous output goes into the staging directory, deleted below.
                if final.is_dir() and not final.is_symlink():
                    final.rename(stage_dir / f"{final.name}.old")
                os.replace(path, final)
    finally:
        for stage_dir in stage_dirs:
            shutil.rmtree(stage_dir, ignore_errors=True)
