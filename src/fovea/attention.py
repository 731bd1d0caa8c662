"""Where the coarse and fine queries look: attention maps of a few clips of a latents split,
with the control task's target position, for ``metrics/attention.png`` and the report."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import numpy as np
import torch

from fovea.data.shards import iter_latent_samples
from fovea.models.vlm import FoveatedVLM
from fovea.plots import save_attention_image


def target_track(metadata: dict, frame_size: int) -> np.ndarray | None:
    """Pixel centres (x, y) of the control task's target in the sampled frames [T, 2], scaled
    to the model's frame size; None for clips without a target (other sources and tasks)."""
    target = metadata.get("target")
    if not target or "frame_indices" not in metadata or "size" not in metadata:
        return None
    centres = np.asarray(target["centres"], dtype=np.float64)[metadata["frame_indices"]]
    return centres * frame_size / metadata["size"]


@torch.no_grad()
def save_attention_figure(model: FoveatedVLM, split_dir: Path, clips: int, path: Path, title: str = "") -> None:
    """Attention of the first ``clips`` clips of ``split_dir`` drawn to ``path``."""
    samples = list(islice(iter_latent_samples(split_dir), clips))
    if not samples:
        raise ValueError(f"no clips in {split_dir}")
    frames = np.stack([sample.frames for sample in samples])
    device = next(model.parameters()).device
    model.eval()
    coarse, fine = model.attention_maps(torch.from_numpy(frames).to(device))
    tracks = [target_track(sample.metadata, frames.shape[2]) for sample in samples]
    targets = np.stack(tracks) if all(track is not None for track in tracks) else None
    save_attention_image(frames, coarse.float().cpu().numpy(), fine.float().cpu().numpy(), targets, path, title)
