"""User errors end a stage with one clear line and no traceback; bugs keep theirs. A failed stage
leaves its previous outputs; the split is checked before the VAE fit."""

from __future__ import annotations

import importlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from pipeline_utils import REPO, SHRUNK, repo_params, subprocess_env
from video_fixtures import encode_clip

from fovea.cli import is_user_error, run_stage
from fovea.data.split import split_of
from fovea.errors import FoveaUserError
from fovea.io import staged_outputs
from fovea.params import ParamsError
from fovea.split_check import MIN_VAL_CLIPS, SplitError, check_split, small_val_split

STAGES = ("videos", "vae", "latents", "dino", "train", "evaluate")


def _stage(script: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "stages" / f"{script}.py"), *args],
        cwd=cwd,
        env=subprocess_env(),
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _write_params(path: Path, override: dict) -> Path:
    path.write_text(yaml.safe_dump(repo_params(override), sort_keys=False))
    return path


@pytest.mark.parametrize("stage", STAGES)
def test_a_bad_param_prints_one_line_naming_the_key_and_no_traceback(tmp_path: Path, stage: str) -> None:
    params = _write_params(tmp_path / "params.yaml", {"frames": {"num": 1}})
    result = _stage(stage, "--params", str(params))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [f"{stage}: invalid params: frames.num: Input should be greater than or equal to 2"]


def test_a_missing_input_is_a_user_error_without_traceback(tmp_path: Path) -> None:
    result = _stage(
        "train",
        "--params",
        str(REPO / "params.yaml"),
        "--latents",
        str(tmp_path / "none"),
        "--out",
        str(tmp_path / "fvlm"),
        "--live",
        str(tmp_path / "live"),
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "no latents" in result.stderr and "run the latents stage first" in result.stderr


def test_target_dino_without_its_features_is_a_user_error_without_traceback(tmp_path: Path) -> None:
    params = _write_params(tmp_path / "params.yaml", {"target": "dino"})
    (tmp_path / "latents").mkdir()
    (tmp_path / "latents" / "manifest.json").write_text("{}")
    (tmp_path / "dino").mkdir()
    (tmp_path / "dino" / "manifest.json").write_text('{"target": "vae"}')
    paths = ("--latents", str(tmp_path / "latents"), "--out", str(tmp_path / "fvlm"), "--live", str(tmp_path / "live"))
    result = _stage("train", "--params", str(params), *paths, "--dino", str(tmp_path / "dino"))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "holds no DINO features" in result.stderr and "rerun the dino stage" in result.stderr
    result = _stage("dino", "--params", str(params), "--latents", str(tmp_path / "none"), "--out", str(tmp_path / "o"))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "run the latents stage first" in result.stderr


def test_evaluate_without_a_model_is_a_user_error_without_traceback(tmp_path: Path) -> None:
    result = _stage("evaluate", "--params", str(REPO / "params.yaml"), "--model", str(tmp_path / "none"))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "no trained model" in result.stderr and "run the train stage first" in result.stderr


def test_run_stage_prints_user_errors_and_reraises_bugs(capsys: pytest.CaptureFixture[str]) -> None:
    def bad_params() -> None:
        raise ParamsError("invalid params: head: unknown head 'nosuch'")

    with pytest.raises(SystemExit) as exit_info:
        run_stage(bad_params, "train")
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == "train: invalid params: head: unknown head 'nosuch'\n"

    def bug() -> None:
        raise KeyError("a bug")

    with pytest.raises(KeyError):  # a bug keeps its traceback
        run_stage(bug, "train")


USER_ERRORS = (
    "fovea.data.sources.errors:VideoSourceError",
    "fovea.data.manifest:LatentCacheError",
    "fovea.models.loading:ModelLoadError",
    "fovea.models.init:CheckpointInitError",
    "fovea.experiments:ReportError",
    "fovea.train:TrainingDiverged",
    "fovea.evaluate:EvalInputError",
    "fovea.split_check:SplitError",
)


@pytest.mark.parametrize("name", USER_ERRORS)
def test_the_projects_user_errors_print_as_one_line(name: str) -> None:
    module_name, class_name = name.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    assert is_user_error(cls("message"))
    assert not is_user_error(RuntimeError("message"))


# --------------------------------------------------------------------------- staged outputs


def test_staged_outputs_publish_together_or_not_at_all(tmp_path: Path) -> None:
    model, metrics = tmp_path / "models" / "vae", tmp_path / "metrics" / "vae.json"
    model.mkdir(parents=True)
    (model / "weights").write_bytes(b"old")
    metrics.parent.mkdir()
    metrics.write_text("old")

    with pytest.raises(RuntimeError, match="check failed"):
        with staged_outputs(model, metrics) as (new_model, new_metrics):
            new_model.mkdir()
            (new_model / "weights").write_bytes(b"new")
            new_metrics.write_text("new")
            raise RuntimeError("check failed")
    assert (model / "weights").read_bytes() == b"old" and metrics.read_text() == "old"

    with staged_outputs(model, metrics) as (new_model, new_metrics):
        new_model.mkdir()
        (new_model / "weights").write_bytes(b"new")
        new_metrics.write_text("new")
    assert (model / "weights").read_bytes() == b"new" and metrics.read_text() == "new"
    # Nothing staged is left behind.
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["metrics", "models", "vae", "vae.json", "weights"]


def test_staged_outputs_refuse_to_publish_a_missing_output(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text("old")
    with pytest.raises(RuntimeError, match="not written"):
        with staged_outputs(tmp_path / "model", tmp_path / "metrics.json") as (_, new_metrics):
            new_metrics.write_text("new")
    assert (tmp_path / "metrics.json").read_text() == "old" and not (tmp_path / "model").exists()


# --------------------------------------------------------------------------- split check


def _keys(count: int, val_fraction: float, split: str | None = None) -> list[str]:
    keys, index = [], 0
    while len(keys) < count:
        key = f"clip-{index:06d}"
        if split is None or split_of(key, val_fraction) == split:
            keys.append(key)
        index += 1
    return keys


def _write_shard(path: Path, samples: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for key, video in samples.items():
            for extension, data in (("mp4", video), ("txt", b"caption")):
                info = tarfile.TarInfo(f"{key}.{extension}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_check_split_counts_keys_and_stops_on_an_empty_val_split(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    _write_shard(videos / "shard-000000.tar", {key: b"x" for key in _keys(5, 0.25, "train")})
    with pytest.raises(SplitError) as info:
        check_split(videos, 0.25)
    message = str(info.value)
    assert "train 5, val 0" in message and "raise data.val_fraction or add clips" in message
    assert isinstance(info.value, FoveaUserError)

    _write_shard(videos / "shard-000001.tar", {key: b"x" for key in _keys(3, 0.25, "val")})
    counts, warning = check_split(videos, 0.25)
    assert counts == {"train": 5, "val": 3}
    assert warning is not None and "only 3 val clips" in warning

    with pytest.raises(SplitError, match="holds no shard"):
        check_split(tmp_path / "nothing", 0.25)


def test_small_val_split_threshold() -> None:
    assert small_val_split(MIN_VAL_CLIPS - 1) and small_val_split(1)
    assert not small_val_split(MIN_VAL_CLIPS)


def _previous_outputs(root: Path) -> dict[Path, bytes]:
    (root / "models" / "vae").mkdir(parents=True)
    (root / "metrics").mkdir()
    files = {
        root / "models" / "vae" / "config.json": b'{"previous": true}\n',
        root / "models" / "vae" / "diffusion_pytorch_model.safetensors": b"previous weights",
        root / "metrics" / "vae.json": b'{"val_mse": 0.001}\n',
    }
    for path, data in files.items():
        path.write_bytes(data)
    return files


def _vae_stage(root: Path, params: Path) -> subprocess.CompletedProcess:
    return _stage(
        "vae",
        "--params",
        str(params),
        "--videos",
        str(root / "videos"),
        "--out",
        str(root / "models" / "vae"),
        "--metrics",
        str(root / "metrics" / "vae.json"),
    )


def _unchanged(files: dict[Path, bytes]) -> bool:
    directory = next(iter(files)).parent
    return all(path.read_bytes() == data for path, data in files.items()) and len(list(directory.iterdir())) == 2


def test_vae_stops_before_the_fit_when_no_clip_is_in_val(tmp_path: Path) -> None:
    files = _previous_outputs(tmp_path)
    frames = np.zeros((6, 32, 32, 3), np.uint8)
    _write_shard(
        tmp_path / "videos" / "shard-000000.tar", {key: encode_clip(frames) for key in _keys(4, SHRUNK_VAL, "train")}
    )
    result = _vae_stage(tmp_path, _write_params(tmp_path / "params.yaml", _shrunk(SHRUNK_VAL)))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "train 4, val 0" in result.stderr and "raise data.val_fraction or add clips" in result.stderr
    assert "training frames" not in result.stderr  # stopped before reading any clip
    assert _unchanged(files)


def test_a_failing_vae_check_leaves_the_previous_weights_and_metrics(tmp_path: Path) -> None:
    """Every val clip is undecodable: the fit runs, the val check fails after it, and the
    previous models/vae and metrics/vae.json stay byte-identical."""
    files = _previous_outputs(tmp_path)
    rng = np.random.default_rng(0)
    samples = {
        key: encode_clip(rng.integers(0, 255, (6, 32, 32, 3), np.uint8)) for key in _keys(3, SHRUNK_VAL, "train")
    }
    samples.update({key: b"not a video" for key in _keys(2, SHRUNK_VAL, "val")})
    _write_shard(tmp_path / "videos" / "shard-000000.tar", samples)
    result = _vae_stage(tmp_path, _write_params(tmp_path / "params.yaml", _shrunk(SHRUNK_VAL)))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "only 2 val clips" in result.stderr  # the small-split warning came first
    assert "no decodable val-split clips" in result.stderr
    assert _unchanged(files)
    assert not [p for p in (tmp_path / "models").iterdir() if p.name != "vae"]  # no staging left


SHRUNK_VAL = 0.25


def _shrunk(val_fraction: float) -> dict:
    return {**SHRUNK, "data": {**SHRUNK["data"], "val_fraction": val_fraction}}


# --------------------------------------------------------------------------- train's outputs


def _train_stage(monkeypatch: pytest.MonkeyPatch, root: Path, fake_train) -> None:
    import runpy

    import fovea.train

    (root / "latents").mkdir()
    (root / "latents" / "manifest.json").write_text("{}")
    monkeypatch.setattr(fovea.train, "train", fake_train)  # the stage imports it when loaded
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "stages/train.py",
            "--params",
            str(REPO / "params.yaml"),
            "--latents",
            str(root / "latents"),
            "--out",
            str(root / "models" / "fvlm"),
            "--live",
            str(root / "metrics" / "train"),
        ],
    )
    runpy.run_path(str(REPO / "stages" / "train.py"), run_name="stage_train")["main"]()


def _previous_training(root: Path) -> dict[Path, bytes]:
    files = {
        root / "models" / "fvlm" / "model.safetensors": b"previous weights",
        root / "metrics" / "train" / "metrics.json": b'{"step": 299}\n',
        root / "metrics" / "train" / "plots" / "metrics" / "loss.tsv": b"step\tloss\n299\t0.1\n",
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def test_interrupted_training_leaves_the_previous_model_and_curves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _previous_training(tmp_path)

    def interrupted(params, latents_dir, out_dir, logger=None, accelerator=None, tokenizer_dir=None):
        for step in range(3):  # partial curves, written as training goes
            logger.log_metric("loss", 1.0 / (step + 1))
            logger.next_step()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train_stage(monkeypatch, tmp_path, interrupted)
    assert all(path.read_bytes() == data for path, data in files.items())
    assert sorted(p.name for p in (tmp_path / "metrics").iterdir()) == ["train"]
    assert sorted(p.name for p in (tmp_path / "metrics" / "train").rglob("*")) == [
        "loss.tsv",
        "metrics",
        "metrics.json",
        "plots",
    ]
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["fvlm"]


def test_finished_training_publishes_the_model_with_its_curves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _previous_training(tmp_path)

    def finished(params, latents_dir, out_dir, logger=None, accelerator=None, tokenizer_dir=None):
        logger.log_metric("loss_fine", 0.5)
        logger.next_step()
        out_dir.mkdir()
        (out_dir / "model.safetensors").write_bytes(b"new weights")
        return type("Result", (), {"steps": 1, "final": {"loss_fine": 0.5}})()

    _train_stage(monkeypatch, tmp_path, finished)
    assert (tmp_path / "models" / "fvlm" / "model.safetensors").read_bytes() == b"new weights"
    assert json.loads((tmp_path / "metrics" / "train" / "metrics.json").read_text())["loss_fine"] == 0.5
    assert not (tmp_path / "metrics" / "train" / "plots" / "metrics" / "loss.tsv").exists()  # old curves gone
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["fvlm"]
