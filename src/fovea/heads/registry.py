"""Name -> prediction-head class.

A head is an ``nn.Module`` whose constructor takes the sizes the model decides
(``h_dim``, ``latent_channels``, ``height``, ``width``) plus its own options, and whose
``forward(h [N, D], z_prev [N, C, H, W])`` returns the predicted next latent ``[N, C, H, W]``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

# Sizes fixed by the model and data; everything else a head takes is a user option.
MODEL_SIZES = ("h_dim", "latent_channels", "height", "width")
# Those sizes in the paper's setup: SmolLM2-135M's hidden width, SD's VAE latent at 256x256.
PAPER_SIZES = {"h_dim": 576, "latent_channels": 4, "height": 32, "width": 32}

_HEADS: dict[str, type[nn.Module]] = {}


def register_head(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    def decorate(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _HEADS and _HEADS[name] is not cls:
            raise ValueError(f"head {name!r} is registered twice ({_HEADS[name].__name__}, {cls.__name__})")
        missing = [size for size in MODEL_SIZES if size not in inspect.signature(cls).parameters]
        if missing:
            raise TypeError(f"head {name!r} must accept constructor arguments {missing}")
        _HEADS[name] = cls
        return cls

    return decorate


def head_names() -> list[str]:
    return sorted(_HEADS)


def head_class(name: str) -> type[nn.Module]:
    try:
        return _HEADS[name]
    except KeyError:
        raise ValueError(f"unknown head {name!r}; valid heads: {', '.join(head_names())}") from None


def head_option_names(name: str) -> list[str]:
    """The options a user may set under ``heads.<name>`` in params.yaml."""
    parameters = inspect.signature(head_class(name)).parameters
    return [p for p in parameters if p not in MODEL_SIZES and p != "self"]


def check_head_options(name: str, options: dict[str, Any]) -> None:
    valid = head_option_names(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"heads.{name}: unknown option(s) {unknown}; valid options: {', '.join(valid) or 'none'}")


def build_head(name: str, **sizes_and_options: Any) -> nn.Module:
    return head_class(name)(**sizes_and_options)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
