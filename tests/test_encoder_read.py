"""The deep-query read: at initialisation the visual token depends on the image, distinct queries
attend differently; and what trains when h is detached, and the residual prediction."""

import numpy as np
import pytest
import torch
from model_fixtures import dinov2_small_config, tiny_dinov2_config
from transformers import Dinov2Model

from fovea.data.control import make_control_clip
from fovea.models.encoder import DeepQueryEncoder
from fovea.models.vlm import FoveatedVLM, VLMConfig
from fovea.params import parse_params

SIZE, LATENT = 64, (4, 8, 8)


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    """Frames of several control clips [N, H, W, 3]."""
    return torch.from_numpy(np.concatenate([make_control_clip(0, i, 4, SIZE, 12).frames for i in range(6)]))


def _spread(tokens: torch.Tensor) -> float:
    """Std across frames (norm of the per-dimension std) relative to the mean token's norm."""
    return float(tokens.std(dim=0).norm() / tokens.mean(dim=0).norm())


def _model(**overrides) -> FoveatedVLM:
    params = parse_params({"frames": {"size": SIZE}, "model": overrides})
    torch.manual_seed(0)
    return FoveatedVLM.build(VLMConfig.from_params(params, LATENT))


@torch.no_grad()
def test_the_tiny_encoders_token_sees_the_image_at_initialisation(frames):
    model = _model()
    cache = model.encoder.encode_patches(frames)
    for query in (model.static_query, model.q_init):
        assert _spread(model.encoder.read(cache, query.expand(len(frames), -1))) >= 0.10


@pytest.mark.parametrize("config", [tiny_dinov2_config, dinov2_small_config], ids=["tiny-saved", "dinov2-small-shape"])
@torch.no_grad()
def test_a_pretrained_layout_encoders_token_sees_the_image_at_initialisation(frames, config):
    # The path of a named model: DINOv2 weights as loaded (here random, with their own position
    # embeddings), queries at std 1 as the model builds them.
    torch.manual_seed(0)
    encoder = DeepQueryEncoder(Dinov2Model(config()), out_dim=48).eval()
    cache = encoder.encode_patches(frames)
    query = torch.randn(encoder.dim)
    assert _spread(encoder.read(cache, query.expand(len(frames), -1))) >= 0.10


@torch.no_grad()
def test_distinct_queries_attend_differently(frames):
    model = _model()
    cache = model.encoder.encode_patches(frames)
    maps = [model.encoder.attention_maps(cache, q.expand(len(frames), -1)) for q in (model.static_query, model.q_init)]
    assert maps[0].shape == (len(frames), (SIZE // 8) ** 2)
    # Total variation distance between the two attention distributions. A random DINOv2's
    # attention logits are small (weights at std 0.02), so at initialisation any query attends
    # almost uniformly: measured 0.012 here. It must not be 0 (fine would equal coarse).
    distance = (maps[0] - maps[1]).abs().sum(-1) / 2
    assert float(distance.min()) > 0.005


@torch.no_grad()
def test_a_restricted_read_attends_only_where_allowed(frames):
    model = _model()
    cache = model.encoder.encode_patches(frames)
    allowed = torch.zeros(len(frames), 1 + (SIZE // 8) ** 2, dtype=torch.bool)
    allowed[:, 5] = allowed[:, 9] = True
    maps = model.encoder.attention_maps(cache, model.static_query.expand(len(frames), -1), allowed)
    torch.testing.assert_close(maps[:, [4, 8]].sum(-1), torch.ones(len(frames)))


def _batch(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    clips = frames.view(-1, 4, *frames.shape[1:])[:2]
    return clips, torch.randn(2, 4, *LATENT, generator=torch.Generator().manual_seed(3))


def test_with_h_detached_only_the_head_and_z_init_learn(frames):
    model = _model(fine_read="motion")
    model(*_batch(frames), detach_h=True)["loss"].backward()
    with_grad = {name.split(".")[0] for name, p in model.named_parameters() if p.grad is not None}
    assert with_grad == {"head", "z_init"}


def test_with_h_attached_the_loss_reaches_the_encoder_and_llm(frames):
    model = _model(fine_read="motion")
    model(*_batch(frames))["loss"].backward()
    with_grad = {name.split(".")[0] for name, p in model.named_parameters() if p.grad is not None}
    assert {"encoder", "llm", "query_proj", "head"} <= with_grad


@torch.no_grad()
def test_a_residual_model_adds_the_heads_output_to_the_previous_latent():
    plain, residual = _model(residual=False), _model(residual=True)
    residual.load_state_dict(plain.state_dict())
    h, z_prev = torch.randn(2, 3, 64), torch.randn(2, 3, *LATENT)
    torch.testing.assert_close(residual.predict(h, z_prev), z_prev + plain.predict(h, z_prev))
