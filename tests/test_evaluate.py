"""Evaluation statistics: the bootstrap interval and the h-ablation."""

import numpy as np
import pytest
import torch
from torch import nn

from fovea.evaluate import ValOutputs, clip_table, late_clip_losses, summarize
from fovea.models.vlm import FoveatedVLM, VLMConfig
from fovea.params import parse_params
from fovea.stats import CrossedDraws, percentile_interval


def _clip_losses(clips: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    fine = rng.gamma(4.0, 0.05, size=clips)
    coarse = fine * rng.normal(1.1, 0.1, size=clips)
    return fine, coarse


def bootstrap_ratio_interval(fine, coarse, samples, seed):
    return percentile_interval(CrossedDraws.make(len(fine), 1, samples, seed).ratios(coarse, fine))


def test_ratio_interval_contains_the_ratio_and_narrows_with_more_clips():
    widths = []
    for clips in (10, 40, 160, 640):
        fine, coarse = _clip_losses(clips, seed=clips)
        low, high = bootstrap_ratio_interval(fine, coarse, samples=2000, seed=0)
        assert low <= coarse.mean() / fine.mean() <= high
        widths.append(high - low)
    assert all(a > b for a, b in zip(widths, widths[1:], strict=False)), widths
    # The width of a mean's interval shrinks like 1/sqrt(n): 64x the clips, about 1/8 the width.
    assert widths[-1] < widths[0] / 4


def test_ratio_interval_is_reproducible_for_a_seed():
    fine, coarse = _clip_losses(50, seed=3)
    assert bootstrap_ratio_interval(fine, coarse, 500, seed=7) == bootstrap_ratio_interval(fine, coarse, 500, seed=7)


class IgnoresH(nn.Module):
    """Predicts from z_prev alone."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, h: torch.Tensor, z_prev: torch.Tensor) -> torch.Tensor:
        return self.conv(z_prev)


@pytest.fixture(scope="module")
def tiny_model() -> FoveatedVLM:
    params = parse_params(
        {
            "frames": {"size": 32},
            "vae": {"block_channels": [8, 8, 8]},
            "heads": {"sfilm": {"channels": [8, 8, 8], "film_hidden": 16, "pos_dim": 8}},
            "head": "sfilm",
        }
    )
    torch.manual_seed(0)
    return FoveatedVLM.build(VLMConfig.from_params(params, (4, 4, 4))).eval()


def _val_outputs(model: FoveatedVLM, clips: int = 6, steps: int = 4) -> ValOutputs:
    generator = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (clips, steps, 32, 32, 3), dtype=torch.uint8, generator=generator)
    latents = torch.randn(clips, steps, 4, 4, 4, generator=generator)
    with torch.no_grad():
        out = model.passes(frames, latents)
    return ValOutputs(out.h_fine, out.z_prev, out.target, out.pred_fine, out.pred_coarse)


def _summary(model: FoveatedVLM, val: ValOutputs, bootstrap: int = 100) -> dict:
    return summarize(val, late_clip_losses(model, val, batch_size=4), bootstrap=bootstrap, seed=0)


def test_h_mean_gives_every_clip_the_val_mean_h_at_its_frame(tiny_model):
    val = _val_outputs(tiny_model)
    seen = []
    original = tiny_model.predict

    def recording(h, z_prev):
        seen.append(h.clone())
        return original(h, z_prev)

    tiny_model.predict = recording
    try:
        late_clip_losses(tiny_model, val, batch_size=16)
    finally:
        del tiny_model.predict
    h_mean = seen[0]
    torch.testing.assert_close(h_mean, val.h_fine.mean(dim=0, keepdim=True).expand_as(val.h_fine))
    assert not torch.allclose(h_mean[:, 2], h_mean[:, 3])  # per frame index, not one mean for all


def test_the_clip_table_holds_the_late_losses_by_key(tiny_model):
    val = _val_outputs(tiny_model)
    late = late_clip_losses(tiny_model, val, batch_size=4)
    table = clip_table(late, [f"k{i}" for i in range(6)], "3..4")
    assert table["keys"][0] == "k0" and table["frames"] == "3..4"
    np.testing.assert_allclose(table["loss_fine"], val.fine_loss[:, 2:].mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(table["loss_h_mean"], late["h_mean"], rtol=1e-6)
    with pytest.raises(RuntimeError, match="5 clip keys for 6"):
        clip_table(late, ["k"] * 5, "3..4")


def test_h_ablation_gap_is_zero_for_a_head_that_ignores_h(tiny_model):
    original = tiny_model.head
    tiny_model.head = IgnoresH(4)
    try:
        val = _val_outputs(tiny_model)
        metrics = _summary(tiny_model, val)
    finally:
        tiny_model.head = original
    assert metrics["h_shuffle_gap"] == 0.0
    assert metrics["h_mean_gap"] == 0.0
    # and fine equals coarse: with h ignored the two passes predict the same
    assert metrics["ratio"] == pytest.approx(1.0) and metrics["ratio_late"] == pytest.approx(1.0)
    # h is worth nothing, so the share of its worth the fine read adds is undefined
    assert metrics["fovea_gain"] is None and metrics["fovea_gain_ci_low"] is None


def test_h_ablation_gap_is_not_zero_for_a_head_that_uses_h(tiny_model):
    metrics = _summary(tiny_model, _val_outputs(tiny_model))
    assert metrics["h_shuffle_gap"] != 0.0 and metrics["h_mean_gap"] != 0.0


def _val_with_losses(clips: int = 40, steps: int = 4) -> ValOutputs:
    generator = torch.Generator().manual_seed(0)
    target = torch.randn(clips, steps, 1, 2, 2, generator=generator)
    pred_fine = target + 0.1 * torch.randn(target.shape, generator=generator)
    pred_coarse = target + 0.12 * torch.randn(target.shape, generator=generator)
    return ValOutputs(torch.zeros(clips, steps, 3), target, target, pred_fine, pred_coarse)


def test_fovea_gain_is_the_share_of_hs_worth_and_only_where_h_is_worth_something():
    val = _val_with_losses()
    fine = np.random.default_rng(1).gamma(4.0, 0.05, size=40)
    late = {"fine": fine, "coarse": fine * 1.1, "copy": fine * 2, "h_mean": fine * 1.2}
    metrics = summarize(val, late, bootstrap=200, seed=0)
    assert metrics["fovea_gain"] == pytest.approx(0.5)
    assert metrics["fovea_gain_ci_low"] <= 0.5 <= metrics["fovea_gain_ci_high"]
    # h worth nothing (its gap's interval reaches 0): the share is undefined, written as null
    noise = np.random.default_rng(2).normal(0, 0.001, size=40)
    metrics = summarize(val, {**late, "h_mean": fine + noise}, bootstrap=200, seed=0)
    assert metrics["h_mean_gap_ci_low"] <= 0 and metrics["fovea_gain"] is None


def test_summary_fields_are_consistent(tiny_model):
    val = _val_outputs(tiny_model)
    metrics = _summary(tiny_model, val, bootstrap=200)
    assert metrics["num_clips"] == 6
    assert metrics["ratio"] == pytest.approx(metrics["loss_coarse"] / metrics["loss_fine"])
    assert metrics["ratio_late"] == pytest.approx(metrics["loss_coarse_late"] / metrics["loss_fine_late"])
    for name in ("ratio", "ratio_late"):
        assert metrics[f"{name}_ci_low"] <= metrics[name] <= metrics[f"{name}_ci_high"], name
    assert 0.0 <= metrics["fine_win_rate"] <= 1.0
    assert len(metrics["per_frame_loss_fine"]) == len(metrics["per_frame_loss_coarse"]) == 4
    # The headline is over frames 3..T, where the passes can differ; the per-frame lists hold all.
    assert metrics["headline_frames"] == "3..4"
    assert np.mean(metrics["per_frame_loss_fine"][2:]) == pytest.approx(metrics["loss_fine_late"], rel=1e-5)
    assert np.mean(metrics["per_frame_loss_coarse"][2:]) == pytest.approx(metrics["loss_coarse_late"], rel=1e-5)
    everything = np.mean(metrics["per_frame_loss_coarse"]) / np.mean(metrics["per_frame_loss_fine"])
    assert metrics["ratio"] == pytest.approx(everything, rel=1e-5)
    copy = (val.target[:, 2:] - val.target[:, 1:-1]).pow(2).mean().item()
    assert metrics["copy_loss"] == pytest.approx(copy, rel=1e-5)
    assert metrics["copy_gap"] == pytest.approx(copy - metrics["loss_fine_late"], abs=1e-6)
    for name in ("copy_gap", "h_shuffle_gap", "h_mean_gap"):
        assert metrics[f"{name}_ci_low"] <= metrics[name] <= metrics[f"{name}_ci_high"]


def test_two_frame_clips_take_their_last_frame_as_the_headline():
    from fovea.evaluate import headline_frames

    assert headline_frames(2) == slice(1, None) and headline_frames(8) == slice(2, None)
