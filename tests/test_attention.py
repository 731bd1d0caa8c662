"""The attention picture: the target's track in the sampled frames, and the figure itself."""

import numpy as np
import torch

from fovea.attention import save_attention_figure, target_track
from fovea.data.control import make_control_clip
from fovea.data.latents import LatentSettings, cache_latents
from fovea.data.sources.synthetic import write_synthetic_videos
from fovea.models.vlm import FoveatedVLM, VLMConfig
from fovea.params import DataParams, parse_params


def test_the_track_follows_the_sampled_frames_and_the_frame_size():
    clip = make_control_clip(0, 3, 8, 64, 12)
    metadata = {**clip.metadata, "size": 64, "frame_indices": [1, 3, 5, 7]}
    track = target_track(metadata, frame_size=32)
    expected = np.asarray(clip.metadata["target"]["centres"])[[1, 3, 5, 7]] / 2
    np.testing.assert_allclose(track, expected)
    assert target_track({"sprites": [], "size": 64, "frame_indices": [0]}, 64) is None


def _pool_encoder(frames: np.ndarray) -> np.ndarray:
    """A stand-in VAE: 8x8 mean pooling of the first channel, repeated into 4 channels."""
    n, h, w, _ = frames.shape
    pooled = frames[..., 0].reshape(n, h // 8, 8, w // 8, 8).mean(axis=(2, 4)) / 255.0
    return np.repeat(pooled[:, None], 4, axis=1).astype(np.float32)


def test_the_figure_is_drawn_from_a_latents_split(tmp_path):
    write_synthetic_videos(DataParams(num_clips=6, frames_per_clip=4, size=32, distractors=3), tmp_path / "videos")
    cache_latents(
        videos_dir=tmp_path / "videos",
        out_dir=tmp_path / "latents",
        encode=_pool_encoder,
        settings=LatentSettings(num_frames=4, size=32, val_fraction=0.5, clips_per_shard=4),
    )
    params = parse_params(
        {
            "frames": {"size": 32, "num": 4},
            "vae": {"block_channels": [8, 8, 8, 8]},
            "data": {"size": 32, "frames_per_clip": 4, "distractors": 3},
            "model": {"fine_read": "motion"},
        }
    )
    torch.manual_seed(0)
    model = FoveatedVLM.build(VLMConfig.from_params(params, (4, 4, 4)))
    path = tmp_path / "attention.png"
    save_attention_figure(model, tmp_path / "latents" / "val", 2, path)
    assert path.read_bytes().startswith(b"\x89PNG") and path.stat().st_size > 5000
    coarse, fine = model.attention_maps(torch.zeros(1, 4, 32, 32, 3, dtype=torch.uint8))
    assert coarse.shape == fine.shape == (1, 4, 16)
