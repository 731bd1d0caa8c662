"""Operator calls and FLOPs per optimizer step at the paper's sizes, before and after the step
was optimised, at the same effective batch (the paper's 8 clips per optimizer step).

    python benchmarks/step_ops.py [--head film] [--before-revision REV]

before: the code at ``--before-revision`` (the last commit with the plain step), run from that
        commit's ``src/`` in a subprocess: 4 accumulated micro-batches of 2 clips, the training
        loop of that commit (repeated below as ``plain_step``), default AdamW.
after:  this checkout: one micro-batch of 8 clips (``fovea.train.optimizer_step``) with the
        CUDA path's fused AdamW (torch runs it on CPU too).

On CPU, in fp32, with random weights in the real architectures (DINOv2-small frozen, SmolLM2-135M,
SD-VAE latents 4x32x32 of 8 frames at 256x256) and random clips, the paper preset's settings
otherwise. Each side runs one warm-up step, whose FLOPs torch.utils.flop_counter counts, then
one step under torch.profiler. "events" are all the profiler's CPU events (operators, the
operators they call, autograd nodes); "top-level" are those no other event called: the calls
that Python and the autograd engine make, each paying the dispatch overhead that bounds a step
at these sizes on a GPU. On CPU, default AdamW loops over the parameters in Python; on CUDA it
defaults to multi-tensor (foreach) kernels, so the "before" optimizer share is larger here than
on a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEFORE_REVISION = "cf1bff407687b35502337bd18dc7b7cdbd9c0851"  # the last commit with the plain step
CLIPS_PER_STEP = 8  # the paper's effective batch
LATENT = (4, 32, 32)  # SD-VAE latents of a 256x256 frame
SIDES = {"before": (2, 4), "after": (8, 1)}  # clips per micro-batch, micro-batches per step


def plain_step(model, optimizer, trainable, batches, accelerator, cfg) -> None:
    """The training loop's step at BEFORE_REVISION, line for line."""
    import torch

    totals = torch.zeros(3, device=accelerator.device)
    for _ in range(cfg.grad_accum):
        frames, latents = next(batches)
        with accelerator.accumulate(model), accelerator.autocast():
            losses = model(frames, latents, lambda_coarse=cfg.lambda_coarse, detach_h=cfg.detach_h)
            accelerator.backward(losses["loss"])
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(trainable, cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        totals += torch.stack([losses[name].detach().float() for name in ("loss", "loss_fine", "loss_coarse")])


def micro_batches(frames, latents, size: int) -> Iterator:
    while True:
        yield from zip(frames.split(size), latents.split(size), strict=False)


def measure(side: str, head: str, root: Path) -> dict:
    """One side's counts, with the ``fovea`` package, params.yaml and presets under ``root``."""
    sys.path.insert(0, str(root / "src"))
    import torch
    import yaml
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModel, Dinov2Model

    sys.path.insert(0, str(REPO / "tests"))
    from model_fixtures import dinov2_small_config, smollm2_135m_config

    import fovea
    from fovea.compute import make_accelerator
    from fovea.models.vlm import FoveatedVLM, VLMConfig
    from fovea.params import parse_params
    from fovea.presets import merge_preset

    assert Path(fovea.__file__).resolve().is_relative_to(root.resolve()), "another fovea was imported"
    raw = yaml.safe_load(
        merge_preset((root / "params.yaml").read_text(), (root / "presets" / "paper.yaml").read_text()).text
    )
    raw["head"], raw["compute"]["device"] = head, "cpu"
    batch_size, grad_accum = SIDES[side]
    raw["train"].update(batch_size=batch_size, grad_accum=grad_accum)
    params = parse_params(raw)
    cfg = params.train

    torch.manual_seed(params.seed)
    model = FoveatedVLM(
        VLMConfig.from_params(params, LATENT),
        Dinov2Model(dinov2_small_config()),
        AutoModel.from_config(smollm2_135m_config()),
    )
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    generator = torch.Generator().manual_seed(params.seed)
    size = params.frames.size
    frames = torch.randint(
        0, 256, (CLIPS_PER_STEP, params.frames.num, size, size, 3), dtype=torch.uint8, generator=generator
    )
    latents = torch.randn(CLIPS_PER_STEP, params.frames.num, *LATENT, generator=generator)
    batches = micro_batches(frames, latents, batch_size)
    accelerator = make_accelerator(params.compute, grad_accum)

    if side == "before":
        optimizer = accelerator.prepare(torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay))

        def step() -> None:
            plain_step(model, optimizer, trainable, batches, accelerator, cfg)
    else:
        from fovea.train import make_optimizer, optimizer_step

        optimizer = accelerator.prepare(make_optimizer(trainable, cfg, fused=True))

        def step() -> None:
            optimizer_step(model, optimizer, trainable, batches, accelerator, cfg)

    with FlopCounterMode(display=False) as flops:  # the warm-up step: optimizer state, allocator
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = prof.events()
    return {
        "events": len(events),
        "top_level": sum(1 for event in events if event.cpu_parent is None),
        "flops": flops.get_total_flops(),
        "trainable": sum(p.numel() for p in trainable),
        "tensors": len(trainable),
        "torch": torch.__version__,
        "frozen_encoder": params.model.freeze_encoder,
    }


def measure_before(revision: str, head: str) -> dict:
    """The before side from ``revision``'s code and params, in a subprocess that imports them."""
    archive = subprocess.run(
        ["git", "archive", revision, "src", "params.yaml", "presets"], cwd=REPO, check=True, capture_output=True
    ).stdout
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        env = {**os.environ, "PYTHONPATH": str(Path(tmp) / "src")}
        result = subprocess.run(
            [sys.executable, __file__, "--side", "before", "--head", head, "--root", tmp],
            env=env,
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--head", default="film")
    parser.add_argument("--before-revision", default=BEFORE_REVISION)
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)  # one side only, as JSON
    parser.add_argument("--root", type=Path, default=REPO, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(measure(args.side, args.head, args.root)))
        return

    before = measure_before(args.before_revision, args.head)
    after = measure("after", args.head, REPO)
    print(
        f"head {args.head}, {CLIPS_PER_STEP} clips x 8 frames of 256px per optimizer step, frozen encoder: "
        f"{after['frozen_encoder']}, {after['trainable']:,} trainable parameters in {after['tensors']} tensors, "
        f"cpu fp32, torch {after['torch']}; before = {args.before_revision[:7]}"
    )
    rows = {"before: 2 clips x 4 micro-batches, AdamW": before, "after:  8 clips x 1 micro-batch, fused AdamW": after}
    width = max(map(len, rows))
    print(f"{'per optimizer step':<{width}} | {'events':>8} | {'top-level':>9} | {'TFLOP':>6}")
    for name, counts in rows.items():
        print(f"{name:<{width}} | {counts['events']:>8,} | {counts['top_level']:>9,} | {counts['flops'] / 1e12:>6.3f}")
    print(
        f"after / before: events {after['events'] / before['events']:.3f}, "
        f"top-level {after['top_level'] / before['top_level']:.3f} (target <= 0.25), "
        f"FLOPs {after['flops'] / before['flops']:.3f}"
    )


if __name__ == "__main__":
    main()
