"""Held-out evaluation on the val split.

Besides the headline ``ratio = loss_coarse / loss_fine`` (frames 3..T, where the passes can
differ) it reports what makes the number trustworthy: a bootstrap interval over clips, the
share of clips the fine pass wins, per-frame losses, a copy-the-previous-latent baseline, and how much the head uses ``h`` at all (its fine
loss when ``h`` is swapped with another clip's or zeroed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from fovea.data.shards import iter_samples, latents_eval_dataset
from fovea.heads import count_parameters
from fovea.models.vlm import TRAINING_FILE, FoveatedVLM

CI_LEVEL = 0.95


@dataclass
class ValOutputs:
    """Everything evaluation needs, for every val clip ([clips, T, ...]), in val order."""

    h_fine: torch.Tensor
    z_prev: torch.Tensor
    target: torch.Tensor
    pred_fine: torch.Tensor
    pred_coarse: torch.Tensor

    @property
    def num_clips(self) -> int:
        return len(self.target)

    @cached_property
    def fine_loss(self) -> np.ndarray:
        """Per-frame fine loss [N, T] (computed once: the summary and the clip table share it)."""
        return per_frame_mse(self.pred_fine, self.target)

    @cached_property
    def coarse_loss(self) -> np.ndarray:
        return per_frame_mse(self.pred_coarse, self.target)

    def first_clips(self, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Target, fine and coarse latents of the first ``count`` clips (for sample images)."""
        shown = slice(0, count)
        return self.target[shown].numpy(), self.pred_fine[shown].numpy(), self.pred_coarse[shown].numpy()


def per_frame_mse(pred: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """[N, T, C, h, w] -> [N, T]."""
    return (pred - target).pow(2).flatten(2).mean(-1).numpy()


def _model_device(model: FoveatedVLM) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def run_val(model: FoveatedVLM, val_dir: Path, batch_size: int, max_clips: int | None = None) -> ValOutputs:
    """Both passes over every clip of a split (the first ``max_clips`` when set) on the model's
    device; outputs gathered on the CPU."""
    model.eval()
    device = _model_device(model)
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in ValOutputs.__dataclass_fields__}
    loader = DataLoader(latents_eval_dataset(val_dir), batch_size=batch_size)
    for frames, latents in tqdm(loader, desc="evaluate", unit="batch"):
        out = model.passes(frames.to(device), latents.to(device))
        for name in parts:
            parts[name].append(getattr(out, name).float().cpu())
        if max_clips is not None and sum(len(chunk) for chunk in parts["target"]) >= max_clips:
            break
    if not parts["target"]:
        raise ValueError(f"no val clips found in {val_dir}")
    return ValOutputs(**{name: torch.cat(chunks)[:max_clips] for name, chunks in parts.items()})


@torch.no_grad()
def fine_loss_with_h(model: FoveatedVLM, h: torch.Tensor, val: ValOutputs, batch_size: int) -> np.ndarray:
    """Per-frame fine loss [N, T] when the head gets ``h`` instead of the clips' own."""
    losses = []
    device = _model_device(model)
    for start in range(0, val.num_clips, batch_size):
        window = slice(start, start + batch_size)
        pred = model.predict(h[window].to(device), val.z_prev[window].to(device)).float().cpu()
        losses.append(per_frame_mse(pred, val.target[window]))
    return np.concatenate(losses)


def percentile_interval(values: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    """The central ``level`` interval of bootstrap replicates."""
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_ratio_interval(
    fine: np.ndarray, coarse: np.ndarray, samples: int, seed: int, level: float = CI_LEVEL
) -> tuple[float, float]:
    """Percentile interval of mean(coarse) / mean(fine) over clips resampled with replacement."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(fine), size=(samples, len(fine)))
    return percentile_interval(coarse[picks].mean(axis=1) / fine[picks].mean(axis=1), level)


def bootstrap_mean_interval(values: np.ndarray, samples: int, seed: int, level: float = CI_LEVEL) -> tuple[float, float]:
    """Percentile interval of the mean of per-clip ``values`` over clips resampled with replacement."""
    rng = np.random.default_rng(seed)
    return percentile_interval(values[rng.integers(0, len(values), size=(samples, len(values)))].mean(axis=1), level)


# Frames 1 and 2 are where the passes cannot differ: frame 1 is predicted from the mode token
# alone, and frame 2 from a read of frame 1 with another static query (q_init; the motion read has
# no earlier frame to compare with). The headline metrics are over frames 3..T.
HEADLINE_FIRST_FRAME = 3


def headline_frames(steps: int) -> slice:
    """Frame indices of the headline metrics: frames 3..T (frame T alone for 2-frame clips)."""
    return slice(min(HEADLINE_FIRST_FRAME, steps) - 1, None)


def summarize(model: FoveatedVLM, val: ValOutputs, batch_size: int, bootstrap: int, seed: int) -> dict:
    """Held-out metrics; the headline ones (losses, ratio, gaps, win rate) over frames 3..T."""
    frames = headline_frames(val.fine_loss.shape[1])
    fine, coarse = val.fine_loss[:, frames], val.coarse_loss[:, frames]
    fine_clip, coarse_clip = fine.mean(axis=1), coarse.mean(axis=1)
    low, high = bootstrap_ratio_interval(fine_clip, coarse_clip, bootstrap, seed)

    # Copying frame t-1: column j predicts frame j + 2, so frames 3..T are columns 1.. .
    copy = per_frame_mse(val.target[:, :-1], val.target[:, 1:])[:, frames.start - 1 :]
    copy_gap_clip = copy.mean(axis=1) - fine_clip
    zero_h = fine_loss_with_h(model, torch.zeros_like(val.h_fine), val, batch_size)[:, frames]
    metrics = {
        "num_clips": val.num_clips,
        "headline_frames": f"{frames.start + 1}..{val.fine_loss.shape[1]}",
        "loss_fine": float(fine.mean()),
        "loss_coarse": float(coarse.mean()),
        "ratio": float(coarse.mean() / fine.mean()),
        "ratio_ci_low": low,
        "ratio_ci_high": high,
        "ratio_all_frames": float(val.coarse_loss.mean() / val.fine_loss.mean()),
        "fine_win_rate": float(np.mean(fine_clip < coarse_clip)),
        "per_frame_loss_fine": [float(v) for v in val.fine_loss.mean(axis=0)],
        "per_frame_loss_coarse": [float(v) for v in val.coarse_loss.mean(axis=0)],
        "copy_loss": float(copy.mean()),
        # > 0: the head beats copying the previous latent, on the same frames.
        "copy_gap": float(copy_gap_clip.mean()),
        **_interval_fields("copy_gap", copy_gap_clip, bootstrap, seed),
        # h = 0 is far from any h the head saw (h leaves a norm layer): an upper bound on h's use.
        "h_zero_loss": float(zero_h.mean()),
        "h_zero_gap": float(zero_h.mean() - fine.mean()),
    }
    if val.num_clips > 1:
        # Each clip gets the next clip's h: a derangement, so no clip keeps its own.
        shuffled_h = fine_loss_with_h(model, val.h_fine.roll(1, dims=0), val, batch_size)[:, frames]
        gap_clip = shuffled_h.mean(axis=1) - fine_clip
        metrics["h_shuffled_loss"] = float(shuffled_h.mean())
        metrics["h_shuffle_gap"] = float(gap_clip.mean())
        metrics.update(_interval_fields("h_shuffle_gap", gap_clip, bootstrap, seed))
    return metrics


def _interval_fields(name: str, per_clip: np.ndarray, bootstrap: int, seed: int) -> dict[str, float]:
    low, high = bootstrap_mean_interval(per_clip, bootstrap, seed)
    return {f"{name}_ci_low": low, f"{name}_ci_high": high}


def clip_table(val: ValOutputs, val_dir: Path) -> dict[str, list]:
    """Per-clip mean losses over the headline frames, keyed by clip, so reports can pair clips
    across experiments."""
    keys = [sample["__key__"] for sample in iter_samples(val_dir)]
    if len(keys) != val.num_clips:
        raise RuntimeError(f"{val_dir}: {len(keys)} keys for {val.num_clips} evaluated clips")
    frames = headline_frames(val.fine_loss.shape[1])
    return {
        "keys": keys,
        "frames": f"{frames.start + 1}..{val.fine_loss.shape[1]}",
        "loss_fine": [float(v) for v in val.fine_loss[:, frames].mean(axis=1)],
        "loss_coarse": [float(v) for v in val.coarse_loss[:, frames].mean(axis=1)],
    }


def evaluate(
    model_dir: Path, val_dir: Path, batch_size: int, bootstrap: int, seed: int, device: str = "cpu",
    train_dir: Path | None = None,
) -> tuple[dict, FoveatedVLM, ValOutputs]:
    """Metrics for ``metrics/eval.json``, plus the model and val outputs (for clips and images).

    With ``train_dir``, the headline fine loss on the first training-split clips too, as many as
    there are val clips (``train_loss_fine``; not all of them were drawn in training): close to
    the val loss when the model has not memorised.
    """
    model = FoveatedVLM.load(model_dir).to(device)
    training = json.loads((Path(model_dir) / TRAINING_FILE).read_text())
    val = run_val(model, val_dir, batch_size)
    seen = None if train_dir is None else run_val(model, train_dir, batch_size, max_clips=val.num_clips)
    metrics = {
        "head": model.config.head,
        "head_params": count_parameters(model.head),
        "seed": training["seed"],
        "train_steps": training["steps"],
        **summarize(model, val, batch_size, bootstrap, seed),
    }
    if seen is not None:
        metrics["train_loss_fine"] = float(seen.fine_loss[:, headline_frames(seen.fine_loss.shape[1])].mean())
        metrics["train_clips"] = seen.num_clips
        # (val - train) / train: about 0 when nothing was memorised
        metrics["val_train_gap"] = (metrics["loss_fine"] - metrics["train_loss_fine"]) / metrics["train_loss_fine"]
    return metrics, model, val
