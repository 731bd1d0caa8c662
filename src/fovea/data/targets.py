"""Which cache holds the prediction target (top-level param ``target``).

``vae``: the latents stage's shards (``data/latents``). ``dino``: the dino stage's shards
(``data/dino``), the same layout with ``latents.npy`` holding the next frame's normalised DINO
patch features instead of its VAE latent (``fovea.data.dino``). Both have a ``manifest.json`` whose
``latents_shape`` is the target's ``[T, C, h, w]``; the dino stage's names the ``target`` it holds.
"""

from __future__ import annotations

import json
from pathlib import Path

from fovea.errors import FoveaUserError

TARGETS = ("vae", "dino")
MANIFEST = "manifest.json"


class TargetCacheError(FoveaUserError, RuntimeError):
    """The cache the params' target needs is missing or holds another target."""


def target_dir(target: str, latents_dir: Path, dino_dir: Path) -> Path:
    """The directory whose ``train``/``val`` shards hold ``target``; checked to hold it."""
    if target not in TARGETS:
        raise TargetCacheError(f"unknown target {target!r}; valid targets: {', '.join(TARGETS)}")
    if target == "vae":
        return Path(latents_dir)
    manifest = Path(dino_dir) / MANIFEST
    if not manifest.is_file():
        raise TargetCacheError(f"no DINO features: {manifest} is missing (run the dino stage: `dvc repro dino`)")
    held = json.loads(manifest.read_text()).get("target")
    if held != "dino":
        raise TargetCacheError(
            f"{dino_dir} holds no DINO features (its manifest says target {held!r}): "
            "rerun the dino stage with target: dino (`dvc repro dino`)"
        )
    return Path(dino_dir)
