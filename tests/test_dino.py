"""target: dino: DINO-target shapes through every head, the dino stage's feature cache (shape, keys,
alignment with the latents shards, normalisation), the param's validation and the picture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fovea.data.dino import DinoSettings, cache_dino, frozen_dinov2, make_extractor, patch_features
from fovea.data.shards import iter_latent_samples, latent_sample_files, latents_eval_dataset, list_shards, write_shards
from fovea.data.targets import TargetCacheError, target_dir
from fovea.heads import build_head, head_names
from fovea.models.vlm import VLMConfig
from fovea.params import ParamsError, parse_params
from fovea.plots import pca_decoder, save_samples_image

# (h_dim, D, h, w): dinov2-small at 224 px under SmolLM2-135M, and the tiny default at 64 px.
DINO_SIZES = {"dinov2-small": (576, 384, 16, 16), "tiny": (64, 64, 8, 8)}


@pytest.mark.parametrize("sizes", DINO_SIZES.values(), ids=DINO_SIZES.keys())
@pytest.mark.parametrize("name", head_names())
def test_every_head_runs_forward_and_backward_at_dino_target_sizes(name, sizes):
    h_dim, channels, height, width = sizes
    torch.manual_seed(0)
    # The mlp's default hidden width at 384 x 16 x 16 makes a 100M-parameter output layer; the
    # shapes are under test here, so it runs narrower (its sizes still come from the target).
    options = {"hidden": 64} if name == "mlp" and channels > 64 else {}
    head = build_head(name, h_dim=h_dim, latent_channels=channels, height=height, width=width, **options)
    h, z_prev = torch.randn(2, h_dim), torch.randn(2, channels, height, width)
    out = head(h, z_prev)
    assert out.shape == z_prev.shape and torch.isfinite(out).all()
    out.square().mean().backward()
    grads = [p.grad for p in head.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_target_is_validated_and_reaches_the_model_config():
    params = parse_params({"target": "dino"})
    assert params.target == "dino" and parse_params({}).target == "vae"
    assert VLMConfig.from_params(params, (64, 8, 8)).target == "dino"
    with pytest.raises(ParamsError, match=r"^invalid params: target: Input should be 'vae' or 'dino'"):
        parse_params({"target": "clip"})


TINY = {"hidden_size": 16, "layers": 1, "heads": 2, "patch_size": 8}
STEPS, SIZE = 3, 32


def _settings(seed: int = 0) -> DinoSettings:
    return DinoSettings(target="dino", encoder="tiny", frame_size=SIZE, seed=seed, tiny=TINY)


@pytest.fixture(scope="module")
def latents_dir(tmp_path_factory) -> Path:
    """A latents cache as the latents stage writes it: shards per split (3 per shard) + manifest."""
    root = tmp_path_factory.mktemp("latents")
    rng = np.random.default_rng(0)
    counts = {"train": 7, "val": 4}
    for split, count in counts.items():
        with write_shards(root / split, max_per_shard=3) as sink:
            for index in range(count):
                frames = rng.integers(0, 256, (STEPS, SIZE, SIZE, 3), dtype=np.uint8)
                latents = rng.standard_normal((STEPS, 4, 4, 4)).astype(np.float16)
                sink.write(f"{split}-{index:03d}", latent_sample_files(frames, latents, f"clip {index}", {"i": index}))
    manifest = {"kept": {**counts, "total": 11}, "latents_shape": [STEPS, 4, 4, 4], "latents_stats": {"mean": 0.0}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def dino_dir(latents_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dino") / "dino"
    cache_dino(latents_dir, out, _settings())
    return out


def test_the_feature_cache_mirrors_the_latents_shards_clip_for_clip(latents_dir, dino_dir):
    manifest = json.loads((dino_dir / "manifest.json").read_text())
    assert manifest["target"] == "dino"
    assert manifest["latents_shape"] == [STEPS, 16, SIZE // 8, SIZE // 8]
    assert manifest["clips"] == {"train": 7, "val": 4} and "latents_stats" not in manifest
    assert manifest["dino"]["encoder"] == "tiny" and manifest["dino"]["seed"] == 0
    assert len(manifest["dino"]["mean"]) == len(manifest["dino"]["std"]) == 16
    for split in ("train", "val"):
        assert [p.name for p in list_shards(dino_dir / split)] == [p.name for p in list_shards(latents_dir / split)]
        source, cached = list(iter_latent_samples(latents_dir / split)), list(iter_latent_samples(dino_dir / split))
        assert [s.key for s in cached] == [s.key for s in source]
        for before, after in zip(source, cached, strict=True):
            np.testing.assert_array_equal(after.frames, before.frames)
            assert (after.caption, after.metadata) == (before.caption, before.metadata)
            assert after.latents.dtype == np.float16 and after.latents.shape == (STEPS, 16, 4, 4)
    # The training stream and the evaluation reader read it as they read latents.
    keys, frames, targets = next(iter(DataLoader(latents_eval_dataset(dino_dir / "val", keys=True), batch_size=4)))
    assert list(keys) == [f"val-{i:03d}" for i in range(4)] and targets.shape == (4, STEPS, 16, 4, 4)


def test_cached_features_are_the_frozen_encoders_normalised_patch_tokens(dino_dir):
    stats = json.loads((dino_dir / "manifest.json").read_text())["dino"]
    mean, std = np.array(stats["mean"])[:, None, None], np.array(stats["std"])[:, None, None]
    extract = make_extractor(frozen_dinov2(_settings()))
    sample = next(iter_latent_samples(dino_dir / "val"))
    expected = (extract(sample.frames) - mean) / std
    np.testing.assert_allclose(sample.latents.astype(np.float64), expected, atol=2e-3 * np.abs(expected).max())
    # Standardised with the training split's statistics (all 7 clips are within STATS_CLIPS).
    train = np.stack([s.latents.astype(np.float64) for s in iter_latent_samples(dino_dir / "train")])
    per_channel = np.moveaxis(train, 2, 0).reshape(16, -1)
    np.testing.assert_allclose(per_channel.mean(axis=1), 0.0, atol=1e-2)
    np.testing.assert_allclose(per_channel.std(axis=1), 1.0, atol=1e-2)


def test_the_tiny_frozen_encoder_is_fixed_by_its_seed():
    frames = torch.randint(0, 256, (2, SIZE, SIZE, 3), dtype=torch.uint8)
    first, again, other = (patch_features(frozen_dinov2(_settings(seed)), frames) for seed in (0, 0, 1))
    assert first.shape == (2, 16, 4, 4)
    torch.testing.assert_close(first, again)
    assert not torch.allclose(first, other)


def test_patch_features_keep_the_patches_row_major():
    # A frame that differs from a flat one only in its top-right patch changes that cell alone.
    dinov2 = frozen_dinov2(_settings())
    dinov2.config.num_hidden_layers = 0
    dinov2.encoder.layer = torch.nn.ModuleList()  # no attention: each token sees only its patch
    flat = torch.full((1, SIZE, SIZE, 3), 128, dtype=torch.uint8)
    marked = flat.clone()
    marked[0, :8, -8:] = 255
    change = (patch_features(dinov2, marked) - patch_features(dinov2, flat)).abs().sum(dim=1)[0]
    assert change[0, -1] > 0 and change.sum() == change[0, -1]


def test_vae_target_writes_only_a_manifest_and_target_dir_checks_it(latents_dir, dino_dir, tmp_path):
    vae_dir = tmp_path / "dino"
    cache_dino(latents_dir, vae_dir, DinoSettings.from_params(parse_params({})))
    assert sorted(p.name for p in vae_dir.iterdir()) == ["manifest.json"]
    assert json.loads((vae_dir / "manifest.json").read_text())["target"] == "vae"
    assert target_dir("vae", latents_dir, vae_dir) == latents_dir
    assert target_dir("dino", latents_dir, dino_dir) == dino_dir
    with pytest.raises(TargetCacheError, match="holds no DINO features"):
        target_dir("dino", latents_dir, vae_dir)
    with pytest.raises(TargetCacheError, match="is missing"):
        target_dir("dino", latents_dir, tmp_path / "nothing")


def test_samples_picture_of_feature_maps(dino_dir, tmp_path):
    target = np.stack([s.latents.astype(np.float32) for s in iter_latent_samples(dino_dir / "val")])[:2]
    decode = pca_decoder(target)
    images = decode(target[0])
    assert images.shape == (STEPS, 4, 4, 3) and images.dtype == np.uint8
    save_samples_image(decode, target, target + 0.1, target - 0.1, tmp_path / "samples.png")
    assert (tmp_path / "samples.png").read_bytes().startswith(b"\x89PNG")
    # Fewer than 3 channels still gives RGB.
    assert pca_decoder(target[:, :, :2])(target[0, :, :2]).shape == (STEPS, 4, 4, 3)
