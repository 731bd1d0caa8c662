"""The latents and train stages under `accelerate launch` with 2 CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from pipeline_utils import SHRUNK

from fovea.data.shards import iter_latent_samples
from fovea.data.sources import write_videos
from fovea.models.vae import tiny_vae
from fovea.params import parse_params

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

PARAMS = {
    "data": {"num_clips": 10, "frames_per_clip": 6, "size": 32, "clips_per_shard": 3, "distractors": 4},
    "frames": {"num": 4, "size": 32},
    "vae": {"block_channels": [8, 8, 8]},
    "model": SHRUNK["model"],
    "heads": {"film": {"channels": [8, 8, 8], "film_hidden": 16}},
    "train": {"steps": 3, "batch_size": 2, "warmup": 1},
    "compute": {"num_workers": 1},
}
TWO_PROCESSES = [
    sys.executable,
    "-m",
    "accelerate.commands.launch",
    "--multi_gpu",
    "--num_processes",
    "2",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
]


def stage(*command: str, cwd: Path) -> str:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(command, cwd=cwd, env=env, check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("distributed")
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    params = parse_params(PARAMS)
    write_videos(params.data, root / "videos")
    torch.manual_seed(0)
    tiny_vae(params.vae).save_pretrained(root / "vae")
    return root


def _latent_samples(directory: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {s.key: (s.frames, s.latents) for split in ("train", "val") for s in iter_latent_samples(directory / split)}


def test_two_process_latent_cache_holds_exactly_the_one_process_clips(workdir):
    common = [
        "--params",
        str(workdir / "params.yaml"),
        "--videos",
        str(workdir / "videos"),
        "--vae",
        str(workdir / "vae"),
    ]
    stage(sys.executable, str(REPO / "stages/latents.py"), *common, "--out", str(workdir / "latents1"), cwd=workdir)
    out = stage(
        *TWO_PROCESSES, str(REPO / "stages/latents.py"), *common, "--out", str(workdir / "latents2"), cwd=workdir
    )
    assert "(2 process(es))" in out and out.count("latents: kept") == 1  # only process 0 reports

    one, two = _latent_samples(workdir / "latents1"), _latent_samples(workdir / "latents2")
    assert len(one) == PARAMS["data"]["num_clips"]
    assert sorted(one) == sorted(two)  # no clip lost, none twice
    for key in one:
        np.testing.assert_array_equal(one[key][0], two[key][0])
        np.testing.assert_allclose(one[key][1].astype(np.float32), two[key][1].astype(np.float32), atol=1e-3)
    manifest = json.loads((workdir / "latents2" / "manifest.json").read_text())
    assert manifest["processes"] == 2 and manifest["kept"]["total"] == len(one)
    assert not list(workdir.glob(".latents2.parts*"))


# joint: the caption loss trains everything upstream of h while the recon loss stops at h
# (detach_h): DDP must find a gradient for every parameter.
@pytest.mark.parametrize("objective", ["recon", "joint"])
def test_two_process_training_writes_one_checkpoint(workdir, objective):
    if not (workdir / "latents1").exists():
        pytest.fail("needs the latents of the previous test")
    params = workdir / f"params-{objective}.yaml"
    params.write_text(yaml.safe_dump({**PARAMS, "train": {**PARAMS["train"], "objective": objective}}))
    tokenizer = workdir / "tokenizer"
    stage(
        sys.executable,
        str(REPO / "stages/tokenizer.py"),
        "--params",
        str(params),
        "--videos",
        str(workdir / "videos"),
        "--out",
        str(tokenizer),
        cwd=workdir,
    )
    fvlm, live = workdir / f"fvlm-{objective}", workdir / f"live-{objective}"
    out = stage(
        *TWO_PROCESSES,
        str(REPO / "stages/train.py"),
        "--params",
        str(params),
        "--latents",
        str(workdir / "latents1"),
        "--tokenizer",
        str(tokenizer),
        "--out",
        str(fvlm),
        "--live",
        str(live),
        cwd=workdir,
    )
    assert out.count("train: 3 steps on 2 process(es)") == 1
    training = json.loads((fvlm / "training.json").read_text())
    assert training["processes"] == 2 and training["steps"] == 3
    assert (training["train_caption_ratio_last100"] is not None) == (objective == "joint")
    assert (fvlm / "model.safetensors").is_file() and (fvlm / "tokenizer").is_dir()
    assert [p.name for p in workdir.iterdir() if p.name.startswith(f".{fvlm.name}")] == []
    logged = (live / "plots" / "metrics" / "loss_fine.tsv").read_text().splitlines()
    assert len(logged) == 1 + 3  # header + one row per step, written once
