"""The caption tokenizer (the ``tokenizer`` stage) and caption batches for the joint objective.

A named or local LLM (``model.llm``) brings its own tokenizer: ``AutoTokenizer.from_pretrained``,
saved again with ``save_pretrained`` so train and evaluate never contact the hub. The tiny random
LLM has none, so one is fitted offline on the training split's captions: a lower-cased word-level
vocabulary (``tokenizers``' ``WordLevel`` behind a whitespace/punctuation splitter) with
``[PAD]``, ``[UNK]``, ``[BOS]`` and ``[EOS]``, wrapped in ``PreTrainedTokenizerFast``. The tiny
LLM's vocabulary is then exactly this tokenizer's (``len(tokenizer)``).

Captions enter the model as token ids followed by the end-of-sequence token, cut at
:data:`MAX_CAPTION_TOKENS` and padded on the right (padding is masked out of the loss; on the
right it is never attended to by a real position under causal attention).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from fovea.data.shards import iter_video_samples
from fovea.data.split import split_of
from fovea.errors import FoveaUserError
from fovea.models.loading import load_pretrained

# Tokens of a caption the model reads and predicts, EOS included: synthetic captions take about
# 15, WebVid's names rarely more than 40 (a fixed cap: longer captions are cut).
MAX_CAPTION_TOKENS = 64
SPECIAL_TOKENS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "bos_token": "[BOS]", "eos_token": "[EOS]"}


class TokenizerError(FoveaUserError, RuntimeError):
    """No tokenizer could be built or loaded."""


def training_captions(videos_dir: Path, val_fraction: float) -> list[str]:
    """The captions of the training split of a videos-shard directory, in shard order."""
    return [
        sample.caption for sample in iter_video_samples(videos_dir) if split_of(sample.key, val_fraction) == "train"
    ]


def fit_tiny_tokenizer(captions: Iterable[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose vocabulary is every word of ``captions`` (lower-cased), after
    the four special tokens (``[PAD]`` is id 0). Deterministic: the same captions, the same ids."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordLevel(unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=list(SPECIAL_TOKENS.values()), min_frequency=1)
    tokenizer.train_from_iterator(sorted(captions), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)


def build_tokenizer(llm: str, videos_dir: Path, val_fraction: float) -> PreTrainedTokenizerBase:
    """The tokenizer for ``model.llm``: fitted on the training captions for ``tiny``, else the LLM's own."""
    if llm == "tiny":
        captions = training_captions(videos_dir, val_fraction)
        if not captions:
            raise TokenizerError(f"no training clips in {videos_dir} to fit the tiny tokenizer on")
        return fit_tiny_tokenizer(captions)
    return load_pretrained(AutoTokenizer.from_pretrained, llm, "model.llm")


def load_tokenizer(directory: Path) -> PreTrainedTokenizerBase:
    """A tokenizer written by the ``tokenizer`` stage (or saved beside a checkpoint)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise TokenizerError(f"no tokenizer at {directory}: run the tokenizer stage first (`dvc repro tokenizer`)")
    return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)


def pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id padding uses: the tokenizer's pad token, else its EOS (masked out either way)."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def encode_captions(
    tokenizer: PreTrainedTokenizerBase, captions: list[str], max_tokens: int = MAX_CAPTION_TOKENS
) -> tuple[torch.Tensor, torch.Tensor]:
    """``captions`` -> token ids [B, L] (long) and a mask [B, L] (bool, True at real tokens).

    Each caption is its tokens then EOS (when the tokenizer has one), cut at ``max_tokens`` and
    padded on the right to the longest in the batch (at least one position)."""
    eos = tokenizer.eos_token_id
    rows = []
    for ids in tokenizer(list(captions), add_special_tokens=False)["input_ids"]:
        rows.append((list(ids) + ([eos] if eos is not None else []))[:max_tokens])
    length = max([1, *(len(row) for row in rows)])
    ids = torch.full((len(rows), length), pad_id(tokenizer), dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.bool)
    for index, row in enumerate(rows):
        ids[index, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[index, : len(row)] = True
    return ids, mask
