"""The VAE: a diffusers ``AutoencoderKL``, either fitted here (``vae.name: tiny``) or pretrained.

Both kinds are saved with ``save_pretrained`` and loaded with ``AutoencoderKL.from_pretrained``,
so the latents stage runs the same code for a fitted tiny VAE and for ``stabilityai/sd-vae-ft-mse``.
Latents are ``latent_dist.mean * scaling_factor``; for the tiny VAE the scaling factor is set from
the training latents so they have unit standard deviation, as Stable Diffusion's factor does.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from tqdm import tqdm

from fovea.models.loading import load_pretrained
from fovea.params import VaeParams

# A little KL keeps the latent space smooth without blurring the reconstructions.
KL_WEIGHT = 1e-6


def _group_count(channels: list[int]) -> int:
    """The largest GroupNorm group count (at most 32) that divides every block's channels."""
    return max(g for g in (32, 16, 8, 4, 2, 1) if all(c % g == 0 for c in channels))


def tiny_vae(params: VaeParams) -> AutoencoderKL:
    blocks = len(params.block_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        block_out_channels=tuple(params.block_channels),
        layers_per_block=1,
        latent_channels=params.latent_channels,
        norm_num_groups=_group_count(params.block_channels),
    )


def frames_to_pixels(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W] in [-1, 1], the range diffusers VAEs expect."""
    frames = torch.as_tensor(frames)
    return frames.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def pixels_to_frames(pixels: torch.Tensor) -> np.ndarray:
    return pixels.clamp(-1, 1).add(1).mul(127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def fit_tiny_vae(frames: np.ndarray, params: VaeParams, seed: int, device: str | torch.device = "cpu") -> AutoencoderKL:
    """Fit a tiny AutoencoderKL on uint8 frames [N, H, W, 3] (training split only) on ``device``.

    The frames stay uint8 on the host; each batch is converted on its way to the device, so the
    memory held is the frames' own (a float copy of 2,000 clips at 256 px would take 13 GB)."""
    if len(frames) == 0:
        raise ValueError("no training frames to fit the VAE on")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    vae = tiny_vae(params).to(device)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=params.lr)
    frames = torch.as_tensor(frames)
    vae.train()
    progress = tqdm(range(params.steps), desc="fit tiny VAE", unit="step")
    for _ in progress:
        batch = frames_to_pixels(frames[torch.randint(len(frames), (params.batch_size,), generator=generator)])
        batch = batch.to(device)
        posterior = vae.encode(batch).latent_dist
        recon = vae.decode(posterior.sample(generator=generator)).sample
        recon_loss = F.mse_loss(recon, batch)
        loss = recon_loss + KL_WEIGHT * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        progress.set_postfix(mse=f"{recon_loss.item():.4f}")
    vae.eval()
    with torch.no_grad():
        means = torch.cat(
            [vae.encode(frames_to_pixels(chunk).to(device)).latent_dist.mean.cpu() for chunk in frames.split(64)]
        )
    vae.register_to_config(scaling_factor=float(1.0 / means.std().clamp_min(1e-6)))
    return vae.cpu()


def load_vae(name_or_path: str | Path) -> AutoencoderKL:
    vae = load_pretrained(AutoencoderKL.from_pretrained, str(name_or_path), "vae.name", torch_dtype=torch.float32)
    return vae.eval()


class VaeCodec:
    """uint8 frames <-> scaled latents, in batches, without gradients."""

    def __init__(self, vae: AutoencoderKL, batch_size: int = 32, device: str | torch.device = "cpu"):
        self.vae = vae.to(device).eval()
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.scaling_factor = float(vae.config.scaling_factor)

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @torch.no_grad()
    def encode(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] -> float32 [N, C, H/f, W/f] (already times scaling_factor)."""
        chunks = []
        for start in range(0, len(frames), self.batch_size):
            # uint8 to the device first: a quarter of the bytes of float pixels, converted there.
            pixels = frames_to_pixels(torch.as_tensor(frames[start : start + self.batch_size]).to(self.device))
            chunks.append((self.vae.encode(pixels).latent_dist.mean * self.scaling_factor).float().cpu())
        return torch.cat(chunks).numpy()

    @torch.no_grad()
    def decode(self, latents: np.ndarray | torch.Tensor) -> np.ndarray:
        """Scaled latents [N, C, h, w] -> uint8 frames [N, H, W, 3]."""
        latents = torch.as_tensor(latents, dtype=torch.float32)
        chunks = []
        for start in range(0, len(latents), self.batch_size):
            chunk = latents[start : start + self.batch_size].to(self.device) / self.scaling_factor
            chunks.append(pixels_to_frames(self.vae.decode(chunk).sample))
        return np.concatenate(chunks)

    def reconstruction_mse(self, frames: np.ndarray) -> float:
        """Mean squared error of decode(encode(frames)) in [0, 1] pixel units."""
        recon = self.decode(self.encode(frames)).astype(np.float32) / 255.0
        return float(np.mean((recon - frames.astype(np.float32) / 255.0) ** 2))


def psnr(mse: float) -> float:
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)
