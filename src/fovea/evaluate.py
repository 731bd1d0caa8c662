"""Held-out evaluation: per-clip fine and coarse losses on the val split, and the ratio."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from fovea.data.shards import latents_eval_dataset
from fovea.models.vlm import FoveatedVLM


@dataclass
class ClipLosses:
    """Per-clip, per-frame-position MSE ([clips, T])."""

    fine: np.ndarray
    coarse: np.ndarray

    @property
    def num_clips(self) -> int:
        return len(self.fine)


def _per_frame_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[B, T, C, h, w] -> [B, T]."""
    return (pred - target).pow(2).flatten(2).mean(-1)


@torch.no_grad()
def clip_losses(model: FoveatedVLM, val_dir: Path, batch_size: int) -> ClipLosses:
    model.eval()
    fine, coarse = [], []
    for frames, latents in tqdm(DataLoader(latents_eval_dataset(val_dir), batch_size=batch_size), desc="evaluate", unit="batch"):
        out = model.passes(frames, latents)
        fine.append(_per_frame_mse(out.pred_fine, out.target))
        coarse.append(_per_frame_mse(out.pred_coarse, out.target))
    if not fine:
        raise ValueError(f"no val clips found in {val_dir}")
    return ClipLosses(fine=torch.cat(fine).numpy(), coarse=torch.cat(coarse).numpy())


def summarize(losses: ClipLosses) -> dict[str, float | int]:
    # Clips have equal length, so the mean over clips of per-clip means is the mean over all frames.
    loss_fine = float(losses.fine.mean())
    loss_coarse = float(losses.coarse.mean())
    return {
        "loss_fine": loss_fine,
        "loss_coarse": loss_coarse,
        "ratio": loss_coarse / loss_fine,
        "num_clips": losses.num_clips,
    }


def evaluate(model_dir: Path, val_dir: Path, batch_size: int) -> dict[str, float | int | str]:
    model = FoveatedVLM.load(model_dir)
    metrics = summarize(clip_losses(model, val_dir, batch_size))
    return {"head": model.config.head, **metrics}
