"""Loading pretrained models by hub name or local path, with errors that say what to do."""

from __future__ import annotations

from typing import Any, Callable, TypeVar

T = TypeVar("T")


class ModelLoadError(RuntimeError):
    """A named pretrained model could not be loaded (typically: not available offline)."""


def load_pretrained(loader: Callable[..., T], name: str, param_key: str, **kwargs: Any) -> T:
    """``loader(name)`` (a ``from_pretrained``), turning "not found" into an actionable error."""
    try:
        return loader(name, **kwargs)
    except (OSError, ValueError) as error:
        raise ModelLoadError(
            f"{param_key}: could not load {name!r} ({type(error).__name__}: {str(error).splitlines()[0]}).\n"
            f"This machine may have no access to the model hub. Either download it once where the hub "
            f"is reachable (`huggingface-cli download {name}`; it is then read from the local cache) or "
            f"save it with `save_pretrained` to a folder and set {param_key} to that folder's path."
        ) from error
