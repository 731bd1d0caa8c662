"""Each stage's params in dvc.yaml are exactly the params its code reads, and params.yaml lists
every key the params models know (so `dvc exp run -S key=value` needs no `+`).

The reads are recorded, not guessed: every stage runs for real on a tiny workspace while each
access to a field of the parsed params objects is noted (a read through ``model_dump`` counts as
a read of every field it dumps). The videos stage runs once per source and task, so a key only
one source reads is seen."""

from __future__ import annotations

import contextlib
import re
import runpy
import sys
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pipeline_utils import REPO, SHRUNK, merge_params, repo_params
from pydantic import BaseModel
from video_fixtures import encode_clip

import fovea.params
from fovea.params import Params, _Section

STAGES = ("videos", "vae", "latents", "dino", "tokenizer", "train", "evaluate")


def _leaves(model: BaseModel | type[BaseModel], prefix: str = "") -> set[str]:
    """Dotted names of every leaf field (a field that is not itself a params section)."""
    cls = model if isinstance(model, type) else type(model)
    names = set()
    for name, info in cls.model_fields.items():
        inner = info.annotation
        if isinstance(inner, type) and issubclass(inner, _Section):
            names |= _leaves(inner, f"{prefix}{name}.")
        else:
            names.add(f"{prefix}{name}")
    return names


ALL_LEAVES = _leaves(Params)


def _expand(entry: str) -> set[str]:
    """A dvc.yaml params entry (a leaf or a whole section) as the leaves it covers."""
    covered = {leaf for leaf in ALL_LEAVES if leaf == entry or leaf.startswith(entry + ".")}
    assert covered, f"dvc.yaml lists {entry!r}, which is no param"
    return covered


class _Recorder:
    """Notes the dotted name of every params field read while active."""

    def __init__(self) -> None:
        self.prefixes: dict[int, str] = {}
        self.read: set[str] = set()
        self.keep: list[Any] = []  # the recorded objects stay alive, so their ids stay unique

    def track(self, params: Params) -> Params:
        def walk(section: BaseModel, prefix: str) -> None:
            self.prefixes[id(section)] = prefix
            self.keep.append(section)
            for name in type(section).model_fields:
                value = object.__getattribute__(section, name)
                if isinstance(value, _Section):
                    walk(value, f"{prefix}{name}.")

        walk(params, "")
        return params

    @contextlib.contextmanager
    def active(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
        recorder = self
        original_load = fovea.params.load_params
        original_dump = _Section.model_dump

        def getattribute(section: Any, name: str) -> Any:
            prefix = recorder.prefixes.get(id(section))
            if prefix is not None and name in type(section).model_fields:
                recorder.read.add(prefix + name)
            return object.__getattribute__(section, name)

        def model_dump(section: Any, *args: Any, **kwargs: Any) -> Any:
            prefix = recorder.prefixes.get(id(section))
            if prefix is not None:
                recorder.read.update(prefix + leaf for leaf in _leaves(section))
            return original_dump(section, *args, **kwargs)

        with monkeypatch.context() as patch:
            patch.setattr(fovea.params, "load_params", lambda *a, **k: recorder.track(original_load(*a, **k)))
            patch.setattr(_Section, "__getattribute__", getattribute, raising=False)
            patch.setattr(_Section, "model_dump", model_dump)
            yield

    def leaves(self) -> set[str]:
        # A section read on its way to a field is not a read of the section's every field.
        return {name for name in self.read if name in ALL_LEAVES}


def _run_stage(
    monkeypatch: pytest.MonkeyPatch,
    recorder: _Recorder,
    stage: str,
    *args: str,
    expect_error: type[BaseException] | None = None,
) -> None:
    monkeypatch.setattr(sys, "argv", [f"stages/{stage}.py", *args])
    with recorder.active(monkeypatch):
        # Loaded here, the stage module imports the recording load_params.
        module = runpy.run_path(str(REPO / "stages" / f"{stage}.py"), run_name=f"stage_{stage}")
        if expect_error is None:
            module["main"]()
        else:
            with pytest.raises(expect_error):
                module["main"]()


def _cmd_params(stage: dict) -> set[str]:
    """Params interpolated into the stage's command (`${compute.launch}`): DVC reruns the stage
    when its command changes, so those are dependencies too."""
    return set(re.findall(r"\$\{([^}]+)\}", stage["cmd"]))


@contextlib.contextmanager
def _file_server(directory: Path) -> Iterator[str]:
    handler = partial(SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def stage_reads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Run every stage on a tiny workspace; the params each one read."""
    root = tmp_path_factory.mktemp("workspace")
    monkeypatch = pytest.MonkeyPatch()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.chdir(root)
    base = repo_params({**SHRUNK, "data": {**SHRUNK["data"], "val_fraction": 0.3}})

    def params_file(name: str, override: dict) -> str:
        path = root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(merge_params(base, override), sort_keys=False))
        return str(path)

    clips = root / "clips"
    clips.mkdir()
    rng = np.random.default_rng(0)
    for index in range(2):
        (clips / f"clip{index}.mp4").write_bytes(encode_clip(rng.integers(0, 255, (6, 32, 32, 3), np.uint8)))
    (root / "captions.csv").write_text("file,caption\nclip0.mp4,a clip\n")

    reads: dict[str, set[str]] = {}
    try:
        videos = _Recorder()
        # Every source and synthetic task once; each writes its own directory.
        runs = {
            "sprites": {"data": {"task": "sprites"}},
            "folder": {
                "data": {
                    "source": "folder",
                    "folder": str(clips),
                    "captions_csv": str(root / "captions.csv"),
                    "min_duration": 0.1,
                    "max_duration": 60,
                    "max_videos": 5,
                }
            },
            "shards": {
                "data": {"source": "shards", "shards": str(root / "videos-folder" / "shard-{000000..000000}.tar")}
            },
        }
        with _file_server(clips) as base_url:
            (root / "list.csv").write_text(
                "videoid,contentUrl,name,duration\n"
                f"v0,{base_url}/clip0.mp4,first,PT00H00M01S\nv1,{base_url}/missing.mp4,second,PT00H00M01S\n"
            )
            runs["webvid"] = {
                "data": {
                    "source": "webvid",
                    "url_list": str(root / "list.csv"),
                    "retries": 1,
                    "retry_backoff": 0.01,
                    "download_workers": 2,
                    "download_cache": str(root / "cache"),
                }
            }
            for name, override in runs.items():
                _run_stage(
                    monkeypatch,
                    videos,
                    "videos",
                    "--params",
                    params_file(name, override),
                    "--out",
                    str(root / f"videos-{name}"),
                )
        params = params_file("control", {})
        _run_stage(monkeypatch, videos, "videos", "--params", params, "--out", "data/videos")
        reads["videos"] = videos.leaves()

        # The dino stage with target: dino (with vae it reads only `target`); train and evaluate
        # with the default target, and again with dino: each reads the union.
        dino = params_file("dino", {"target": "dino"})
        for stage, stage_params in (
            ("vae", params),
            ("latents", params),
            ("dino", dino),
            ("tokenizer", params),
            ("train", params),
            ("evaluate", params),
            ("train", dino),
            ("evaluate", dino),
        ):
            recorder = _Recorder()
            _run_stage(monkeypatch, recorder, stage, "--params", stage_params)
            reads[stage] = reads.get(stage, set()) | recorder.leaves()
    finally:
        monkeypatch.undo()
    return reads


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_depends_on_exactly_the_params_it_reads(stage_reads: dict[str, set[str]], stage: str) -> None:
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]
    listed = set().union(*(_expand(entry) for entry in spec.get("params", [])))
    read = stage_reads[stage] | _cmd_params(spec)
    assert sorted(read - listed) == [], f"{stage} reads params dvc.yaml does not list: a change would not rerun it"
    assert sorted(listed - read) == [], (
        f"dvc.yaml lists params {stage} never reads: a change would rerun it for nothing"
    )


def test_params_yaml_lists_every_key_of_the_params_models() -> None:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())

    def present(name: str) -> bool:
        node = raw
        for part in name.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    missing = sorted(name for name in ALL_LEAVES if not present(name))
    assert missing == [], f"params.yaml lacks {missing}: `dvc exp run -S` could not set them without `+`"
