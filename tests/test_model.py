"""The two-pass FoveatedVLM at tiny sizes: shapes, the query shift, equal-query equivalence and
the checkpoint round trip."""

import pytest
import torch

from fovea.models.encoder import attention_projections
from fovea.models.vlm import FoveatedVLM, VLMConfig
from fovea.params import parse_params

BATCH, STEPS, SIZE, LATENT = 2, 4, 32, (4, 4, 4)


@pytest.fixture(scope="module")
def model() -> FoveatedVLM:
    # The model's own (learned) fine read: the query alone decides where frame t is read.
    params = parse_params(
        {"frames": {"size": SIZE}, "vae": {"block_channels": [8, 8, 8]}, "model": {"fine_read": "learned"}}
    )
    torch.manual_seed(0)
    return FoveatedVLM.build(VLMConfig.from_params(params, LATENT)).eval()


@pytest.fixture(scope="module")
def batch():
    generator = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (BATCH, STEPS, SIZE, SIZE, 3), dtype=torch.uint8, generator=generator)
    latents = torch.randn(BATCH, STEPS, *LATENT, generator=generator)
    return frames, latents


def test_pass_shapes(model, batch):
    frames, latents = batch
    with torch.no_grad():
        out = model.passes(frames, latents)
    llm_dim = model.llm.config.hidden_size
    assert out.h_coarse.shape == out.h_fine.shape == (BATCH, STEPS, llm_dim)
    assert out.pred_coarse.shape == out.pred_fine.shape == out.target.shape == (BATCH, STEPS, *LATENT)
    # Frame t is predicted from frame t-1's latent; frame 1 from the learned z_init.
    assert torch.equal(out.z_prev[:, 1:], latents[:, :-1])
    assert torch.equal(out.z_prev[:, 0], model.z_init.expand(BATCH, *LATENT))


def test_fine_pass_differs_from_coarse(model, batch):
    with torch.no_grad():
        out = model.passes(*batch)
    assert not torch.allclose(out.h_fine, out.h_coarse)


def test_equal_queries_and_mode_tokens_give_equal_losses(model, batch):
    frames, latents = batch
    static = model.static_query.expand(BATCH, STEPS, -1)
    original = model.fine_token.data.clone()
    try:
        model.fine_token.data.copy_(model.coarse_token.data)
        with torch.no_grad():
            out = model.passes(frames, latents, fine_queries=static)
    finally:
        model.fine_token.data.copy_(original)
    torch.testing.assert_close(out.pred_fine, out.pred_coarse)
    loss_fine = torch.nn.functional.mse_loss(out.pred_fine, latents)
    loss_coarse = torch.nn.functional.mse_loss(out.pred_coarse, latents)
    torch.testing.assert_close(loss_fine, loss_coarse)


def test_fine_queries_follow_the_previous_frame(model, batch):
    """Changing the last frame cannot change any fine query (queries only look backwards),
    while changing the first frame changes the query of frame 2."""
    frames, latents = batch
    captured = []
    original_read = model.encoder.read

    def spy(cache, queries, allowed=None):
        captured.append(queries.detach().clone())
        return original_read(cache, queries, allowed)

    model.encoder.read = spy
    try:
        with torch.no_grad():
            model.passes(frames, latents)
            changed_last = frames.clone()
            changed_last[:, -1] = 255 - changed_last[:, -1]
            model.passes(changed_last, latents)
            changed_first = frames.clone()
            changed_first[:, 0] = 255 - changed_first[:, 0]
            model.passes(changed_first, latents)
    finally:
        del model.encoder.read
    fine = [q.view(BATCH, STEPS, -1) for q in captured[1::2]]
    torch.testing.assert_close(fine[0], fine[1])
    assert torch.equal(fine[0][:, 0], fine[2][:, 0])  # q_init for frame 1
    assert not torch.allclose(fine[0][:, 1], fine[2][:, 1])


def test_every_trainable_parameter_gets_a_gradient(batch):
    params = parse_params({"frames": {"size": SIZE}, "vae": {"block_channels": [8, 8, 8]}})
    torch.manual_seed(0)
    model = FoveatedVLM.build(VLMConfig.from_params(params, LATENT))
    model(*batch)["loss"].backward()
    missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert not model.llm.get_input_embeddings().weight.requires_grad


def test_frozen_encoder_gets_no_gradient(batch):
    params = parse_params(
        {"frames": {"size": SIZE}, "vae": {"block_channels": [8, 8, 8]}, "model": {"freeze_encoder": True}}
    )
    model = FoveatedVLM.build(VLMConfig.from_params(params, LATENT))
    model(*batch)["loss"].backward()
    assert all(p.grad is None for p in model.encoder.dinov2.parameters())
    assert model.query_proj.weight.grad is not None


def test_checkpoint_round_trip(model, batch, tmp_path):
    model.save(tmp_path / "ckpt")
    loaded = FoveatedVLM.load(tmp_path / "ckpt").eval()
    assert loaded.config == model.config
    with torch.no_grad():
        torch.testing.assert_close(loaded(*batch)["loss"], model(*batch)["loss"])


def test_attention_projections_rebuild_the_dinov2_layer(model):
    # The deep-query read reuses each layer's projections by name; rebuilding the layer's own
    # forward from them must give its output exactly, whichever layout transformers uses.
    encoder = model.encoder
    hidden = torch.randn(3, 5, encoder.dim, generator=torch.Generator().manual_seed(2))
    for layer in encoder.dinov2.encoder.layer:
        projections = attention_projections(layer.attention)
        normed = layer.norm1(hidden)
        q, k, v = (encoder._split_heads(proj(normed)) for proj in projections[:3])
        attended = torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        rebuilt = hidden + layer.layer_scale1(projections.output(attended))
        rebuilt = rebuilt + layer.layer_scale2(layer.mlp(layer.norm2(rebuilt)))
        with torch.no_grad():
            torch.testing.assert_close(rebuilt, layer(hidden), rtol=1e-5, atol=1e-5)
        hidden = layer(hidden).detach()
