"""Helpers for the end-to-end tests: a copy of the project in a temporary git repo, run with the
real `dvc` on shrunk params. Imported by the test modules (pytest puts `tests/` on sys.path)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]

# Small enough that a stage takes seconds on 2 cores; every stage still does its real work.
SHRUNK = {
    "data": {"num_clips": 14, "frames_per_clip": 6, "size": 32, "clips_per_shard": 4, "distractors": 4},
    "frames": {"num": 4, "size": 32},
    "vae": {"block_channels": [8, 8, 8], "steps": 3, "batch_size": 4},
    "model": {
        "tiny": {
            "encoder_dim": 16,
            "encoder_layers": 1,
            "patch_size": 8,
            "llm_dim": 16,
            "llm_layers": 1,
            "attention_heads": 2,
        }
    },
    "train": {"steps": 3, "batch_size": 2, "warmup": 1},
    "eval": {"batch_size": 4, "bootstrap": 200, "sample_clips": 2},
    # Narrow heads: the pipeline's wiring is under test here, not the heads' capacity. A head
    # not listed runs with its default options (slower, still covered: the e2e tests run every
    # registered head).
    "heads": {
        "film": {"channels": [8, 16, 32], "film_hidden": 32},
        "mlp": {"hidden": 64},
        "xattn": {"channels": [8, 16, 32], "heads": 2, "pos_dim": 8, "query_hidden": 32},
        "sfilm": {"channels": [8, 16, 32], "film_hidden": 32, "pos_dim": 8},
        "stx": {"channels": [8, 16], "heads": 2, "context_tokens": 2, "mlp_ratio": 2},
    },
}

# Run outputs of the working tree: a copy starts without them, as a fresh clone would.
_NOT_COPIED = ("metrics/", "dvc.lock", "results/")


def merge_params(base: dict | None, override: dict) -> dict:
    """``base`` with ``override`` merged in, key by key at every depth (lists are replaced)."""
    merged = dict(base or {})
    for key, value in override.items():
        merged[key] = merge_params(merged.get(key), value) if isinstance(value, dict) else value
    return merged


def repo_params(override: dict[str, Any]) -> dict:
    """The repository's ``params.yaml`` with ``override`` merged in."""
    return merge_params(yaml.safe_load((REPO / "params.yaml").read_text()), override)


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    # Stage commands call `python`: make it this interpreter, whatever PATH the test runner had.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        GIT_AUTHOR_NAME="fovea-test",
        GIT_AUTHOR_EMAIL="test@fovea.invalid",
        GIT_COMMITTER_NAME="fovea-test",
        GIT_COMMITTER_EMAIL="test@fovea.invalid",
        DVC_NO_ANALYTICS="1",
    )
    return env


def run(cwd: Path, *args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a command in ``cwd``; with ``check``, a failure raises with its output."""
    result = subprocess.run(args, cwd=cwd, env=env or subprocess_env(), capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def dvc(cwd: Path, *args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run(cwd, sys.executable, "-m", "dvc", *args, check=check, env=env)


def copy_project(root: Path, params: dict[str, Any]) -> Path:
    """Copy the project's files (tracked and untracked, not ignored) into ``root`` with
    ``params`` as its params.yaml, and commit them to a new git repo there."""
    listed = run(REPO, "git", "ls-files", "--cached", "--others", "--exclude-standard").stdout.split()
    for name in listed:
        source = REPO / name
        if source.is_file() and not name.startswith(_NOT_COPIED):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(root, "git", "init", "-q")
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-qm", "project")
    return root
