"""stages/sweep.py: which runs each sweep asks DVC for, and that every -S setting is a valid
params.yaml key and value (a typo would only show once the sweep reached that run)."""

from __future__ import annotations

import runpy

import pytest
import yaml
from pipeline_utils import REPO

from fovea.params import parse_params
from fovea.presets import merge_overrides

SWEEP = runpy.run_path(str(REPO / "stages" / "sweep.py"), run_name="sweep")


@pytest.fixture
def calls(monkeypatch) -> list[tuple[str, dict]]:
    made: list[tuple[str, dict]] = []

    def fake_run(name, settings, done):
        made.append((name, settings))
        return {"ratio_late": {"sfilm": 1.3, "stx": 1.1, "xattn": 1.0}.get(settings["head"], 1.05)}

    monkeypatch.setitem(SWEEP["sweep_heads"].__globals__, "run", fake_run)
    return made


def _dotted(settings: dict) -> dict:
    nested: dict = {}
    for key, value in settings.items():
        *path, last = key.split(".")
        node = nested
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return nested


def _valid(settings: dict) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    merge_overrides(params, _dotted(settings))
    parse_params(params)


def test_objective_sweep_runs_every_variant_and_head_seed_by_seed(calls):
    SWEEP["sweep_objectives"]([0, 1], list(SWEEP["VARIANTS"]), ("film", "sfilm"), {})
    names = [name for name, _ in calls]
    assert len(names) == 2 * 3 * 2 == len(set(names))
    assert names[:6] == [f"obj-{v}-{h}-s0" for v in ("recon-vae", "joint-vae", "recon-dino") for h in ("film", "sfilm")]
    settings = dict(calls)
    assert settings["obj-joint-vae-sfilm-s1"]["train.objective"] == "joint"
    assert settings["obj-recon-dino-film-s0"]["target"] == "dino"
    for _, each in calls:
        _valid(each)


def test_head_sweep_runs_the_negative_control_for_film_and_the_best_spatial_head(calls):
    SWEEP["sweep_heads"]([0, 1, 2, 3], ["film", "sfilm", "stx", "xattn"], {})
    names = [name for name, _ in calls]
    pans = [name for name in names if name.startswith("pan-")]
    assert sorted(pans) == sorted(f"pan-{h}-s{s}" for h in ("film", "sfilm") for s in range(4))
    # Rounds of three seeds: seed 3's control runs come after the first round's pan runs.
    assert names.index("pan-film-s0") < names.index("control-film-s3")
    for _, each in calls:
        _valid(each)
