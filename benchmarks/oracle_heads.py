"""What each head can do on the control task when h is perfect: the upper bound of the control.

Every head is trained alone, as the model trains it (residual: z_prev + head(h, z_prev)), on the
cached control-task latents, with an oracle h in place of the LLM's: one-hots of the target's
cell in frames t-1 and t-2, all that a perfect read of the frames before t can know. Printed per
head, on the val split over frames 3..T: the fine loss with the oracle h, with another clip's
oracle h (shuffled), and copying the previous latent. The gap between copy and oracle is what
h can buy at most; how much of it a head gets in the run's step budget is how fast it learns.

    python benchmarks/oracle_heads.py                      # every head, 300 steps like the default
    python benchmarks/oracle_heads.py --steps 1000 --heads film sfilm
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from fovea.data.shards import iter_latent_samples
from fovea.evaluate import HEADLINE_FIRST_FRAME
from fovea.heads import build_head, head_names
from fovea.params import load_params


def load_split(split_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents [N, T, C, h, w] and the oracle h [N, T, 2 * cells] for predicting frame t
    (index t): the target's cells in frames t-1 and t-2 (zeros before the clip starts)."""
    latents, oracle = [], []
    for sample in iter_latent_samples(split_dir):
        target = sample.metadata.get("target")
        if target is None:
            raise SystemExit(f"{split_dir}: no target track; run `dvc repro` with data.task: control")
        cells_x, cells_y = sample.latents.shape[-1], sample.latents.shape[-2]
        track = np.asarray(target["cells"])[sample.metadata["frame_indices"]]
        index = track[:, 1] * cells_x + track[:, 0]
        one_hot = np.eye(cells_x * cells_y, dtype=np.float32)[index]  # [T, cells]
        steps = len(index)
        h = np.zeros((steps, 2 * cells_x * cells_y), dtype=np.float32)
        for t in range(steps):
            if t >= 1:
                h[t, : cells_x * cells_y] = one_hot[t - 1]
            if t >= 2:
                h[t, cells_x * cells_y :] = one_hot[t - 2]
        latents.append(sample.latents.astype(np.float32))
        oracle.append(h)
    return torch.from_numpy(np.stack(latents)), torch.from_numpy(np.stack(oracle))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latents", type=Path, default=Path("data/latents"))
    parser.add_argument("--heads", nargs="+", default=list(head_names()), choices=head_names())
    parser.add_argument("--steps", type=int, default=None, help="default: train.steps of params.yaml")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    params = load_params()
    steps, batch, lr = args.steps or params.train.steps, params.train.batch_size, params.train.lr
    train_latents, train_h = load_split(args.latents / "train")
    val_latents, val_h = load_split(args.latents / "val")
    first = HEADLINE_FIRST_FRAME - 1
    channels, height, width = train_latents.shape[2:]

    def frames(latents: torch.Tensor, h: torch.Tensor, clips) -> tuple[torch.Tensor, ...]:
        return (
            h[clips, first:].flatten(0, 1),
            latents[clips, first - 1 : -1].flatten(0, 1),
            latents[clips, first:].flatten(0, 1),
        )

    h_val, z_val, target_val = frames(val_latents, val_h, slice(None))
    copy = float((z_val - target_val).pow(2).mean())
    print(
        f"oracle h on the control task: {len(train_latents)} train / {len(val_latents)} val clips, "
        f"{steps} steps of {batch} clips, lr {lr}; val loss over frames {HEADLINE_FIRST_FRAME}..T"
    )
    print("| head  | oracle h | shuffled h | copy   | share of copy loss removed | seconds |")
    for name in args.heads:
        torch.manual_seed(params.seed)
        head = build_head(
            name,
            h_dim=train_h.shape[-1],
            latent_channels=channels,
            height=height,
            width=width,
            **params.head_options(name),
        )
        optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=params.train.weight_decay)
        generator = torch.Generator().manual_seed(params.seed)
        started = time.perf_counter()
        for _ in range(steps):
            h, z_prev, target = frames(
                train_latents, train_h, torch.randint(0, len(train_latents), (batch,), generator=generator)
            )
            loss = (z_prev + head(h, z_prev) - target).pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds = time.perf_counter() - started
        with torch.no_grad():
            oracle = float((z_val + head(h_val, z_val) - target_val).pow(2).mean())
            shuffled_h = h_val.view(len(val_latents), -1, h_val.shape[-1]).roll(1, dims=0).flatten(0, 1)
            shuffled = float((z_val + head(shuffled_h, z_val) - target_val).pow(2).mean())
        print(
            f"| {name:<5} | {oracle:.4f}   | {shuffled:.4f}     | {copy:.4f} | "
            f"{1 - oracle / copy:26.0%} | {seconds:7.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
