"""The tiny VAE's fit: on the device it is given, from uint8 frames, with a unit-scale latent."""

import numpy as np
import torch

from fovea.data.control import make_control_clip
from fovea.models.vae import VaeCodec, fit_tiny_vae, tiny_vae
from fovea.params import VaeParams


def _frames(clips: int) -> np.ndarray:
    return np.concatenate([make_control_clip(0, i, 4, 32, 4).frames for i in range(clips)])


def test_fit_learns_from_uint8_frames_and_scales_latents_to_unit_std():
    params = VaeParams(block_channels=[8, 8], latent_channels=2, steps=60, batch_size=8, lr=3e-3)
    train, val = _frames(8), _frames(10)[32:]
    torch.manual_seed(0)
    before = VaeCodec(tiny_vae(params)).reconstruction_mse(val)
    vae = fit_tiny_vae(train, params, seed=0, device="cpu")
    after = VaeCodec(vae).reconstruction_mse(val)
    assert after < 0.5 * before
    latents = VaeCodec(vae).encode(train)
    assert abs(float(np.std(latents)) - 1.0) < 0.05
    assert next(vae.parameters()).device.type == "cpu"  # saved and reloaded on any machine


def test_fit_is_the_same_for_the_same_seed():
    params = VaeParams(block_channels=[8, 8], latent_channels=2, steps=5, batch_size=4)
    frames = _frames(2)
    first, second = (fit_tiny_vae(frames, params, seed=3) for _ in range(2))
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert first.config.scaling_factor == second.config.scaling_factor
