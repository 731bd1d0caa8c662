"""The joint objective and multi-fine iterations: the caption loss (shift, padding), captions
leaving the latent predictions unchanged, causality in every fine iteration, the offline tiny
tokenizer, a few joint training steps, and the new params."""

from __future__ import annotations

import math

import pytest
import torch

from fovea.models.captions import caption_loss, caption_token_nll
from fovea.models.vlm import FoveatedVLM, VLMConfig
from fovea.params import ParamsError, parse_params
from fovea.tokenizer import MAX_CAPTION_TOKENS, encode_captions, fit_tiny_tokenizer, load_tokenizer

BATCH, STEPS, SIZE, LATENT = 2, 4, 32, (4, 4, 4)
TINY = {"encoder_dim": 16, "encoder_layers": 1, "patch_size": 8, "llm_dim": 16, "llm_layers": 2, "attention_heads": 2}
CAPTIONS = ["a red square moving north starting top left", "a blue square moving south-east starting centre"]


def build(fine_iterations: int = 1, fine_read: str = "learned", vocab_size: int = 40) -> FoveatedVLM:
    params = parse_params(
        {
            "frames": {"size": SIZE},
            "vae": {"block_channels": [8, 8, 8]},
            "heads": {"sfilm": {"channels": [8, 16], "film_hidden": 16, "pos_dim": 8}},
            "model": {"fine_read": fine_read, "fine_iterations": fine_iterations, "tiny": TINY},
        }
    )
    torch.manual_seed(0)
    return FoveatedVLM.build(VLMConfig.from_params(params, LATENT, vocab_size=vocab_size)).eval()


def clips(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (BATCH, STEPS, SIZE, SIZE, 3), dtype=torch.uint8, generator=generator)
    return frames, torch.randn(BATCH, STEPS, *LATENT, generator=generator)


# ------------------------------------------------------------------------------ caption loss
def test_caption_loss_shifts_by_one_and_masks_padding_hand_computed() -> None:
    # Vocabulary of 3 tokens, embedding = identity: the logits are the hidden states themselves.
    embedding = torch.eye(3)
    # Sequence [p0, p1, c1, c2]: the caption starts at position 2 (first=2). c1 is predicted from
    # p1, c2 from c1; c2 of clip 1 is padding.
    hidden = torch.tensor(
        [
            [[9.0, 9.0, 9.0], [2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [5.0, 5.0, 5.0]],
            [[9.0, 9.0, 9.0], [0.0, 0.0, 3.0], [7.0, -7.0, 0.0], [5.0, 5.0, 5.0]],
        ]
    )
    ids = torch.tensor([[0, 1], [2, 1]])
    mask = torch.tensor([[True, True], [True, False]])

    def nll(logits: list[float], label: int) -> float:
        return math.log(sum(math.exp(v) for v in logits)) - logits[label]

    expected = [[nll([2, 0, 0], 0), nll([0, 1, 0], 1)], [nll([0, 0, 3], 2), 0.0]]
    got = caption_token_nll(hidden, ids, mask, embedding, first=2)
    torch.testing.assert_close(got, torch.tensor(expected))
    mean = (expected[0][0] + expected[0][1] + expected[1][0]) / 3
    assert caption_loss(hidden, ids, mask, embedding, first=2).item() == pytest.approx(mean, rel=1e-6)


def test_recon_predictions_are_identical_with_and_without_a_caption() -> None:
    model = build(fine_iterations=2)
    frames, latents = clips()
    ids = torch.randint(0, 40, (BATCH, 6))
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    with torch.no_grad():
        plain = model.passes(frames, latents, every_iteration=True)
        joint = model.passes(frames, latents, captions=(ids, mask), every_iteration=True)
    for name in ("h_coarse", "h_fine", "pred_coarse", "pred_fine"):
        torch.testing.assert_close(getattr(joint, name), getattr(plain, name), rtol=0, atol=1e-6)
    assert joint.caption_nll.shape == (BATCH, 3)  # coarse, fine 1, fine 2
    assert joint.caption_tokens.tolist() == [6, 3]
    assert plain.caption_nll is None


def test_the_model_predicts_each_caption_token_from_the_position_before_it(monkeypatch) -> None:
    # Per-token NLLs of the coarse pass, recorded where the model computes them: token k's loss
    # must change with token k-1 (its predictor) and the last visual token, never with later
    # tokens, and the caption must start where the model says it does.
    import fovea.models.vlm as vlm

    recorded: list[torch.Tensor] = []

    def recording(hidden, ids, mask, embedding, first):
        # the caption fills the sequence's last positions: the first of them is `first`
        assert first == hidden.shape[1] - ids.shape[1]
        nll = caption_token_nll(hidden, ids, mask, embedding, first=first)
        recorded.append(nll.detach().clone())
        return nll

    monkeypatch.setattr(vlm, "caption_token_nll", recording)
    model = build(fine_iterations=1)
    frames, latents = clips()
    ids = torch.randint(0, 40, (BATCH, 5), generator=torch.Generator().manual_seed(3))
    mask = torch.ones(BATCH, 5, dtype=torch.bool)

    def token_nll(frames: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        recorded.clear()
        with torch.no_grad():
            model.passes(frames, latents, captions=(ids, mask))
        return recorded[0]  # the coarse pass

    base = token_nll(frames, ids)
    for changed in range(5):
        other = ids.clone()
        other[:, changed] = (other[:, changed] + 7) % 40
        nll = token_nll(frames, other)
        torch.testing.assert_close(nll[:, :changed], base[:, :changed], rtol=0, atol=1e-6)
        assert (nll[:, changed] != base[:, changed]).all()  # its own label changed
        if changed + 1 < 5:
            assert ((nll[:, changed + 1] - base[:, changed + 1]).abs() > 1e-6).all()  # its predictor changed
    # the first caption token is predicted from the last visual token, which sees the last frame
    later = frames.clone()
    later[:, -1] = 255 - later[:, -1]
    assert ((token_nll(later, ids)[:, 0] - base[:, 0]).abs() > 1e-6).all()


# ------------------------------------------------------------------------ multi-fine causality
@pytest.mark.parametrize("fine_read", ["learned", "motion"])
@pytest.mark.parametrize("fine_iterations", [1, 2, 3])
def test_a_prediction_never_depends_on_its_own_or_later_frames(fine_iterations: int, fine_read: str) -> None:
    model = build(fine_iterations=fine_iterations, fine_read=fine_read)
    frames, latents = clips()
    with torch.no_grad():
        base = model.passes(frames, latents, every_iteration=True)
        assert len(base.pred_fine_iterations) == fine_iterations
        # Target t (index t) is predicted from h after frame t-1 and z_(t-1): perturbing frames
        # and latents t.. must leave the predictions of targets 0..t unchanged, in every pass.
        for t in range(1, STEPS):
            other_frames, other_latents = frames.clone(), latents.clone()
            other_frames[:, t:] = torch.randint(0, 256, other_frames[:, t:].shape, dtype=torch.uint8)
            other_latents[:, t:] = torch.randn(other_latents[:, t:].shape)
            out = model.passes(other_frames, other_latents, every_iteration=True)
            passes = [(base.pred_coarse, out.pred_coarse)] + list(
                zip(base.pred_fine_iterations, out.pred_fine_iterations, strict=True)
            )
            for number, (before, after) in enumerate(passes):
                torch.testing.assert_close(
                    after[:, : t + 1], before[:, : t + 1], rtol=0, atol=1e-6, msg=f"pass {number}"
                )
                if t + 1 < STEPS:  # the perturbation does reach later predictions
                    assert not torch.allclose(after[:, t + 1 :], before[:, t + 1 :])


def test_fine_iterations_chain_queries_from_the_previous_pass() -> None:
    frames, latents = clips()
    with torch.no_grad():
        one = build(fine_iterations=1).passes(frames, latents, every_iteration=True)
        two = build(fine_iterations=2).passes(frames, latents, every_iteration=True)
    # The same weights: fine 1 is the same pass; fine 2 reads with other queries.
    torch.testing.assert_close(two.pred_fine_iterations[0], one.pred_fine)
    assert not torch.allclose(two.pred_fine, one.pred_fine)


# --------------------------------------------------------------------------------- tokenizer
def test_tiny_tokenizer_builds_offline_from_captions_and_round_trips(tmp_path) -> None:
    tokenizer = fit_tiny_tokenizer(CAPTIONS)
    tokenizer.save_pretrained(str(tmp_path))
    loaded = load_tokenizer(tmp_path)
    assert len(loaded) == len(tokenizer) == 4 + len(set(" ".join(CAPTIONS).replace("-", " - ").split()))
    assert loaded.pad_token_id == 0 and loaded.eos_token == "[EOS]"
    ids, mask = encode_captions(loaded, CAPTIONS + ["a purple square"])
    assert ids.shape[1] == mask.sum(dim=1).max() <= MAX_CAPTION_TOKENS
    for row, caption in zip(ids[:2], CAPTIONS, strict=True):
        words = loaded.decode(row[row != loaded.pad_token_id].tolist(), skip_special_tokens=True)
        assert words.replace(" - ", "-") == caption
    assert loaded.unk_token_id in ids[2].tolist()  # an unseen word
    assert ids[2, mask[2]].tolist()[-1] == loaded.eos_token_id
    assert (ids[~mask] == loaded.pad_token_id).all()
    short_ids, short_mask = encode_captions(loaded, CAPTIONS, max_tokens=3)
    assert short_ids.shape == (2, 3) and short_mask.all()


# ------------------------------------------------------------------------------ joint training
def test_joint_training_lowers_the_caption_loss_on_a_fixed_batch() -> None:
    tokenizer = fit_tiny_tokenizer(CAPTIONS)
    model = build(vocab_size=len(tokenizer)).train()
    model.train_token_embeddings()  # as train() does for the joint objective
    ids, mask = encode_captions(tokenizer, CAPTIONS)
    frames, latents = clips()
    # train.detach_h with the joint objective: nothing is frozen, the recon loss stops at h.
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    history = []
    for _ in range(15):
        losses = model(frames, latents, lambda_coarse=0.0, detach_h=True, caption_ids=ids, caption_mask=mask)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        history.append(losses["caption_loss_fine"].item())
    expected = losses["caption_loss_fine"] + 1.0 * losses["loss_fine"]  # lambda_recon defaults to 1 here
    torch.testing.assert_close(losses["loss"], expected)
    assert history[-1] < 0.75 * history[0], history
    assert model.query_proj.weight.grad is not None and model.llm.layers[0].self_attn.q_proj.weight.grad is not None


def test_detach_h_keeps_the_recon_gradient_away_from_the_llm() -> None:
    model = build().train()
    frames, latents = clips()
    model(frames, latents, detach_h=True)["loss"].backward()
    assert all(p.grad is None for p in model.llm.parameters())
    assert model.head.parameters().__next__().grad is not None


# ------------------------------------------------------------------------------------ params
def test_new_params_have_defaults_and_reject_unknown_values() -> None:
    params = parse_params({})
    assert (params.train.objective, params.train.lambda_recon, params.model.fine_iterations) == ("recon", 0.5, 1)
    joint = parse_params({"train": {"objective": "joint", "lambda_recon": 0.25}, "model": {"fine_iterations": 3}})
    assert (joint.train.objective, joint.train.lambda_recon, joint.model.fine_iterations) == ("joint", 0.25, 3)
    for raw, key in (
        ({"train": {"objective": "caption"}}, "train.objective"),
        ({"train": {"lambda_recon": -1}}, "train.lambda_recon"),
        ({"model": {"fine_iterations": 0}}, "model.fine_iterations"),
        ({"train": {"captions": True}}, "train.captions"),
    ):
        with pytest.raises(ParamsError, match=key):
            parse_params(raw)
