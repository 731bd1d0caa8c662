"""The runs a report compares: every DVC experiment with eval metrics, as `dvc exp show` lists
them, and their saved copies in ``results/runs/`` (DVC keeps experiments only as local refs of the
commit they ran on)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from fovea.errors import FoveaUserError

EVAL_FILE = "metrics/eval.json"
CLIPS_FILE = "metrics/clips.json"


class ReportError(FoveaUserError, RuntimeError):
    pass


@dataclass
class Experiment:
    name: str
    rev: str
    params: dict
    metrics: dict
    clips: dict | None = None
    # The workspace's results are this run's (the workspace is listed under the run's name).
    in_workspace: bool = False

    @property
    def head(self) -> str:
        return self.metrics.get("head") or self.params.get("head", "?")

    @property
    def seed(self) -> int:
        return int(self.metrics.get("seed", self.params.get("seed", 0)))

    @property
    def head_options(self) -> str:
        """``heads.<head>`` of the run's params, as sorted JSON ("{}" when unset)."""
        return json.dumps((self.params.get("heads") or {}).get(self.head) or {}, sort_keys=True)

    @property
    def protocol(self) -> str:
        """``fine_only`` (the original's: only the fine loss trains) or ``both_passes``."""
        if self.metrics.get("protocol"):
            return self.metrics["protocol"]
        return "fine_only" if (self.params.get("train") or {}).get("lambda_coarse", 1.0) == 0 else "both_passes"

    @property
    def target(self) -> str:
        """What the run predicted: ``vae`` latents (runs from before the param) or ``dino`` features."""
        return self.metrics.get("target") or self.params.get("target") or "vae"

    @property
    def objective(self) -> str:
        """What the run trained on: ``recon`` (runs from before the param) or ``joint``."""
        return self.metrics.get("objective") or (self.params.get("train") or {}).get("objective") or "recon"

    @property
    def task(self) -> str:
        """``control``, ``negative control`` (the pan), or the source and task of other setups;
        with ``/joint`` appended for the joint objective and ``/dino`` for runs that predict DINO
        features, so no comparison mixes objectives or targets."""
        data = self.params.get("data", {})
        if data.get("source", "synthetic") != "synthetic" or data.get("task", "control") != "control":
            task = f"{data.get('source', 'synthetic')}/{data.get('task', '-')}"
        else:
            task = "negative control" if data.get("motion") == "pan" else "control"
        variants = [v for v in (self.objective, self.target) if v not in ("recon", "vae")]
        return "/".join([task, *variants])


def _dvc_json(repo: Path, *args: str):
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args, "--json"], cwd=repo, check=False, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise ReportError(f"dvc {' '.join(args)} failed in {repo}:\n{result.stderr.strip()}")
    return json.loads(result.stdout or "[]")


def _clips_at(repo: Path, rev: str) -> dict | None:
    if rev == "workspace":
        path = repo / CLIPS_FILE
        return json.loads(path.read_text()) if path.is_file() else None
    shown = subprocess.run(
        ["git", "show", f"{rev}:{CLIPS_FILE}"], cwd=repo, check=False, capture_output=True, text=True
    )
    return json.loads(shown.stdout) if shown.returncode == 0 else None


def read_experiments(repo: Path, commits: int = 1) -> list[Experiment]:
    """The workspace, the last ``commits`` commits and every experiment run on them that has
    eval metrics.

    Entries with identical metrics (the workspace and the run it matches) are kept once, under
    the experiment's name where one has it.
    """
    found: list[Experiment] = []
    seen: dict[str, int] = {}
    from_experiment: set[int] = set()  # positions in ``found`` that hold a DVC experiment
    for baseline in _dvc_json(repo, "exp", "show", "--num", str(commits)):
        experiments = [rev for exp in baseline.get("experiments") or [] for rev in exp.get("revs", [])]
        for entry, is_experiment in [(baseline, False)] + [(rev, True) for rev in experiments]:
            data = entry.get("data") or {}
            metrics = data.get("metrics", {}).get(EVAL_FILE, {}).get("data")
            if not metrics or entry.get("error"):
                continue
            rev = entry.get("rev", "workspace")
            experiment = Experiment(
                name=entry.get("name") or (rev if rev == "workspace" else rev[:7]),
                rev=rev,
                params=data.get("params", {}).get("params.yaml", {}).get("data", {}),
                metrics=metrics,
                clips=_clips_at(repo, rev),
            )
            fingerprint = json.dumps(metrics, sort_keys=True)
            if fingerprint not in seen:
                seen[fingerprint] = len(found)
                found.append(experiment)
            elif is_experiment and seen[fingerprint] not in from_experiment:
                # The workspace or a commit holding this run's results: listed under the run's name.
                kept = found[seen[fingerprint]]
                experiment.in_workspace = kept.rev == "workspace" or kept.in_workspace
                found[seen[fingerprint]] = experiment
            else:
                found[seen[fingerprint]].in_workspace |= rev == "workspace"
                continue
            if is_experiment:
                from_experiment.add(seen[fingerprint])
    return found


def save_runs(experiments: list[Experiment], directory: Path) -> None:
    """One JSON file per run (name, rev, params, metrics, per-clip losses): what the report is
    computed from, kept with the results, since DVC keeps experiments only as local refs of the
    commit they ran on."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.json"):
        old.unlink()
    for exp in experiments:
        record = {
            "name": exp.name,
            "rev": exp.rev,
            "params": exp.params,
            "metrics": exp.metrics,
            "clips": exp.clips,
            "in_workspace": exp.in_workspace,
        }
        (directory / f"{exp.name}.json").write_text(json.dumps(record, indent=1) + "\n")


def load_runs(directory: Path) -> list[Experiment]:
    """The runs :func:`save_runs` wrote."""
    files = sorted(Path(directory).glob("*.json"))
    if not files:
        raise ReportError(f"no saved runs in {directory}")
    return [Experiment(**json.loads(path.read_text())) for path in files]
