"""The caption loss of the joint objective: next-token cross-entropy on caption positions.

A pass's sequence is ``[text, mode, x1..xT, c1..cL]``. Caption token ``c_i`` is predicted from
the hidden state one position before it, so ``c_1`` from the last visual token ``x_T``, ``c_2``
from ``c_1`` and so on; padded positions (mask False) are left out. Logits are the hidden states
times the LLM's input-embedding matrix transposed: tied output embeddings, as SmolLM2 ties its
word embeddings, so the base model (no LM head) is all that is loaded and the tiny LLM needs no
extra output layer. The embedding table is frozen under the recon objective and trained under
joint (a frozen random tiny table gives logits near zero); the visual tokens keep the norm it had
at initialisation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def caption_token_nll(
    hidden: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, embedding: torch.Tensor, first: int
) -> torch.Tensor:
    """Per-token negative log-likelihood [B, L] of the caption (0 at padding).

    Args:
        hidden: LLM hidden states over the whole sequence [B, S, D].
        ids: caption token ids [B, L], placed in the sequence at positions ``first..first+L-1``.
        mask: [B, L] bool, True at real tokens (padding is on the right).
        embedding: the LLM's input-embedding matrix [V, D] (tied output projection).
        first: the sequence position of the first caption token (>= 1).
    """
    length = ids.shape[1]
    predictors = hidden[:, first - 1 : first - 1 + length]  # position p predicts token p + 1
    logits = predictors @ embedding.t().to(predictors.dtype)
    labels = ids.masked_fill(~mask, IGNORE_INDEX)
    nll = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="none")
    return nll.view(labels.shape)


def caption_loss(
    hidden: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, embedding: torch.Tensor, first: int
) -> torch.Tensor:
    """Mean NLL over the batch's real caption tokens (a scalar)."""
    return caption_token_nll(hidden, ids, mask, embedding, first).sum() / mask.sum().clamp_min(1)
