"""Prediction heads. Every module in this package is imported, so a head registers itself
with ``@register_head`` and needs no other change to be selectable."""

import importlib
import pkgutil

from fovea.heads.registry import (
    MODEL_SIZES,
    PAPER_SIZES,
    build_head,
    check_head_options,
    count_parameters,
    head_class,
    head_names,
    head_option_names,
    register_head,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "registry" and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "MODEL_SIZES",
    "PAPER_SIZES",
    "build_head",
    "check_head_options",
    "count_parameters",
    "head_class",
    "head_names",
    "head_option_names",
    "register_head",
]
