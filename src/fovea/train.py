"""Training the FoveatedVLM on cached latents: AdamW, linear warmup, gradient accumulation.

Runs the same under plain ``python`` and under ``accelerate launch`` (DDP over GPUs, nodes or,
for tests, CPU processes with gloo): gradients are averaged across ranks, each rank reads its
own shuffled stream of the training shards, and only the main process logs and saves.
"""

from __future__ import annotations

import json
import math
import random
import time
import warnings
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from tqdm import tqdm
from transformers import PreTrainedTokenizerBase

from fovea.compute import make_accelerator
from fovea.data.shards import latents_train_dataset
from fovea.errors import FoveaUserError
from fovea.io import atomic_directory
from fovea.models.init import init_from_checkpoint
from fovea.models.vlm import TOKENIZER_DIR, FoveatedVLM, VLMConfig
from fovea.params import Params, TrainParams
from fovea.tokenizer import encode_captions, load_tokenizer

LOSS_NAMES = ("loss", "loss_fine", "loss_coarse")
# Beside them with the joint objective (caption loss of each pass; the fine one trains).
CAPTION_LOSS_NAMES = ("caption_loss_fine", "caption_loss_coarse")
# The original's measurement: the mean training-batch ratio over the last this many steps.
RATIO_WINDOW = 100


class TrainingDiverged(FoveaUserError, RuntimeError):
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


def loss_names(cfg: TrainParams) -> tuple[str, ...]:
    """The losses a step reports: the caption losses too with the joint objective."""
    return LOSS_NAMES + (CAPTION_LOSS_NAMES if cfg.objective == "joint" else ())


def training_loader(latents_dir: Path, params: Params, rank: int) -> DataLoader:
    # Each rank shuffles the shards with its own seed: statistically independent streams,
    # identical across reruns of the same (seed, rank, num_workers). Captions only for joint.
    dataset = latents_train_dataset(
        latents_dir / "train", seed=params.seed + 7919 * rank, captions=params.train.objective == "joint"
    )
    workers = params.compute.num_workers
    return DataLoader(
        dataset,
        batch_size=params.train.batch_size,
        num_workers=workers,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        pin_memory=torch.cuda.is_available(),
    )


def make_optimizer(parameters: list[torch.nn.Parameter], cfg: TrainParams, fused: bool) -> torch.optim.AdamW:
    """AdamW over ``parameters``. ``fused`` (on CUDA): one kernel updates every parameter, where
    the default launches several per parameter or per group of them."""
    return torch.optim.AdamW(parameters, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True if fused else None)


def accumulate_gradients(
    model: torch.nn.Module,
    batches: Iterator[tuple],
    accelerator: Accelerator,
    cfg: TrainParams,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> torch.Tensor:
    """Forward and backward over ``cfg.grad_accum`` micro-batches drawn from ``batches``: the
    gradients are those of the mean loss over them. Returns the mean losses (``loss_names``),
    still on the device (the step's one host transfer is the caller's, for logging).

    A batch is ``(frames, latents)``, or ``(frames, latents, captions)`` for the joint objective,
    whose captions ``tokenizer`` encodes."""
    if accelerator.gradient_accumulation_steps != cfg.grad_accum:
        # accelerate divides each micro-batch's loss by its own count and syncs on that count.
        raise ValueError(
            f"the accelerator accumulates {accelerator.gradient_accumulation_steps} micro-batches, "
            f"train.grad_accum is {cfg.grad_accum}"
        )
    joint = cfg.objective == "joint"
    if joint and tokenizer is None:
        raise ValueError("the joint objective needs a tokenizer for the captions")
    device = accelerator.device
    names = loss_names(cfg)
    totals = torch.zeros(len(names), device=device)
    for _ in range(cfg.grad_accum):
        batch = next(batches)
        frames, latents = (t.to(device, non_blocking=True) for t in batch[:2])
        extra = {}
        if joint:
            ids, mask = encode_captions(tokenizer, list(batch[2]))
            extra = {"caption_ids": ids.to(device), "caption_mask": mask.to(device), "lambda_recon": cfg.lambda_recon}
        with accelerator.accumulate(model):
            with accelerator.autocast():
                losses = model(frames, latents, lambda_coarse=cfg.lambda_coarse, detach_h=cfg.detach_h, **extra)
            accelerator.backward(losses["loss"])
        totals += torch.stack([losses[name].detach().float() for name in names]) / cfg.grad_accum
    return totals


def optimizer_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    trainable: list[torch.nn.Parameter],
    batches: Iterator[tuple],
    accelerator: Accelerator,
    cfg: TrainParams,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> torch.Tensor:
    """One optimizer step: gradients over ``cfg.grad_accum`` micro-batches, clipped, applied.
    Returns the mean losses on the device (see ``accumulate_gradients``)."""
    totals = accumulate_gradients(model, batches, accelerator, cfg, tokenizer)
    apply_gradients(optimizer, trainable, accelerator, cfg)
    return totals


def apply_gradients(
    optimizer: torch.optim.Optimizer, trainable: list[torch.nn.Parameter], accelerator: Accelerator, cfg: TrainParams
) -> None:
    """Clip the accumulated gradients, update the weights once, clear the gradients. The last
    micro-batch synced the gradients (across processes too)."""
    accelerator.clip_grad_norm_(trainable, cfg.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def train(
    params: Params,
    latents_dir: Path,
    out_dir: Path,
    logger: StepLogger | None = None,
    accelerator: Accelerator | None = None,
    batches: Iterator[tuple] | None = None,
    tokenizer_dir: Path | None = None,
) -> TrainResult:
    """Train ``params.head`` and save the checkpoint to ``out_dir`` (written whole, then renamed).

    ``batches`` replaces the shard reader (benchmarks feed batches already in memory).
    ``tokenizer_dir`` (the tokenizer stage's output): the tiny LLM's vocabulary is its size, the
    joint objective encodes captions with it (required then), and it is saved in the checkpoint.
    """
    cfg = params.train
    accelerator = accelerator or make_accelerator(params.compute, cfg.grad_accum)
    tokenizer = load_tokenizer(tokenizer_dir) if tokenizer_dir is not None else None
    if cfg.objective == "joint" and tokenizer is None:
        raise FoveaUserError("train.objective joint needs the caption tokenizer (the tokenizer stage's output)")
    seed_everything(params.seed)  # the same initial weights on every rank
    vocab = {"vocab_size": len(tokenizer)} if tokenizer is not None else {}
    config = VLMConfig.from_params(params, latent_shape_from_manifest(latents_dir), **vocab)
    model = FoveatedVLM.build(config)
    if tokenizer is not None and len(tokenizer) > model.llm.get_input_embeddings().num_embeddings:
        raise FoveaUserError(
            f"the tokenizer has {len(tokenizer)} tokens, the LLM {params.model.llm!r} embeds only "
            f"{model.llm.get_input_embeddings().num_embeddings}: rerun the tokenizer stage for this model.llm"
        )
    # Before the optimizer, compile and prepare: they wrap or rename the parameters.
    init_report = init_from_checkpoint(model, Path(cfg.init_from)) if cfg.init_from else None
    if init_report and accelerator.is_main_process:
        print(
            f"train: init from {init_report['checkpoint']}: {init_report['loaded']} loaded, "
            f"{init_report['skipped']} skipped {init_report['skipped_by_reason']}"
            + (f" ({init_report['reason']})" if init_report["reason"] else "")
        )
    if cfg.objective == "joint":
        # The caption loss trains the LLM, encoder and queries (and the tied token table); with
        # detach_h only the reconstruction loss stops at h. Nothing is frozen here: every parameter
        # gets a gradient from the total loss (the head and z_init from its reconstruction term,
        # the rest from the caption loss), so DDP needs no unused-parameter search.
        model.train_token_embeddings()
        if params.model.llm != "tiny" and not getattr(model.llm.config, "tie_word_embeddings", True):
            warnings.warn(
                f"{params.model.llm!r} has an output head of its own (tie_word_embeddings false): the caption "
                "loss scores captions with its input embeddings instead (README: Joint objective)",
                stacklevel=1,
            )
    elif cfg.detach_h:
        model.train_only_head()
    model.train()

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(trainable, cfg, fused=accelerator.device.type == "cuda")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_lambda(cfg.warmup))
    if params.compute.compile:
        model = torch.compile(model)
    model, optimizer = accelerator.prepare(model, optimizer)
    if batches is None:
        batches = iter(training_loader(latents_dir, params, accelerator.process_index))

    final: dict[str, float] = {}
    recent_ratios: deque[float] = deque(maxlen=RATIO_WINDOW)
    recent_caption_ratios: deque[float] = deque(maxlen=RATIO_WINDOW)
    started = time.perf_counter()
    progress = tqdm(
        range(1, cfg.steps + 1), desc=f"train {params.head}", unit="step", disable=not accelerator.is_main_process
    )
    for step in progress:
        totals = optimizer_step(model, optimizer, trainable, batches, accelerator, cfg, tokenizer)
        lr = scheduler.get_last_lr()[0]
        scheduler.step()

        values = dict(zip(loss_names(cfg), accelerator.reduce(totals, reduction="mean").tolist(), strict=True))
        if not all(math.isfinite(v) for v in values.values()):
            raise TrainingDiverged(
                f"non-finite loss at step {step}: "
                + ", ".join(f"{k}={v}" for k, v in values.items())
                + f" (head {params.head}, lr {cfg.lr}); try a lower train.lr"
            )
        final = {**values, "ratio": values["loss_coarse"] / values["loss_fine"], "lr": lr}
        recent_ratios.append(final["ratio"])
        if "caption_loss_fine" in values:
            final["caption_ratio"] = values["caption_loss_coarse"] / values["caption_loss_fine"]
            recent_caption_ratios.append(final["caption_ratio"])
        progress.set_postfix(fine=f"{final['loss_fine']:.4f}", ratio=f"{final['ratio']:.3f}")
        if logger is not None and accelerator.is_main_process:
            for name, value in final.items():
                logger.log_metric(name, value)
            logger.next_step()

    accelerator.wait_for_everyone()
    seconds = time.perf_counter() - started
    if torch.cuda.is_available() and accelerator.device.type == "cuda":
        final["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated(accelerator.device) / 2**30
    if accelerator.is_main_process:
        with atomic_directory(out_dir) as tmp:
            if tokenizer is not None:  # evaluate reads the captions with the model's own tokenizer
                tokenizer.save_pretrained(str(tmp / TOKENIZER_DIR))
            accelerator.unwrap_model(model, keep_torch_compile=False).save(
                tmp,
                training={
                    "seed": params.seed,
                    "steps": cfg.steps,
                    "processes": accelerator.num_processes,
                    "steps_per_second": cfg.steps / seconds,
                    "init_from": init_report,
                    "protocol": cfg.protocol,
                    "objective": cfg.objective,
                    "lambda_recon": cfg.lambda_recon,
                    "train_ratio_last100": float(np.mean(recent_ratios)),
                    "train_caption_ratio_last100": (
                        float(np.mean(recent_caption_ratios)) if recent_caption_ratios else None
                    ),
                    "final": final,
                },
            )
    accelerator.wait_for_everyone()
    return TrainResult(steps=cfg.steps, final=final)
