"""The two-pass FoveatedVLM of DESIGN.md.

Coarse pass: every frame is read with one learned static query; sequence
``[text, <coarse>, v1..vT]``. Fine pass: frame t is read with a query made from the coarse pass's
LLM hidden state after frame t-1 (a learned ``q_init`` for frame 1); sequence
``[text, <fine>, f1..fT]``. In both passes the hidden states at ``<mode>, x1..x(T-1)`` and the
previous latents ``[z_init, z1..z(T-1)]`` go through the same prediction head to predict
``z1..zT``.

``fine_iterations`` > 1 chains fine passes: fine k reads each frame with queries made from fine
k-1's hidden states (fine 1 from the coarse pass's). ``h_fine``/``pred_fine`` are the last one's.
With captions (the joint objective), every pass appends the caption's token embeddings after the
visual tokens: ``[text, <mode>, x1..xT, c1..cL]``; causal attention keeps the hidden states at
the visual positions exactly what they are without it (fovea.models.captions has the loss).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_model
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    Dinov2Config,
    Dinov2Model,
    LlamaConfig,
    PretrainedConfig,
)

from fovea.heads import build_head
from fovea.models.captions import caption_token_nll
from fovea.models.encoder import DeepQueryEncoder, load_dinov2, tiny_dinov2_config
from fovea.models.loading import load_pretrained
from fovea.params import Params

CONFIG_FILE = "fovea_config.json"
WEIGHTS_FILE = "model.safetensors"
ENCODER_CONFIG_FILE = "encoder_config.json"
LLM_CONFIG_FILE = "llm_config.json"
TRAINING_FILE = "training.json"  # how the weights were trained: seed, steps, final losses
TOKENIZER_DIR = "tokenizer"  # the caption tokenizer the model was trained with (save_pretrained)


@dataclass
class VLMConfig:
    """Everything needed to rebuild a FoveatedVLM (saved beside its weights)."""

    head: str
    head_options: dict[str, Any]
    latent_shape: tuple[int, int, int]  # (C, h, w)
    frame_size: int
    encoder: str = "tiny"
    llm: str = "tiny"
    freeze_encoder: bool = False
    tiny: dict[str, int] = field(default_factory=dict)
    # learned: the fine query alone decides where to read; motion: the fine read is confined to
    # the patches that changed since the previous frame (a known-answer read, see motion_patches)
    fine_read: str = "learned"
    # The head predicts the change from z_prev (added back here) rather than the whole latent.
    residual: bool = False
    # What latent_shape holds: the next frame's VAE latent (vae) or its DINO patch features (dino).
    target: str = "vae"
    fine_iterations: int = 1
    # The tiny LLM's vocabulary: the caption tokenizer's size (unused for a pretrained LLM).
    vocab_size: int = 256

    @classmethod
    def from_params(cls, params: Params, latent_shape: tuple[int, int, int], vocab_size: int = 256) -> VLMConfig:
        return cls(
            head=params.head,
            head_options=params.head_options(),
            latent_shape=tuple(latent_shape),
            frame_size=params.frames.size,
            encoder=params.model.encoder,
            llm=params.model.llm,
            freeze_encoder=params.model.freeze_encoder,
            tiny=params.model.tiny.model_dump(),
            fine_read=params.model.fine_read,
            residual=params.model.residual,
            target=params.target,
            fine_iterations=params.model.fine_iterations,
            vocab_size=vocab_size,
        )


def tiny_llama_config(hidden_size: int, layers: int, heads: int, vocab_size: int = 256) -> LlamaConfig:
    return LlamaConfig(
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        vocab_size=vocab_size,
        max_position_embeddings=512,
    )


def load_llm(name: str, tiny_config: PretrainedConfig) -> nn.Module:
    # The base model (no LM head): the recon objective needs hidden states only. A causal-LM
    # checkpoint loads too; its LM head is left out. Weights are loaded in float32 whatever
    # dtype they were saved in (transformers would keep SmolLM2's bfloat16); compute precision
    # is autocast's job.
    if name == "tiny":
        return AutoModel.from_config(tiny_config)
    return load_pretrained(AutoModel.from_pretrained, name, "model.llm", dtype=torch.float32)


# Mean absolute change of a patch's pixels (0-255) above which it counts as moved: far above the
# noise video compression leaves on still regions, far below a sprite appearing or leaving.
MOTION_THRESHOLD = 12.0


def motion_patches(frames: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Which cached tokens a motion read may attend to: [B, T, 1 + P] bool (CLS first).

    In frame t (t >= 2) the patches whose pixels changed since frame t-1; the first frame, and a
    frame where nothing changed, may attend to everything (CLS included), like a plain read.
    Uses frames t-1 and t only, so the read of frame t sees nothing later.
    """
    batch, steps, height, width = frames.shape[:4]
    patches = (height // patch_size) * (width // patch_size)
    moved = torch.zeros(batch, steps, patches, dtype=torch.bool, device=frames.device)
    if steps > 1 and batch > 0:
        change = (frames[:, 1:].float() - frames[:, :-1].float()).abs().mean(dim=-1)  # [B, T-1, H, W]
        per_patch = F.avg_pool2d(change.flatten(0, 1).unsqueeze(1), patch_size).view(batch, steps - 1, patches)
        moved[:, 1:] = per_patch > MOTION_THRESHOLD
    still = ~moved.any(dim=-1, keepdim=True)  # nothing moved: read everything
    return torch.cat([still, moved | still], dim=-1)


@dataclass
class PassOutputs:
    """What one forward of both passes produces, per clip and frame ([B, T, ...])."""

    h_coarse: torch.Tensor  # hidden states that predict latents (at <coarse>, v1..v(T-1))
    h_fine: torch.Tensor
    z_prev: torch.Tensor  # [z_init, z1..z(T-1)]
    pred_coarse: torch.Tensor
    pred_fine: torch.Tensor
    target: torch.Tensor
    # Every fine iteration's predictions, the last being pred_fine (passes(every_iteration=True)).
    pred_fine_iterations: list[torch.Tensor] = field(default_factory=list)
    # With captions: per-clip summed caption NLL [B, 1 + fine_iterations] (coarse first) and the
    # clip's caption token count [B].
    caption_nll: torch.Tensor | None = None
    caption_tokens: torch.Tensor | None = None


class FoveatedVLM(nn.Module):
    def __init__(self, config: VLMConfig, dinov2: Dinov2Model, llm: nn.Module):
        super().__init__()
        self.config = config
        llm_dim = llm.config.hidden_size
        self.encoder = DeepQueryEncoder(dinov2, out_dim=llm_dim, freeze=config.freeze_encoder)
        self.llm = llm
        enc_dim = self.encoder.dim
        channels, height, width = config.latent_shape

        # Queries live in the encoder's input space and steer its attention (they are not part
        # of the token). They start at std 1.0 and the fine-query projection has no bias:
        # otherwise every query attends alike and fine equals coarse.
        self.static_query = nn.Parameter(torch.randn(enc_dim))
        self.q_init = nn.Parameter(torch.randn(enc_dim))
        self.query_proj = nn.Linear(llm_dim, enc_dim, bias=False)

        # The LLM is fed inputs_embeds only: its token table is frozen (trained only by joint's captions).
        llm.get_input_embeddings().requires_grad_(False)
        embeddings = llm.get_input_embeddings().weight.detach()
        # Visual tokens are rescaled to the norm of the LLM's own token embeddings.
        self.register_buffer("embed_norm", embeddings.norm(dim=-1).mean().reshape(()))
        embed_std = embeddings.std().item()
        self.no_text_token = nn.Parameter(torch.randn(llm_dim) * embed_std)
        self.coarse_token = nn.Parameter(torch.randn(llm_dim) * embed_std)
        self.fine_token = nn.Parameter(torch.randn(llm_dim) * embed_std)
        self.z_init = nn.Parameter(torch.zeros(channels, height, width))

        self.head = build_head(
            config.head,
            h_dim=llm_dim,
            latent_channels=channels,
            height=height,
            width=width,
            **config.head_options,
        )

    # ----------------------------------------------------------------------------------- build
    @classmethod
    def build(cls, config: VLMConfig) -> FoveatedVLM:
        """Build from names: pretrained models are loaded, ``tiny`` ones are initialised."""
        tiny = config.tiny
        dinov2 = load_dinov2(
            config.encoder,
            tiny_dinov2_config(
                tiny["encoder_dim"],
                tiny["encoder_layers"],
                tiny["attention_heads"],
                tiny["patch_size"],
                config.frame_size,
            ),
        )
        llm = load_llm(
            config.llm,
            tiny_llama_config(tiny["llm_dim"], tiny["llm_layers"], tiny["attention_heads"], config.vocab_size),
        )
        return cls(config, dinov2, llm)

    def save(self, directory: Path, training: dict[str, Any] | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        if training is not None:
            (directory / TRAINING_FILE).write_text(json.dumps(training, indent=2))
        (directory / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=2))
        (directory / ENCODER_CONFIG_FILE).write_text(self.encoder.dinov2.config.to_json_string())
        (directory / LLM_CONFIG_FILE).write_text(self.llm.config.to_json_string())
        save_model(self, str(directory / WEIGHTS_FILE))

    @classmethod
    def load(cls, directory: Path) -> FoveatedVLM:
        """Rebuild from the saved configs (no hub access) and load the saved weights."""
        directory = Path(directory)
        raw = json.loads((directory / CONFIG_FILE).read_text())
        raw["latent_shape"] = tuple(raw["latent_shape"])
        config = VLMConfig(**raw)
        dinov2 = Dinov2Model(Dinov2Config.from_json_file(directory / ENCODER_CONFIG_FILE))
        llm_config_dict = json.loads((directory / LLM_CONFIG_FILE).read_text())
        # float32 whatever dtype the saved config names (from_config would follow it).
        llm = AutoModel.from_config(AutoConfig.for_model(**llm_config_dict), dtype=torch.float32)
        model = cls(config, dinov2, llm)
        load_model(model, str(directory / WEIGHTS_FILE))
        return model

    # --------------------------------------------------------------------------------- forward
    def _visual_tokens(self, encoded: torch.Tensor) -> torch.Tensor:
        return encoded * (self.embed_norm / encoded.norm(dim=-1, keepdim=True).clamp_min(1e-6))

    def _run_llm(
        self, mode_token: torch.Tensor, visual: torch.Tensor, captions: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[text, mode, x1..xT(, c1..cL)] -> hidden states at [text, mode, x1..xT] [B, T + 2, D]
        and, with ``captions`` (ids, mask [B, L]), the per-clip summed caption NLL [B]."""
        batch, steps = visual.shape[:2]
        prefix = torch.stack([self.no_text_token, mode_token]).unsqueeze(0).expand(batch, -1, -1)
        parts = [prefix, visual]
        embedding = self.llm.get_input_embeddings()
        if captions is not None:
            parts.append(embedding(captions[0]).to(visual.dtype))
        # One call reads the whole sequence: a KV cache would only add operations. Padding is on
        # the right, after every real position, so causal attention needs no padding mask.
        hidden = self.llm(inputs_embeds=torch.cat(parts, dim=1), use_cache=False).last_hidden_state
        if captions is None:
            return hidden, None
        nll = caption_token_nll(hidden, captions[0], captions[1], embedding.weight, first=steps + 2)
        return hidden[:, : steps + 2], nll.sum(dim=1)

    def passes(
        self,
        frames: torch.Tensor,
        latents: torch.Tensor,
        fine_queries: torch.Tensor | None = None,
        detach_h: bool = False,
        captions: tuple[torch.Tensor, torch.Tensor] | None = None,
        every_iteration: bool = False,
    ) -> PassOutputs:
        """``frames`` uint8 [B, T, H, W, 3], ``latents`` [B, T, C, h, w] -> both passes.

        ``fine_queries`` [B, T, D_enc] overrides the queries the coarse pass would choose for
        fine 1 (used by tests to check that equal queries give equal passes). ``detach_h``: the
        head's loss does not reach what makes ``h`` (train.detach_h). ``captions`` (ids, mask
        [B, L]): appended to every pass, whose caption NLL is returned. ``every_iteration``: the
        predictions of every fine iteration too, not only the last.
        """
        batch, steps = frames.shape[:2]
        cache = self.encoder.encode_patches(frames.flatten(0, 1))

        def read(queries: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
            tokens = self.encoder.read(cache, queries.flatten(0, 1), None if allowed is None else allowed.flatten(0, 1))
            return self._visual_tokens(tokens).view(batch, steps, -1)

        hidden, nll = self._run_llm(self.coarse_token, read(self.coarse_queries(batch, steps)), captions)
        hiddens, nlls = [hidden], [nll]
        allowed = self.fine_allowed(frames)
        for iteration in range(self.config.fine_iterations):
            queries = fine_queries if iteration == 0 and fine_queries is not None else self.fine_queries(hidden)
            hidden, nll = self._run_llm(self.fine_token, read(queries, allowed), captions)
            hiddens.append(hidden)
            nlls.append(nll)

        z_prev = torch.cat([self.z_init.expand(batch, 1, *latents.shape[2:]), latents[:, :-1]], dim=1)
        # The coarse pass, the fine iterations the caller wants, the last fine one last.
        predicted = hiddens if every_iteration else [hiddens[0], hiddens[-1]]
        h = [hidden[:, 1 : steps + 1] for hidden in predicted]
        if detach_h:
            h = [part.detach() for part in h]
        # Every pass through the head as one batch: fewer operator calls (and kernel launches),
        # the same result per clip.
        preds = self.predict(torch.cat(h), torch.cat([z_prev] * len(h))).chunk(len(h))
        return PassOutputs(
            h_coarse=h[0],
            h_fine=h[-1],
            z_prev=z_prev,
            pred_coarse=preds[0],
            pred_fine=preds[-1],
            target=latents,
            pred_fine_iterations=list(preds[1:]) if every_iteration else [preds[-1]],
            caption_nll=None if captions is None else torch.stack(nlls, dim=1),
            caption_tokens=None if captions is None else captions[1].sum(dim=1),
        )

    def train_only_head(self) -> None:
        """Freeze everything upstream of ``h`` (train.detach_h with the recon objective): only
        the head and ``z_init`` keep trainable weights. Parameters that never get a gradient would
        stop DDP. (The joint objective freezes nothing here: its caption loss trains upstream.)"""
        for name, parameter in self.named_parameters():
            if not name.startswith(("head.", "z_init")):
                parameter.requires_grad_(False)

    def train_token_embeddings(self) -> None:
        """The joint objective trains the LLM's token table too: it embeds the caption and, tied,
        projects hidden states to logits (frozen, a random tiny table's logits stay near zero).
        The visual tokens' scale stays the one measured at initialisation (``embed_norm``)."""
        self.llm.get_input_embeddings().requires_grad_(True)

    def coarse_queries(self, batch: int, steps: int) -> torch.Tensor:
        return self.static_query.expand(batch, steps, -1)

    def fine_queries(self, hidden_coarse: torch.Tensor) -> torch.Tensor:
        """The query for frame t comes from the coarse hidden state after frame t-1 (v_(t-1))."""
        batch, steps = hidden_coarse.shape[0], hidden_coarse.shape[1] - 2  # [text, mode, x1..xT]
        made = self.query_proj(hidden_coarse[:, 2 : steps + 1])
        return torch.cat([self.q_init.expand(batch, 1, -1), made], dim=1)

    def fine_allowed(self, frames: torch.Tensor) -> torch.Tensor | None:
        """The patches the fine read may attend to, [B, T, 1 + P], or None (all of them)."""
        if self.config.fine_read == "motion":
            return motion_patches(frames, self.encoder.dinov2.config.patch_size)
        return None

    @torch.no_grad()
    def attention_maps(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Where the coarse and the (last) fine queries attend over each frame's patches (last
        encoder layer, mean over heads): two [B, T, P] tensors."""
        batch, steps = frames.shape[:2]
        cache = self.encoder.encode_patches(frames.flatten(0, 1))
        allowed = self.fine_allowed(frames)

        def read(queries: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
            tokens = self.encoder.read(cache, queries.flatten(0, 1), None if mask is None else mask.flatten(0, 1))
            return self._visual_tokens(tokens).view(batch, steps, -1)

        coarse_queries = self.coarse_queries(batch, steps)
        hidden = self._run_llm(self.coarse_token, read(coarse_queries))[0]
        fine_queries = self.fine_queries(hidden)
        for _ in range(self.config.fine_iterations - 1):
            hidden = self._run_llm(self.fine_token, read(fine_queries, allowed))[0]
            fine_queries = self.fine_queries(hidden)
        maps = [
            self.encoder.attention_maps(cache, queries.flatten(0, 1), None if mask is None else mask.flatten(0, 1))
            for queries, mask in ((coarse_queries, None), (fine_queries, allowed))
        ]
        return tuple(m.view(batch, steps, -1) for m in maps)

    def predict(self, h: torch.Tensor, z_prev: torch.Tensor) -> torch.Tensor:
        """Head over [B, T, ...] inputs."""
        out = self.head(h.flatten(0, 1), z_prev.flatten(0, 1)).view(z_prev.shape)
        return z_prev + out if self.config.residual else out

    def forward(
        self,
        frames: torch.Tensor,
        latents: torch.Tensor,
        lambda_coarse: float = 1.0,
        detach_h: bool = False,
        caption_ids: torch.Tensor | None = None,
        caption_mask: torch.Tensor | None = None,
        lambda_recon: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        """Losses of one batch. Without captions (recon): loss_fine + lambda_coarse x loss_coarse.
        With ``caption_ids``/``caption_mask`` (joint): the last fine pass's caption loss +
        lambda_recon x loss_fine + lambda_coarse x loss_coarse; the coarse caption loss is only
        measured."""
        captions = None if caption_ids is None else (caption_ids, caption_mask)
        out = self.passes(frames, latents, detach_h=detach_h, captions=captions)
        loss_fine = F.mse_loss(out.pred_fine, out.target)
        loss_coarse = F.mse_loss(out.pred_coarse, out.target)
        losses = {"loss": loss_fine + lambda_coarse * loss_coarse, "loss_fine": loss_fine, "loss_coarse": loss_coarse}
        if out.caption_nll is not None:
            tokens = out.caption_tokens.sum().clamp_min(1)
            losses["caption_loss_coarse"] = out.caption_nll[:, 0].sum() / tokens
            losses["caption_loss_fine"] = out.caption_nll[:, -1].sum() / tokens
            losses["loss"] = losses["caption_loss_fine"] + lambda_recon * loss_fine + lambda_coarse * loss_coarse
        return losses
