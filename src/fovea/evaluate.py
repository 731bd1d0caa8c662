"""Held-out evaluation on the val split.

``ratio = loss_coarse / loss_fine`` over all frames and, the headline, ``ratio_late`` over frames
3..T, where the passes can differ; each with a bootstrap interval over clips (``fovea.stats``).
Beside them, what makes the number trustworthy: the share of clips the fine pass wins, per-frame
losses, a copy-the-previous-latent baseline, how much the head uses what is specific to the clip
in ``h`` (its fine loss with the val-mean ``h``, or another clip's), and ``fovea_gain``, the share
of that worth the fine read adds over the coarse one.

With ``model.fine_iterations`` > 1, "fine" is the last iteration and every iteration's loss is
listed (``loss_fine_iterations``). When the checkpoint carries its caption tokenizer (every
checkpoint the train stage writes), the caption loss of each pass on the val captions is reported
too, whatever the objective (``caption_loss_coarse``, ``caption_loss_fine``, ``caption_ratio``):
for a recon-trained model it is the untrained language side's, a baseline for the joint one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from fovea.data.shards import latents_eval_dataset
from fovea.errors import FoveaUserError
from fovea.heads import count_parameters
from fovea.models.vlm import TOKENIZER_DIR, TRAINING_FILE, FoveatedVLM
from fovea.split_check import small_val_split
from fovea.stats import CrossedDraws, finite_interval, pooled_ratio, share_of_gap, share_of_gap_replicates
from fovea.tokenizer import encode_captions, load_tokenizer


class EvalInputError(FoveaUserError):
    """No trained model, or a split without clips, to evaluate."""


@dataclass
class ValOutputs:
    """Everything evaluation needs, for every val clip ([clips, T, ...]), in val order."""

    h_fine: torch.Tensor
    z_prev: torch.Tensor
    target: torch.Tensor
    pred_fine: torch.Tensor
    pred_coarse: torch.Tensor
    # The clips' sample keys, in the same order (reports pair clips across runs by them).
    keys: list[str] = field(default_factory=list)
    # Per-frame loss of every fine iteration [N, K, T] (the last is fine_loss); None: one.
    fine_iteration_loss: torch.Tensor | None = None
    # With captions: summed caption NLL per clip and pass [N, 1 + K] (coarse first), tokens [N].
    caption_nll: torch.Tensor | None = None
    caption_tokens: torch.Tensor | None = None

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


TENSOR_FIELDS = ("h_fine", "z_prev", "target", "pred_fine", "pred_coarse")


def per_frame_mse(pred: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """[N, T, C, h, w] -> [N, T]."""
    return (pred - target).pow(2).flatten(2).mean(-1).numpy()


def _model_device(model: FoveatedVLM) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def run_val(
    model: FoveatedVLM, val_dir: Path, batch_size: int, max_clips: int | None = None, tokenizer=None
) -> ValOutputs:
    """Every pass over every clip of a split (the first ``max_clips`` when set) on the model's
    device; outputs gathered on the CPU. With ``tokenizer``, the caption loss of each pass too."""
    model.eval()
    device = _model_device(model)
    names = [*TENSOR_FIELDS, "fine_iteration_loss"] + (["caption_nll", "caption_tokens"] if tokenizer else [])
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    keys: list[str] = []
    dataset = latents_eval_dataset(val_dir, keys=True, captions=tokenizer is not None)
    for batch in tqdm(DataLoader(dataset, batch_size=batch_size), desc="evaluate", unit="batch"):
        batch_keys, frames, latents = batch[:3]
        captions = None
        if tokenizer is not None:
            captions = tuple(t.to(device) for t in encode_captions(tokenizer, list(batch[3])))
        out = model.passes(frames.to(device), latents.to(device), captions=captions, every_iteration=True)
        for name in TENSOR_FIELDS:
            parts[name].append(getattr(out, name).float().cpu())
        losses = [(pred.float() - out.target.float()).pow(2).flatten(2).mean(-1) for pred in out.pred_fine_iterations]
        parts["fine_iteration_loss"].append(torch.stack(losses, dim=1).cpu())
        if captions is not None:
            parts["caption_nll"].append(out.caption_nll.float().cpu())
            parts["caption_tokens"].append(out.caption_tokens.cpu())
        keys.extend(batch_keys)
        if max_clips is not None and len(keys) >= max_clips:
            break
    if not keys:
        raise EvalInputError(f"no clips found in {val_dir}: rerun the latents stage (`dvc repro latents`)")
    tensors = {name: torch.cat(chunks)[:max_clips] for name, chunks in parts.items()}
    return ValOutputs(**tensors, keys=keys[:max_clips])


def iteration_and_caption_metrics(val: ValOutputs) -> dict:
    """Every fine iteration's loss (all frames and frames 3..T) and, with captions, the caption
    loss per pass (mean over the val captions' tokens) and ``caption_ratio`` = coarse / last fine."""
    losses = val.fine_iteration_loss
    losses = torch.from_numpy(val.fine_loss).unsqueeze(1) if losses is None else losses
    losses = losses.double()
    late = headline_frames(losses.shape[2])
    metrics: dict = {
        "fine_iterations": losses.shape[1],
        "loss_fine_iterations": [float(v) for v in losses.mean(dim=(0, 2))],
        "loss_fine_late_iterations": [float(v) for v in losses[:, :, late].mean(dim=(0, 2))],
    }
    if val.caption_nll is not None:
        per_pass = val.caption_nll.double().sum(dim=0) / max(int(val.caption_tokens.sum()), 1)
        metrics.update(
            caption_loss_coarse=float(per_pass[0]),
            caption_loss_fine=float(per_pass[-1]),
            caption_ratio=float(per_pass[0] / per_pass[-1]),
            caption_loss_fine_iterations=[float(v) for v in per_pass[1:]],
        )
    return metrics


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


# Frames 1 and 2 are where the passes cannot differ: frame 1 is predicted from the mode token
# alone, and frame 2 from a read of frame 1 with another static query (q_init; the motion read has
# no earlier frame to compare with). The headline metrics are over frames 3..T.
HEADLINE_FIRST_FRAME = 3


def headline_frames(steps: int) -> slice:
    """Frame indices of the headline metrics: frames 3..T (frame T alone for 2-frame clips)."""
    return slice(min(HEADLINE_FIRST_FRAME, steps) - 1, None)


def late_clip_losses(model: FoveatedVLM, val: ValOutputs, batch_size: int) -> dict[str, np.ndarray]:
    """Per-clip mean losses over frames 3..T [clips]: ``fine``, ``coarse``, ``copy`` (copying the
    previous latent), ``h_mean`` (the head given the val clips' mean h at each frame index: on the
    manifold of h the head saw, without anything specific to the clip) and, with two clips or
    more, ``h_shuffled`` (each clip given the next clip's h: a derangement)."""
    late = headline_frames(val.fine_loss.shape[1])
    # Copying frame t-1: column j predicts frame j + 2, so frames 3..T are columns 1.. .
    copy = per_frame_mse(val.target[:, :-1], val.target[:, 1:])[:, late.start - 1 :]
    h_mean = val.h_fine.mean(dim=0, keepdim=True).expand_as(val.h_fine)
    losses = {
        "fine": val.fine_loss[:, late],
        "coarse": val.coarse_loss[:, late],
        "copy": copy,
        "h_mean": fine_loss_with_h(model, h_mean, val, batch_size)[:, late],
    }
    if val.num_clips > 1:
        losses["h_shuffled"] = fine_loss_with_h(model, val.h_fine.roll(1, dims=0), val, batch_size)[:, late]
    # float64: the gaps and the gain are small differences of these means
    return {name: frames.astype(np.float64).mean(axis=1) for name, frames in losses.items()}


def summarize(val: ValOutputs, late: dict[str, np.ndarray], bootstrap: int, seed: int) -> dict:
    """Held-out metrics: the ratio over all frames and over frames 3..T (``ratio_late``, the
    headline), and, over frames 3..T (``late``: :func:`late_clip_losses`), the gaps that say
    whether the number can be trusted. Intervals come from one set of clip draws."""
    steps = val.fine_loss.shape[1]
    draws = CrossedDraws.make(val.num_clips, 1, bootstrap, seed)
    fine_all, coarse_all = val.fine_loss.mean(axis=1), val.coarse_loss.mean(axis=1)
    fine, coarse, h_mean = late["fine"], late["coarse"], late["h_mean"]
    metrics = {
        "num_clips": val.num_clips,
        "ratio": pooled_ratio(coarse_all, fine_all),
        **_interval("ratio", draws.ratios(coarse_all, fine_all)),
        "loss_fine": float(fine_all.mean()),
        "loss_coarse": float(coarse_all.mean()),
        "headline_frames": f"{headline_frames(steps).start + 1}..{steps}",
        "ratio_late": pooled_ratio(coarse, fine),
        **_interval("ratio_late", draws.ratios(coarse, fine)),
        "loss_fine_late": float(fine.mean()),
        "loss_coarse_late": float(coarse.mean()),
        "fine_win_rate": float(np.mean(fine < coarse)),
        "per_frame_loss_fine": [float(v) for v in val.fine_loss.mean(axis=0)],
        "per_frame_loss_coarse": [float(v) for v in val.coarse_loss.mean(axis=0)],
        "copy_loss": float(late["copy"].mean()),
        # > 0: the head beats copying the previous latent, on the same frames.
        **_gap("copy_gap", late["copy"], fine, draws),
        # > 0: the head uses what is specific to the clip in h.
        "h_mean_loss": float(h_mean.mean()),
        **_gap("h_mean_gap", h_mean, fine, draws),
    }
    # The share of h's worth is defined only where h is clearly worth something; elsewhere its
    # denominator is noise and the share any number (null in eval.json).
    h_worth = metrics["h_mean_gap_ci_low"] > 0
    metrics["fovea_gain"] = share_of_gap(coarse, fine, h_mean) if h_worth else None
    low, high = finite_interval(share_of_gap_replicates(draws, coarse, fine, h_mean)) if h_worth else (None, None)
    metrics.update(fovea_gain_ci_low=low, fovea_gain_ci_high=high)
    if "h_shuffled" in late:
        metrics["h_shuffled_loss"] = float(late["h_shuffled"].mean())
        metrics.update(_gap("h_shuffle_gap", late["h_shuffled"], fine, draws))
    return metrics


def _interval(name: str, replicates: np.ndarray) -> dict[str, float]:
    low, high = finite_interval(replicates)
    return {f"{name}_ci_low": low, f"{name}_ci_high": high}


def _gap(name: str, loss: np.ndarray, loss_fine: np.ndarray, draws: CrossedDraws) -> dict[str, float]:
    """Mean per-clip ``loss - loss_fine`` with its interval."""
    gap = loss - loss_fine
    return {name: float(gap.mean()), **_interval(name, draws.means(gap))}


def clip_table(late: dict[str, np.ndarray], keys: list[str], frames: str) -> dict[str, list]:
    """Per-clip mean losses over the headline frames, keyed by clip, so reports can pair clips
    across experiments."""
    if len(keys) != len(late["fine"]):
        raise RuntimeError(f"{len(keys)} clip keys for {len(late['fine'])} evaluated clips")
    return {
        "keys": keys,
        "frames": frames,
        "loss_fine": [float(v) for v in late["fine"]],
        "loss_coarse": [float(v) for v in late["coarse"]],
        "loss_h_mean": [float(v) for v in late["h_mean"]],
    }


@dataclass
class EvalResult:
    metrics: dict
    clips: dict
    model: FoveatedVLM
    val: ValOutputs


def evaluate(
    *,
    model_dir: Path,
    val_dir: Path,
    batch_size: int,
    bootstrap: int,
    seed: int,
    device: str = "cpu",
    train_dir: Path | None = None,
) -> EvalResult:
    """Metrics for ``metrics/eval.json`` and per-clip losses for ``metrics/clips.json``, with the
    model and val outputs (for the pictures).

    With ``train_dir``, the headline fine loss on the first training-split clips too, as many as
    there are val clips (``train_loss_fine_late``; not all of them were drawn in training): close to
    the val loss when the model has not memorised.
    """
    if not (Path(model_dir) / TRAINING_FILE).is_file():
        raise EvalInputError(f"no trained model in {model_dir}: run the train stage first (`dvc repro train`)")
    model = FoveatedVLM.load(model_dir).to(device)
    training = json.loads((Path(model_dir) / TRAINING_FILE).read_text())
    tokenizer_dir = Path(model_dir) / TOKENIZER_DIR
    tokenizer = load_tokenizer(tokenizer_dir) if tokenizer_dir.is_dir() else None
    val = run_val(model, val_dir, batch_size, tokenizer=tokenizer)
    late = late_clip_losses(model, val, batch_size)
    seen = None if train_dir is None else run_val(model, train_dir, batch_size, max_clips=val.num_clips)
    metrics = {
        "head": model.config.head,
        "target": model.config.target,
        "head_params": count_parameters(model.head),
        "seed": training["seed"],
        "train_steps": training["steps"],
        # Which losses trained the model, and the ratio on its last training batches: the
        # original's own measurement, to set beside its published ratios.
        "protocol": training.get("protocol"),
        "train_ratio_last100": training.get("train_ratio_last100"),
        "objective": training.get("objective", "recon"),
        "train_caption_ratio_last100": training.get("train_caption_ratio_last100"),
        **summarize(val, late, bootstrap, seed),
        **iteration_and_caption_metrics(val),
        "small_val_split": small_val_split(val.num_clips),
    }
    if seen is not None:
        frames = headline_frames(seen.fine_loss.shape[1])
        metrics["train_loss_fine_late"] = float(seen.fine_loss[:, frames].mean())
        metrics["train_clips"] = seen.num_clips
        # (val - train) / train over frames 3..T: about 0 when nothing was memorised
        metrics["val_train_gap"] = (metrics["loss_fine_late"] - metrics["train_loss_fine_late"]) / metrics[
            "train_loss_fine_late"
        ]
    clips = clip_table(late, val.keys, metrics["headline_frames"])
    return EvalResult(metrics=metrics, clips=clips, model=model, val=val)
