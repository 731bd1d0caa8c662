"""Pictures: decoded sample predictions, the ratio per head with its interval, and where the
coarse and fine queries attend."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; CI and servers have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fovea.io import atomic_path  # noqa: E402

ROWS = ("target", "fine", "coarse", "copy")


def save_samples_image(
    decode, target: np.ndarray, fine: np.ndarray, coarse: np.ndarray, path: Path, title: str = ""
) -> None:
    """Decoded frames 2..T of a few clips: target, fine and coarse predictions, copy baseline.

    ``decode`` maps latents [N, C, h, w] to uint8 frames [N, H, W, 3]; the arrays are latents
    [clips, T, C, h, w]. Frame 1 is left out: its copy baseline does not exist.
    """
    clips, steps = target.shape[:2]
    rows = {
        "target": target[:, 1:],
        "fine": fine[:, 1:],
        "coarse": coarse[:, 1:],
        "copy": target[:, :-1],  # predicting frame t as frame t-1
    }
    decoded = {}
    for name, latents in rows.items():
        frames = decode(latents.reshape(-1, *latents.shape[2:]))
        decoded[name] = frames.reshape(clips, steps - 1, *frames.shape[1:])
    figure, axes = plt.subplots(
        clips * len(ROWS), steps - 1, figsize=(1.3 * (steps - 1), 1.3 * clips * len(ROWS)), squeeze=False
    )
    for clip in range(clips):
        for r, name in enumerate(ROWS):
            for t in range(steps - 1):
                axis = axes[clip * len(ROWS) + r, t]
                axis.imshow(decoded[name][clip, t])
                axis.set_xticks([])
                axis.set_yticks([])
                if t == 0:
                    axis.set_ylabel(f"clip {clip}\n{name}" if r == 0 else name, fontsize=7)
                if clip == 0 and r == 0:
                    axis.set_title(f"frame {t + 2}", fontsize=7)
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    _save(figure, path)


def pca_decoder(reference: np.ndarray):
    """A ``decode`` for :func:`save_samples_image` when the latents are feature maps (target: dino):
    each position's features projected on the first 3 principal components of ``reference``
    [..., D, h, w] and shown as RGB, scaled by the reference's 1st-99th percentiles."""
    channels = reference.shape[-3]
    points = np.moveaxis(reference.reshape(-1, *reference.shape[-3:]), 1, -1).reshape(-1, channels).astype(np.float64)
    mean = points.mean(axis=0)
    components = np.linalg.svd(points - mean, full_matrices=False)[2][:3]  # [<=3, D]
    projected = (points - mean) @ components.T
    low, high = np.percentile(projected, 1, axis=0), np.percentile(projected, 99, axis=0)

    def decode(features: np.ndarray) -> np.ndarray:
        maps = np.moveaxis(features.astype(np.float64), 1, -1)  # [N, h, w, D]
        rgb = ((maps - mean) @ components.T - low) / np.maximum(high - low, 1e-12)
        rgb = np.concatenate([rgb, np.zeros((*rgb.shape[:-1], 3 - rgb.shape[-1]))], axis=-1)  # fewer than 3 channels
        return (np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)

    return decode


def save_ratio_plot(
    labels: list[str],
    means: list[float],
    lows: list[float],
    highs: list[float],
    path: Path,
    groups: list[str] | None = None,
) -> None:
    """Ratio per head with interval bars, one colour per group (e.g. the task)."""
    groups = groups or [""] * len(labels)
    figure, axis = plt.subplots(figsize=(1.6 + 0.9 * len(labels), 3.8))
    positions = np.arange(len(labels))
    for index, group in enumerate(dict.fromkeys(groups)):
        chosen = [i for i, g in enumerate(groups) if g == group]
        mean = np.asarray(means)[chosen]
        errors = np.array([mean - np.asarray(lows)[chosen], np.asarray(highs)[chosen] - mean])
        axis.errorbar(positions[chosen], mean, yerr=errors, fmt="o", capsize=6, color=f"C{index}", label=group or None)
    axis.axhline(1.0, color="grey", linewidth=1, linestyle=":", label="ratio = 1 (looking does not help)")
    axis.set_xticks(positions, labels, rotation=30, ha="right", fontsize=8)
    axis.set_ylabel("ratio = loss_coarse / loss_fine")
    axis.set_title("Fine/coarse ratio per head (95% interval)")
    axis.legend(fontsize=7, loc="best")
    figure.tight_layout()
    _save(figure, path)


def save_attention_image(
    frames: np.ndarray, coarse: np.ndarray, fine: np.ndarray, targets: np.ndarray | None, path: Path, title: str = ""
) -> None:
    """Where the coarse and the fine queries attend, over the frames of a few clips.

    ``frames`` uint8 [clips, T, H, W, 3]; ``coarse``/``fine`` attention [clips, T, P] over a
    square grid of P patches; ``targets`` [clips, T, 2] pixel centres (x, y) of the target, drawn
    as circles (None: no marks). Each map is scaled to its own maximum.
    """
    clips, steps, height, width = frames.shape[:4]
    grid = int(round(coarse.shape[-1] ** 0.5))
    figure, axes = plt.subplots(2 * clips, steps, figsize=(1.35 * steps, 1.4 * 2 * clips), squeeze=False)
    for clip in range(clips):
        for row, (name, maps) in enumerate((("coarse", coarse), ("fine", fine))):
            for t in range(steps):
                axis = axes[2 * clip + row, t]
                axis.imshow(frames[clip, t], extent=(0, width, height, 0))
                weights = maps[clip, t].reshape(grid, grid)
                axis.imshow(
                    weights / max(float(weights.max()), 1e-12),
                    cmap="magma",
                    alpha=0.6,
                    vmin=0,
                    vmax=1,
                    extent=(0, width, height, 0),
                    interpolation="nearest",
                )
                if targets is not None:
                    x, y = targets[clip, t]
                    axis.plot(
                        x,
                        y,
                        marker="o",
                        markersize=9,
                        markerfacecolor="none",
                        markeredgecolor="cyan",
                        markeredgewidth=1.2,
                    )
                axis.set_xticks([])
                axis.set_yticks([])
                if t == 0:
                    axis.set_ylabel(f"clip {clip}\n{name}", fontsize=7)
                if clip == 0 and row == 0:
                    axis.set_title(f"frame {t + 1}", fontsize=7)
    figure.suptitle(
        title or "attention of the coarse and fine queries (last encoder layer); circle: target", fontsize=8
    )
    figure.tight_layout()
    _save(figure, path)


def _save(figure, path: Path) -> None:
    try:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, dpi=110)
    finally:
        plt.close(figure)
