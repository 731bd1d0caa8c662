"""Training the FoveatedVLM on cached latents: AdamW, linear warmup, gradient accumulation."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from fovea.data.shards import latents_train_dataset
from fovea.io import atomic_directory
from fovea.models.vlm import FoveatedVLM, VLMConfig
from fovea.params import Params


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class StepLogger(Protocol):
    def log_metric(self, name: str, value: float) -> None: ...
    def next_step(self) -> None: ...


@dataclass
class TrainResult:
    steps: int
    final: dict[str, float]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def latent_shape_from_manifest(latents_dir: Path) -> tuple[int, int, int]:
    manifest = json.loads((latents_dir / "manifest.json").read_text())
    return tuple(manifest["latents_shape"][-3:])


def warmup_lambda(warmup: int):
    """Linear warmup from 1/warmup to 1, then constant."""
    return lambda step: min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0


def _micro_batches(loader, accumulate: int) -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
    iterator = iter(loader)
    while True:
        yield [next(iterator) for _ in range(accumulate)]


def train(params: Params, latents_dir: Path, out_dir: Path, logger: StepLogger | None = None) -> TrainResult:
    """Train ``params.head`` and save the checkpoint to ``out_dir`` (written whole, then renamed)."""
    seed_everything(params.seed)
    config = VLMConfig.from_params(params, latent_shape_from_manifest(latents_dir))
    model = FoveatedVLM.build(config)
    model.train()

    cfg = params.train
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_lambda(cfg.warmup))
    loader = DataLoader(latents_train_dataset(latents_dir / "train", seed=params.seed), batch_size=cfg.batch_size)

    final: dict[str, float] = {}
    progress = tqdm(range(1, cfg.steps + 1), desc=f"train {params.head}", unit="step")
    batches = _micro_batches(loader, cfg.grad_accum)
    for step in progress:
        totals = {"loss": 0.0, "loss_fine": 0.0, "loss_coarse": 0.0}
        for frames, latents in next(batches):
            losses = model(frames, latents, lambda_coarse=cfg.lambda_coarse)
            (losses["loss"] / cfg.grad_accum).backward()
            for key in totals:
                totals[key] += losses[key].item() / cfg.grad_accum
        if not all(math.isfinite(v) for v in totals.values()):
            raise TrainingDiverged(
                f"non-finite loss at step {step}: "
                + ", ".join(f"{k}={v}" for k, v in totals.items())
                + f" (head {params.head}, lr {cfg.lr}); try a lower train.lr"
            )
        torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        lr = scheduler.get_last_lr()[0]
        scheduler.step()

        final = {**totals, "ratio": totals["loss_coarse"] / totals["loss_fine"], "lr": lr}
        progress.set_postfix(fine=f"{final['loss_fine']:.4f}", ratio=f"{final['ratio']:.3f}")
        if logger is not None:
            for name, value in final.items():
                logger.log_metric(name, value)
            logger.next_step()

    with atomic_directory(out_dir) as tmp:
        model.save(tmp, training={"seed": params.seed, "steps": cfg.steps, "final": final})
    return TrainResult(steps=cfg.steps, final=final)
