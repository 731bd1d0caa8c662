"""Starting a model from a saved checkpoint of this project (``train.init_from``).

The checkpoint is a directory written by :meth:`FoveatedVLM.save` (``models/fvlm``). Every
weight whose name and shape match is copied into the model, with two rules:

- the encoder and the LLM must be the ones the checkpoint was trained with: a missing weight or
  another shape there is an error, since a half-loaded backbone would silently train something
  else than asked;
- the prediction head is copied only when the checkpoint's head (``fovea_config.json``) is the
  model's: weights of another head mean nothing to this one, even where names and shapes agree.

The rest (queries, mode tokens, ``z_init``, ...) is copied where the shapes agree and left as
built otherwise (e.g. ``z_init`` after a change of latent size).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from fovea.errors import FoveaUserError
from fovea.models.vlm import CONFIG_FILE, WEIGHTS_FILE, FoveatedVLM

# Weights of the backbones, which must match the checkpoint's exactly.
BACKBONE_PREFIXES = ("encoder.", "llm.")
HEAD_PREFIX = "head."
# Names listed in a report, at most: enough to see what happened, short enough to print.
_MAX_LISTED = 10


class CheckpointInitError(FoveaUserError, ValueError):
    """``train.init_from`` is not a checkpoint of this project, or its backbones differ."""


def _read_checkpoint(checkpoint_dir: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (checkpoint_dir / name).is_file()]
    if missing:
        what = "does not exist" if not checkpoint_dir.exists() else f"has no {' or '.join(missing)}"
        raise CheckpointInitError(
            f"train.init_from: {checkpoint_dir} is not a checkpoint of this project ({what}); "
            f"point it at a directory the train stage wrote, e.g. models/fvlm"
        )
    try:
        config = json.loads((checkpoint_dir / CONFIG_FILE).read_text())
        weights = load_file(str(checkpoint_dir / WEIGHTS_FILE))
    except (json.JSONDecodeError, SafetensorError, OSError) as error:
        raise CheckpointInitError(
            f"train.init_from: {checkpoint_dir} is not a readable checkpoint ({type(error).__name__}: {error})"
        ) from None
    return config, weights


def _check_backbones(
    model: FoveatedVLM, own: dict[str, torch.Tensor], saved: dict[str, torch.Tensor], saved_config: dict[str, Any]
) -> None:
    mismatched = []
    for name, tensor in own.items():
        if not name.startswith(BACKBONE_PREFIXES):
            continue
        if name not in saved:
            mismatched.append(f"{name}: not in the checkpoint")
        elif saved[name].shape != tensor.shape:
            mismatched.append(f"{name}: {list(saved[name].shape)} saved, {list(tensor.shape)} here")
    if mismatched:
        shown = "; ".join(mismatched[:3]) + (f"; ... {len(mismatched) - 3} more" if len(mismatched) > 3 else "")
        raise CheckpointInitError(
            "train.init_from: the checkpoint's encoder/LLM do not match this model's "
            f"(checkpoint: model.encoder={saved_config.get('encoder')!r}, model.llm={saved_config.get('llm')!r}; "
            f"here: {model.config.encoder!r}, {model.config.llm!r}): {shown}. "
            "Use the model.* params the checkpoint was trained with."
        )


def init_from_checkpoint(model: FoveatedVLM, checkpoint_dir: Path) -> dict[str, Any]:
    """Copy the matching weights of a saved checkpoint into ``model`` (in place).

    Call it after building the model and before creating the optimizer.

    Returns:
        A JSON-serialisable report: ``checkpoint``, ``saved_head``, ``head_loaded``, ``loaded``
        (model weights copied), ``skipped`` (model weights left as built) with ``skipped_by_reason``
        and the first names in ``skipped_names``, ``unused`` (checkpoint weights not copied) and
        ``reason`` (why the head was skipped; None when it was loaded).

    Raises:
        CheckpointInitError: not a checkpoint of this project, or the encoder/LLM differ.
    """
    checkpoint_dir = Path(checkpoint_dir)
    saved_config, saved = _read_checkpoint(checkpoint_dir)
    own = model.state_dict()
    _check_backbones(model, own, saved, saved_config)

    saved_head = saved_config.get("head")
    head_loaded = saved_head == model.config.head
    reason = None if head_loaded else f"checkpoint head {saved_head!r} differs from this model's {model.config.head!r}"

    to_load: dict[str, torch.Tensor] = {}
    skipped: dict[str, str] = {}
    for name, tensor in own.items():
        if name.startswith(HEAD_PREFIX) and not head_loaded:
            skipped[name] = "different head"
        elif name not in saved:
            skipped[name] = "not in checkpoint"
        elif saved[name].shape != tensor.shape:
            skipped[name] = "different shape"
        else:
            to_load[name] = saved[name]
    model.load_state_dict(to_load, strict=False)

    return {
        "checkpoint": str(checkpoint_dir),
        "saved_head": saved_head,
        "head_loaded": head_loaded,
        "loaded": len(to_load),
        "skipped": len(skipped),
        "skipped_by_reason": dict(Counter(skipped.values())),
        "skipped_names": list(skipped)[:_MAX_LISTED],
        "unused": len(saved.keys() - to_load.keys()),
        "reason": reason,
    }
