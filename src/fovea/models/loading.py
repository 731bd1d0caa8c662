"""Loading pretrained models by hub name or local path, with errors that say what to do.

A param such as ``model.llm`` holds either a hub name (``HuggingFaceTB/SmolLM2-135M-Instruct``)
or the path of a folder written by ``save_pretrained``. An existing folder is always read as a
local copy and the hub is never contacted for it, so runs work with no network (and with
``HF_HUB_OFFLINE=1``). A hub name is read from the local hub cache when it is there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from huggingface_hub import constants as hub_constants

from fovea.errors import FoveaUserError

T = TypeVar("T")


class ModelLoadError(FoveaUserError, RuntimeError):
    """A named pretrained model could not be loaded (typically: not available offline)."""


def looks_like_path(name: str) -> bool:
    """Whether ``name`` can only be a filesystem path: hub names are ``name`` or ``owner/name``."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def load_pretrained(loader: Callable[..., T], name: str, param_key: str, **kwargs: Any) -> T:
    """``loader(name, **kwargs)`` (a ``from_pretrained``) with actionable errors.

    Args:
        loader: e.g. ``AutoModel.from_pretrained``.
        name: a hub name or the path of a ``save_pretrained`` folder.
        param_key: the param that holds ``name`` (``model.llm``), named in every error.
        kwargs: passed to ``loader``.

    Raises:
        ModelLoadError: ``name`` is a path that does not exist, a folder that holds no loadable
            model, or a hub name that is neither in the local cache nor downloadable.
    """
    local = Path(name).expanduser()
    if local.is_dir():
        # Never look a local copy up on the hub: no network needed, no request made.
        kwargs.setdefault("local_files_only", True)
        try:
            return loader(str(local), **kwargs)
        except (OSError, ValueError) as error:
            raise ModelLoadError(
                f"{param_key}: the folder {name!r} holds no loadable model ({_first_line(error)}).\n"
                f"Point {param_key} at a folder written by `save_pretrained` (config.json and "
                f"weights), or at a hub name."
            ) from error
    if looks_like_path(name):
        raise ModelLoadError(
            f"{param_key}: {name!r} is not an existing folder (relative paths are read from the "
            f"directory the stage runs in: the repository root under dvc). Set {param_key} to a "
            f"folder written by `save_pretrained`, or to a hub name."
        )
    try:
        return loader(name, **kwargs)
    except (OSError, ValueError) as error:
        offline = (
            "HF_HUB_OFFLINE is set, so only the local hub cache was searched. "
            if hub_constants.HF_HUB_OFFLINE
            else "This machine may have no access to the model hub. "
        )
        raise ModelLoadError(
            f"{param_key}: could not load {name!r} ({_first_line(error)}).\n"
            f"{offline}Either download it once where the hub is reachable (`hf download {name}`; "
            f"it is then read from the local hub cache, ~/.cache/huggingface/hub or $HF_HOME/hub) "
            f"or save it with `save_pretrained` to a folder and set {param_key} to that folder's path."
        ) from error
