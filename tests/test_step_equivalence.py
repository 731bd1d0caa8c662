"""The optimised training step computes what the plain one did (tiny sizes, fp32, CPU).

Plain: the paper's 8 clips as 4 accumulated micro-batches of 2, each pass through the head on its
own. Optimised: one micro-batch of 8 (``accumulate_gradients``), both passes through the head as
one batch. Losses and every gradient agree to a relative difference of 1e-5.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fovea.compute import make_accelerator
from fovea.heads import head_names
from fovea.models.vlm import FoveatedVLM, VLMConfig
from fovea.params import parse_params
from fovea.train import LOSS_NAMES, accumulate_gradients, make_optimizer

CLIPS, MICRO_BATCH, STEPS, SIZE, LATENT = 8, 2, 4, 32, (4, 4, 4)
TOLERANCE = 1e-5


def paper_like_params(head: str, **model):
    # The paper's protocol (learned fine read, trained end to end) at tiny sizes, with both losses
    # and the encoder trained too, so that every gradient path is compared.
    return parse_params(
        {
            "head": head,
            "frames": {"num": STEPS, "size": SIZE},
            "vae": {"block_channels": [8, 8, 8]},
            "model": {"fine_read": "learned", "residual": False, **model},
            "train": {"detach_h": False, "lambda_coarse": 0.5},
            "compute": {"device": "cpu"},
        }
    )


def build(params) -> FoveatedVLM:
    torch.manual_seed(0)
    return FoveatedVLM.build(VLMConfig.from_params(params, LATENT)).train()


@pytest.fixture(scope="module")
def clips() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (CLIPS, STEPS, SIZE, SIZE, 3), dtype=torch.uint8, generator=generator)
    return frames, torch.randn(CLIPS, STEPS, *LATENT, generator=generator)


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def plain_step(model: FoveatedVLM, clips, lambda_coarse: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The step as it was: micro-batches of 2 accumulated, the head called once per pass."""
    frames, latents = clips
    micro_batches = CLIPS // MICRO_BATCH
    totals = torch.zeros(len(LOSS_NAMES))
    model.zero_grad(set_to_none=True)
    for frames_part, latents_part in zip(frames.split(MICRO_BATCH), latents.split(MICRO_BATCH), strict=False):
        out = model.passes(frames_part, latents_part)
        loss_fine = F.mse_loss(model.predict(out.h_fine, out.z_prev), latents_part)
        loss_coarse = F.mse_loss(model.predict(out.h_coarse, out.z_prev), latents_part)
        loss = loss_fine + lambda_coarse * loss_coarse
        (loss / micro_batches).backward()
        totals += torch.stack([loss, loss_fine, loss_coarse]).detach() / micro_batches
    return totals, gradients(model)


def optimised_step(
    model: FoveatedVLM, clips, params, batch_size: int = CLIPS
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    frames, latents = clips
    cfg = params.train.model_copy(update={"batch_size": batch_size, "grad_accum": CLIPS // batch_size})
    model.zero_grad(set_to_none=True)
    batches = zip(frames.split(batch_size), latents.split(batch_size), strict=False)
    totals = accumulate_gradients(model, batches, make_accelerator(params.compute, cfg.grad_accum), cfg)
    return totals, gradients(model)


def gradients(model: FoveatedVLM) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad and p.grad is not None}


# Gradients that are zero but for rounding: an attention key's bias shifts every score of a query
# alike, which softmax ignores. Below this share of the largest gradient norm on both sides, a
# tensor has no digits to compare.
ROUNDING_ONLY = 1e-7


def assert_same(losses_a, grads_a, losses_b, grads_b) -> None:
    assert relative_difference(losses_a, losses_b) <= TOLERANCE, (losses_a, losses_b)
    assert grads_a.keys() == grads_b.keys()
    largest = max(grad.norm() for grad in grads_b.values())
    compared = {name for name in grads_b if max(grads_a[name].norm(), grads_b[name].norm()) > ROUNDING_ONLY * largest}
    assert all(name.endswith(("k_proj.bias", "key.bias", "to_k.bias")) for name in grads_b.keys() - compared), sorted(
        grads_b.keys() - compared
    )
    worst = max(compared, key=lambda name: relative_difference(grads_a[name], grads_b[name]))
    assert relative_difference(grads_a[worst], grads_b[worst]) <= TOLERANCE, worst


@pytest.mark.parametrize("head", head_names())
def test_one_batch_of_eight_gives_the_loss_and_gradients_of_the_plain_step(head, clips):
    params = paper_like_params(head)
    model = build(params)
    plain_losses, plain_grads = plain_step(model, clips, params.train.lambda_coarse)
    losses, grads = optimised_step(model, clips, params)
    # Every trainable weight upstream of h gets a gradient: the comparison covers the whole model.
    assert {"static_query", "q_init", "query_proj.weight", "fine_token", "coarse_token", "z_init"} <= grads.keys()
    assert_same(losses, grads, plain_losses, plain_grads)


def test_four_accumulated_micro_batches_of_two_equal_one_batch_of_eight(clips):
    # The default setup's read (motion), residual head and frozen-upstream training too.
    params = paper_like_params("film", fine_read="motion", residual=True, freeze_encoder=True)
    model = build(params)
    accumulated = optimised_step(model, clips, params, batch_size=MICRO_BATCH)
    one_batch = optimised_step(model, clips, params)
    assert_same(*one_batch, *accumulated)


def test_gradients_differ_when_the_clips_do(clips):
    # The comparison above can tell steps apart: another split of different clips does not match.
    params = paper_like_params("film")
    model = build(params)
    frames, latents = clips
    _, grads = optimised_step(model, clips, params)
    _, other = optimised_step(model, (frames.roll(1, dims=1), latents), params)
    assert max(relative_difference(grads[name], other[name]) for name in grads) > 1e-2


def test_fused_adamw_updates_as_the_default_one():
    # The CUDA path's fused AdamW, with the step's learning rate and weight decay, moves the
    # weights as the default implementation does (torch runs the fused kernel on CPU too).
    cfg = paper_like_params("film").train
    generator = torch.Generator().manual_seed(2)
    start = [torch.randn(5, 3, generator=generator), torch.randn(7, generator=generator)]
    grads = [[torch.randn_like(w) for w in start] for _ in range(3)]
    updated = []
    for fused in (False, True):
        weights = [torch.nn.Parameter(w.clone()) for w in start]
        optimizer = make_optimizer(weights, cfg, fused=fused)
        assert optimizer.defaults["fused"] is (True if fused else None)
        for step_grads in grads:
            for weight, grad in zip(weights, step_grads, strict=False):
                weight.grad = grad.clone()
            optimizer.step()
        updated.append(weights)
    for original, plain, fused in zip(start, *updated, strict=False):
        assert not torch.equal(plain, original)
        torch.testing.assert_close(fused, plain, rtol=1e-6, atol=1e-9)


def test_accumulation_count_must_match_the_accelerator(clips):
    params = paper_like_params("film")
    cfg = params.train.model_copy(update={"batch_size": MICRO_BATCH, "grad_accum": 4})
    with pytest.raises(ValueError, match="grad_accum is 4"):
        accumulate_gradients(build(params), iter([]), make_accelerator(params.compute, 1), cfg)
