"""The one place that reads ``params.yaml``.

Every stage calls :func:`load_params` before doing any work, so a typo or an out-of-range value
stops the run with a message naming the key (``frames.num: ...``) instead of failing midway.
Unknown keys are rejected everywhere (``extra="forbid"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from fovea.errors import FoveaUserError


class ParamsError(FoveaUserError, ValueError):
    """``params.yaml`` is unreadable or holds an unknown key or a bad value."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(_Section):
    """Where videos come from (the ``videos`` stage); ``docs/sources.md`` describes each source."""

    # a registered source (fovea.data.sources); it checks the params it reads
    source: str = "synthetic"
    # Seeds the data side (synthetic clips, the tiny VAE's fit) apart from the top-level `seed`,
    # so a sweep over training seeds reuses the same clips and latents.
    seed: int = Field(0, ge=0)
    # synthetic source: `control` is the known-answer task (fovea.data.control), `sprites` the
    # older set of bouncing sprites (fovea.data.synthetic)
    task: Literal["control", "sprites"] = "control"
    num_clips: int = Field(2400, ge=2)
    frames_per_clip: int = Field(8, ge=2)
    size: int = Field(64, ge=16, le=1024)
    fps: int = Field(8, ge=1, le=120)
    sprites: int = Field(3, ge=1, le=16, description="sprites task: moving sprites per clip")
    # control task: look-alike squares beside the moving target, and what moves: the target
    # alone, or the whole frame (`pan`, the negative control)
    distractors: int = Field(12, ge=0, le=32)
    motion: Literal["target", "pan"] = "target"
    # webvid source: a WebVid-format CSV or parquet (videoid, contentUrl, name, duration, ...)
    url_list: str | None = Field(None, min_length=1)
    # shards source: existing WebDataset shards, a brace pattern (local or fsspec URL)
    shards: str | None = Field(None, min_length=1)
    # folder source: a directory of video files, with optional captions (CSV: file, caption)
    folder: str | None = Field(None, min_length=1)
    captions_csv: str | None = Field(None, min_length=1)
    # selection (real sources): the first max_videos entries whose duration is in range
    max_videos: int | None = Field(None, ge=1)
    min_duration: float | None = Field(None, ge=0.0, description="seconds")
    max_duration: float | None = Field(None, gt=0.0, description="seconds")
    max_bytes: int = Field(100_000_000, ge=1, description="largest video file kept, in bytes")
    # downloads (webvid source)
    download_workers: int = Field(16, ge=1, le=256)
    connect_timeout: float = Field(10.0, gt=0.0, description="seconds to open a connection")
    read_timeout: float = Field(30.0, gt=0.0, description="seconds of silence before giving up")
    download_timeout: float = Field(300.0, gt=0.0, description="seconds one download attempt may take in all")
    retries: int = Field(2, ge=0, le=10, description="extra attempts after a transient failure")
    retry_backoff: float = Field(1.0, ge=0.0, description="seconds before the first retry; doubles")
    timeout_reruns: int = Field(1, ge=0, description="later runs that try again a URL that timed out")
    download_cache: str | None = Field(None, min_length=1, description="download cache; default: <videos dir>_cache")
    # output layout and split
    clips_per_shard: int = Field(100, ge=1)
    val_fraction: float = Field(0.125, gt=0.0, lt=1.0)

    @field_validator("source")
    @classmethod
    def _known_source(cls, name: str) -> str:
        from fovea.data.sources import source_names

        if name not in source_names():
            raise ValueError(f"unknown source {name!r}; valid sources: {', '.join(source_names())}")
        return name

    @model_validator(mode="after")
    def _source_params(self) -> DataParams:
        from fovea.data.sources import video_source

        video_source(self.source).check(self)
        return self

    @model_validator(mode="after")
    def _duration_range(self) -> DataParams:
        if self.min_duration is not None and self.max_duration is not None and self.min_duration > self.max_duration:
            raise ValueError(f"data.min_duration ({self.min_duration}) exceeds data.max_duration ({self.max_duration})")
        return self


class FrameParams(_Section):
    """How clips become model inputs (the ``latents`` stage)."""

    num: int = Field(8, ge=2, description="frames sampled from each clip")
    size: int = Field(64, ge=16, le=1024, description="square crop side in pixels")
    fps: float | None = Field(
        None,
        gt=0.0,
        le=240.0,
        description="sample num frames at this rate from the clip's start; unset: at one constant stride over it",
    )


class VaeParams(_Section):
    """``name: tiny`` fits a small AutoencoderKL; anything else is a pretrained name or path."""

    name: str = "tiny"
    latent_channels: int = Field(4, ge=1)
    block_channels: list[int] = Field(default_factory=lambda: [16, 32, 32, 32], min_length=1)
    steps: int = Field(200, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(2e-3, gt=0.0)
    # Frames read from each split to fit the tiny VAE and to check any VAE on val (null: all).
    fit_frames: int | None = Field(4096, ge=1)

    @field_validator("block_channels")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(c < 1 for c in value):
            raise ValueError("every channel count must be >= 1")
        return value


class TinyModelParams(_Section):
    """Sizes of the randomly initialised encoder and LLM used when ``model.encoder/llm: tiny``."""

    encoder_dim: int = Field(64, ge=8)
    encoder_layers: int = Field(2, ge=1)
    patch_size: int = Field(8, ge=2)
    llm_dim: int = Field(64, ge=8)
    llm_layers: int = Field(2, ge=1)
    attention_heads: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _divisible(self) -> TinyModelParams:
        for key in ("encoder_dim", "llm_dim"):
            if getattr(self, key) % self.attention_heads:
                raise ValueError(f"{key} must be divisible by attention_heads")
        return self


class ModelParams(_Section):
    encoder: str = "tiny"
    llm: str = "tiny"
    freeze_encoder: bool = False
    # learned: the fine query made by the LLM decides where to read. motion: the fine read is
    # confined to the patches that changed since the previous frame, a known-answer read at the
    # right place for the control task (README: "Known-answer control").
    fine_read: Literal["learned", "motion"] = "motion"
    # The head predicts the change from the previous latent (z_prev + head(h, z_prev)), so no
    # head spends its training learning to copy; every head gets the same treatment.
    residual: bool = True
    # Fine passes after the coarse one: fine k reads each frame with queries made from pass
    # k-1's hidden states (fine 1 from the coarse pass's). The model trains on the last one;
    # evaluate compares the coarse pass with the last and lists every iteration.
    fine_iterations: int = Field(1, ge=1, le=8)
    tiny: TinyModelParams = Field(default_factory=TinyModelParams)


class TrainParams(_Section):
    steps: int = Field(300, ge=1)
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(2e-3, gt=0.0)
    warmup: int = Field(20, ge=0)
    # 0 is the original's protocol: only the fine loss trains, the coarse pass is only measured
    # ("fine_only"); otherwise both passes train ("both_passes").
    lambda_coarse: float = Field(1.0, ge=0.0, allow_inf_nan=False)
    # Stop the prediction loss at h: only the head learns; the encoder, LLM and queries keep
    # their initial weights. Trained through h, a random tiny LLM first flattens h across clips
    # (the head cannot use it yet, so its variation is noise) and the head never learns to use it.
    detach_h: bool = True
    # recon: the prediction (reconstruction) losses alone. joint: the caption loss of the last
    # fine pass (next-token cross-entropy on the caption appended after the visual tokens) plus
    # lambda_recon x its reconstruction loss (plus lambda_coarse x the coarse one). With detach_h
    # the reconstruction loss still stops at h, but the caption loss trains the LLM, encoder and
    # queries (README: "Joint objective").
    objective: Literal["recon", "joint"] = "recon"
    lambda_recon: float = Field(0.5, ge=0.0, allow_inf_nan=False)
    weight_decay: float = Field(0.01, ge=0.0)
    grad_clip: float = Field(1.0, gt=0.0)
    # A checkpoint of this project (a `models/fvlm` directory) to start from instead of the
    # built model's weights: fovea.models.init.init_from_checkpoint says what it loads.
    init_from: str | None = Field(None, min_length=1, description="checkpoint directory to start from")

    @property
    def protocol(self) -> str:
        """``fine_only`` (the original's: the coarse pass is only measured) or ``both_passes``."""
        return "fine_only" if self.lambda_coarse == 0 else "both_passes"


class ComputeParams(_Section):
    """Where and how the latents and train stages run."""

    # The command prefix dvc.yaml runs those stages with: `python`, or an `accelerate launch ...`
    # line for several GPUs or nodes (README: "Scale out").
    launch: str = "python"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # auto: bf16 autocast on CUDA, fp32 on CPU.
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    num_workers: int = Field(1, ge=0, description="DataLoader worker processes (decoding, shard reading)")
    compile: bool = False

    @field_validator("launch")
    @classmethod
    def _known_launcher(cls, value: str) -> str:
        if not (value == "python" or value.startswith("python ") or value.startswith("accelerate launch")):
            raise ValueError(f"must be 'python' or start with 'accelerate launch', got {value!r}")
        return value


class EvalParams(_Section):
    batch_size: int = Field(8, ge=1)
    bootstrap: int = Field(1000, ge=10, description="bootstrap resamples for the ratio's interval")
    sample_clips: int = Field(3, ge=1, description="val clips drawn in metrics/samples.png")


class Params(_Section):
    seed: int = Field(0, ge=0)
    head: str = "sfilm"
    # What the model predicts for the next frame: its VAE latent (``vae``) or the frozen encoder's
    # patch features (``dino``, cached by the dino stage: fovea.data.dino).
    target: Literal["vae", "dino"] = "vae"
    heads: dict[str, dict[str, Any]] = Field(default_factory=dict)
    data: DataParams = Field(default_factory=DataParams)
    frames: FrameParams = Field(default_factory=FrameParams)
    vae: VaeParams = Field(default_factory=VaeParams)
    model: ModelParams = Field(default_factory=ModelParams)
    train: TrainParams = Field(default_factory=TrainParams)
    eval: EvalParams = Field(default_factory=EvalParams)
    compute: ComputeParams = Field(default_factory=ComputeParams)

    @field_validator("head")
    @classmethod
    def _known_head(cls, name: str) -> str:
        from fovea.heads import head_names

        if name not in head_names():
            raise ValueError(f"unknown head {name!r}; valid heads: {', '.join(head_names())}")
        return name

    @field_validator("heads")
    @classmethod
    def _known_head_options(cls, options: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        from fovea.heads import check_head_options

        for name, kwargs in options.items():
            check_head_options(name, kwargs or {})
        return options

    @model_validator(mode="after")
    def _consistent(self) -> Params:
        if self.frames.num > self.data.frames_per_clip and self.data.source == "synthetic":
            raise ValueError(
                f"frames.num ({self.frames.num}) exceeds data.frames_per_clip "
                f"({self.data.frames_per_clip}): every synthetic clip would be too short"
            )
        factor = 2 ** (len(self.vae.block_channels) - 1)
        if self.vae.name == "tiny" and self.frames.size % factor:
            raise ValueError(
                f"frames.size ({self.frames.size}) must be divisible by the tiny VAE's "
                f"downsampling factor {factor} (2 ** (len(vae.block_channels) - 1))"
            )
        return self

    def head_options(self, name: str | None = None) -> dict[str, Any]:
        """Constructor options for ``name`` (default: the selected head) from ``heads.<name>``."""
        return dict(self.heads.get(name or self.head) or {})


def _format_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{key}: {message}")
    if len(lines) == 1:  # the common case: one line a stage prints as it is
        return f"invalid params: {lines[0]}"
    return "invalid params:\n" + "\n".join(f"  {line}" for line in lines)


def parse_params(raw: dict[str, Any] | None) -> Params:
    """Validate a params mapping; raise :class:`ParamsError` naming every bad key."""
    if raw is not None and not isinstance(raw, dict):
        raise ParamsError(f"params must be a mapping at the top level, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw or {})
    except ValidationError as error:
        raise ParamsError(_format_error(error)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ParamsError(f"{path} is not valid YAML: {error}") from None
    return parse_params(raw)
