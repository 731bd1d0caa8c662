"""The ``dino`` stage's library side: the frozen encoder's patch features of every cached frame.

With ``target: dino`` the model predicts the next frame's DINO patch features instead of its VAE
latent. The features are the final-layer patch tokens (after DINOv2's last layer norm, CLS and any
register tokens dropped) of a DINOv2 built from ``model.encoder``: the pretrained model is loaded
as it is; the ``tiny`` one is initialised from ``data.seed`` (a data-side seed, so a sweep over
training seeds shares one set of targets; the model's own tiny encoder is initialised from the
training seed and is a different random network). Shape per clip: ``[T, D, H/p, W/p]`` (D the
encoder width, p its patch size): 384 x 16 x 16 for dinov2-small at 224 px, 64 x 8 x 8 for the
tiny default at 64 px.

Features are standardised per channel with the mean and std of the first ``STATS_CLIPS`` training
clips (stored in the manifest), so the MSE is on the scale of unit-variance targets whatever the
encoder, like the VAE latents times their scaling factor.

The output mirrors ``data/latents``: the same ``{train,val}/shard-*.tar`` names, the same clips
in the same order, every member copied except ``latents.npy``, which holds the normalised
features (float16). Every reader of the latents shards reads it unchanged. With ``target: vae``
the directory holds only a manifest saying so.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import webdataset as wds
from tqdm import tqdm

from fovea.data.manifest import SPLITS, LatentCacheError
from fovea.data.shards import decode_npy, encode_npy, iter_samples, list_shards
from fovea.data.targets import MANIFEST
from fovea.io import atomic_directory
from fovea.models.encoder import IMAGENET_MEAN, IMAGENET_STD, load_dinov2, tiny_dinov2_config

if TYPE_CHECKING:
    from fovea.params import Params

# Training clips whose features give the per-channel mean and std (in shard order).
STATS_CLIPS = 256
# Clips per encoder call.
BATCH_CLIPS = 16

Extractor = Callable[[np.ndarray], np.ndarray]  # uint8 [N, H, W, 3] -> float32 [N, D, h, w]


@dataclass(frozen=True)
class DinoSettings:
    """The frozen encoder: a pretrained name or path, or ``tiny`` with its sizes and seed."""

    target: str
    encoder: str
    frame_size: int
    seed: int
    tiny: dict[str, int]

    @classmethod
    def from_params(cls, params: Params) -> DinoSettings:
        if params.target != "dino":
            return cls(target=params.target, encoder="", frame_size=0, seed=0, tiny={})
        tiny = params.model.tiny
        return cls(
            target="dino",
            encoder=params.model.encoder,
            frame_size=params.frames.size,
            seed=params.data.seed,
            tiny={
                "hidden_size": tiny.encoder_dim,
                "layers": tiny.encoder_layers,
                "heads": tiny.attention_heads,
                "patch_size": tiny.patch_size,
            },
        )

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"encoder": self.encoder}
        if self.encoder == "tiny":
            described.update(seed=self.seed, tiny=self.tiny)
        return described


def frozen_dinov2(settings: DinoSettings) -> torch.nn.Module:
    """The DINOv2 whose features are the targets: weights fixed (seeded when tiny), eval mode."""
    config = tiny_dinov2_config(image_size=settings.frame_size, **settings.tiny) if settings.encoder == "tiny" else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = load_dinov2(settings.encoder, config)
    return model.eval().requires_grad_(False)


@torch.no_grad()
def patch_features(dinov2: torch.nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames [N, H, W, 3] -> final-layer patch tokens as maps [N, D, H/p, W/p] (float32).

    Pixels are ImageNet-normalised as the model's encoder reads them (``DeepQueryEncoder``)."""
    patch = dinov2.config.patch_size
    rows, cols = frames.shape[1] // patch, frames.shape[2] // patch
    pixels = frames.permute(0, 3, 1, 2).float().div(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=pixels.device).view(1, 3, 1, 1)
    hidden = dinov2(pixel_values=(pixels - mean) / std).last_hidden_state.float()
    tokens = hidden[:, -rows * cols :]  # CLS (and registers, if any) come first
    return tokens.transpose(1, 2).reshape(len(frames), -1, rows, cols)


def make_extractor(dinov2: torch.nn.Module, device: str | torch.device = "cpu") -> Extractor:
    dinov2 = dinov2.to(device)

    def extract(frames: np.ndarray) -> np.ndarray:
        return patch_features(dinov2, torch.from_numpy(frames).to(device)).cpu().numpy()

    return extract


def _clip_batches(split_dir: Path, shard: Path | None = None) -> Iterator[list[dict[str, Any]]]:
    """Samples of one shard (or of every shard of the split), BATCH_CLIPS at a time."""
    samples = iter_samples(split_dir) if shard is None else wds.tarfile_to_samples()([{"url": str(shard)}])
    batch: list[dict[str, Any]] = []
    for sample in samples:
        batch.append(sample)
        if len(batch) == BATCH_CLIPS:
            yield batch
            batch = []
    if batch:
        yield batch


def _features(extract: Extractor, batch: list[dict[str, Any]]) -> np.ndarray:
    """Features of every frame of a batch of clips: [clips, T, D, h, w]."""
    frames = [decode_npy(sample["frames.npy"]) for sample in batch]
    steps = {len(clip) for clip in frames}
    if len(steps) != 1:
        raise LatentCacheError(f"clips of one split have different frame counts: {sorted(steps)}")
    features = extract(np.concatenate(frames))
    return features.reshape(len(batch), steps.pop(), *features.shape[1:])


def feature_stats(extract: Extractor, train_dir: Path, clips: int = STATS_CLIPS) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std [D] (float64) over every frame and position of the first
    ``clips`` training clips."""
    total = total_sq = None
    count = seen = 0
    for batch in _clip_batches(train_dir):
        batch = batch[: clips - seen]
        features = _features(extract, batch).astype(np.float64)
        channels_last = np.moveaxis(features, 2, -1).reshape(-1, features.shape[2])
        total = channels_last.sum(0) if total is None else total + channels_last.sum(0)
        total_sq = (channels_last**2).sum(0) if total_sq is None else total_sq + (channels_last**2).sum(0)
        count += len(channels_last)
        seen += len(batch)
        if seen >= clips:
            break
    if not count:
        raise LatentCacheError(f"no training clips in {train_dir} to standardise the DINO features with")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return mean, np.maximum(std, 1e-6)


def _write_split(extract: Extractor, src: Path, dst: Path, mean: np.ndarray, std: np.ndarray) -> int:
    """Mirror every shard of ``src`` into ``dst`` with normalised features as ``latents.npy``."""
    dst.mkdir(parents=True)
    scale = (1.0 / std)[None, :, None, None]
    shift = mean[None, :, None, None]
    written = 0
    for shard in tqdm(list_shards(src), desc=f"dino {src.name}", unit="shard"):
        with open(dst / shard.name, "wb") as stream:
            writer = wds.TarWriter(stream, encoder=False, mtime=0)
            for batch in _clip_batches(src, shard):
                for sample, features in zip(batch, _features(extract, batch), strict=True):
                    normalised = ((features - shift) * scale).astype(np.float16)
                    if not np.isfinite(normalised).all():
                        raise LatentCacheError(f"{sample['__key__']}: DINO features beyond float16's range")
                    files = {name: value for name, value in sample.items() if not name.startswith("__")}
                    writer.write({"__key__": sample["__key__"], **files, "latents.npy": encode_npy(normalised)})
                    written += 1
            writer.close()
    return written


def cache_dino(latents_dir: Path, out_dir: Path, settings: DinoSettings, extract: Extractor | None = None) -> dict:
    """Write ``out_dir`` (whole, then renamed) and return its manifest.

    ``target: vae``: only a manifest saying so. ``dino``: the features of every clip of
    ``latents_dir`` (``extract``: default the frozen DINOv2 of ``settings`` on the CPU)."""
    latents_manifest_path = Path(latents_dir) / MANIFEST
    if not latents_manifest_path.is_file():
        raise LatentCacheError(f"no latents: {latents_manifest_path} is missing (run the latents stage first)")
    with atomic_directory(out_dir) as temp:
        if settings.target != "dino":
            manifest: dict[str, Any] = {"target": settings.target, "note": "DINO features are cached for target: dino"}
        else:
            extract = extract or make_extractor(frozen_dinov2(settings))
            mean, std = feature_stats(extract, Path(latents_dir) / "train")
            counts = {
                split: _write_split(extract, Path(latents_dir) / split, temp / split, mean, std) for split in SPLITS
            }
            first = next(_clip_batches(temp / "train"))[0]
            manifest = json.loads(latents_manifest_path.read_text())
            manifest.pop("latents_stats", None)  # the VAE latents' statistics
            manifest.update(
                target="dino",
                latents_shape=list(decode_npy(first["latents.npy"]).shape),
                latents_dtype="float16",
                clips=counts,
                dino={
                    **settings.describe(),
                    "features": "final-layer patch tokens (after the last layer norm), [T, D, H/p, W/p]",
                    "normalisation": f"per channel: (x - mean) / std over the first {STATS_CLIPS} training clips",
                    "mean": [float(v) for v in mean],
                    "std": [float(v) for v in std],
                },
            )
        (temp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
