"""Pictures: decoded sample predictions, and the ratio per head with its interval."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; CI and servers have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROWS = ("target", "fine", "coarse", "copy")


def save_samples_image(decode, target: np.ndarray, fine: np.ndarray, coarse: np.ndarray, path: Path,
                       title: str = "") -> None:
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
    figure, axes = plt.subplots(clips * len(ROWS), steps - 1, figsize=(1.3 * (steps - 1), 1.3 * clips * len(ROWS)),
                                squeeze=False)
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


def save_ratio_plot(heads: list[str], means: list[float], lows: list[float], highs: list[float], path: Path,
                    thresholds: dict[str, float]) -> None:
    """Mean ratio per head with interval bars and the proposal's thresholds as lines."""
    figure, axis = plt.subplots(figsize=(1.2 + 1.1 * len(heads), 3.6))
    positions = np.arange(len(heads))
    errors = np.array([np.subtract(means, lows), np.subtract(highs, means)])
    axis.errorbar(positions, means, yerr=errors, fmt="o", capsize=6, color="tab:blue")
    axis.axhline(1.0, color="grey", linewidth=1, linestyle=":", label="ratio = 1 (looking does not help)")
    for label, value in thresholds.items():
        axis.axhline(value, linewidth=1, linestyle="--", label=f"{label} ({value})",
                     color="tab:orange" if value < 1.2 else "tab:red")
    axis.set_xticks(positions, heads)
    axis.set_ylabel("ratio = loss_coarse / loss_fine")
    axis.set_title("Fine/coarse ratio per head (95% interval)")
    axis.legend(fontsize=7, loc="best")
    figure.tight_layout()
    _save(figure, path)


def _save(figure, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    tmp.replace(path)
