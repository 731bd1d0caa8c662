"""The comparison report as text: results/comparison.md and results/comparison.json."""

from __future__ import annotations

import numpy as np

from fovea.experiments import Experiment
from fovea.report import HeadSummary
from fovea.stats import CI_LEVEL


def _fmt_ci(value: float | None, ci: tuple[float, float] | None, digits: int = 3) -> str:
    if value is None or np.isnan(value):
        return "n/a"
    text = f"{value:.{digits}f}"
    return f"{text} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else text


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def comparison_json(summaries: list[HeadSummary]) -> dict:
    return {
        "ci_level": CI_LEVEL,
        "estimator": "pooled ratio of summed per-clip losses over seeds and clips, frames 3..T; "
        "crossed bootstrap (one clip resample shared by every seed and head, one seed resample); each "
        "interval spans both the crossed-bootstrap one and a t interval over the per-seed values "
        "(the lower low end to the higher high end)",
        "rows": [summary.as_row() for summary in summaries],
    }


COLUMN_NOTES = """\
Columns:
- protocol: `both_passes` (`train.lambda_coarse` > 0: both passes train the head) or `fine_only`
  (`train.lambda_coarse: 0`, the original's: only the fine loss trains; the coarse pass is measured).
- ratio: loss_coarse / loss_fine on the val split over frames 3..T (`ratio_late`), pooled over seeds
  and clips; > 1 means the fine pass's read helps. "ratio > 1?" reads its interval.
- ratio - film: the paired difference from film (same task, protocol, seeds and clips); the
  primary verdict reads its interval: above 0 "better than film", below 0 "worse than film",
  else "no difference from film".
- fovea gain: (L_coarse - L_fine) / (L_hmean - L_fine), frames 3..T: of what clip-specific h is
  worth to the fine pass, the share the fine read adds over the coarse one (n/a where h is worth
  nothing).
- copy gap: loss of copying the previous latent minus the fine loss; <= 0 means the head does no
  better than copying.
- h-mean gap: fine loss with the val clips' mean h (at the same frame) minus the fine loss; about 0
  means the head ignores what is specific to the clip in h. h-shuffle gap: the same with another
  clip's h.
- train ratio (last 100): the mean training-batch ratio over the last 100 steps, the original's own
  measurement; the proposal's criteria (film ~1.17; > 1.17 an improvement; xattn or stx > 1.25
  significant) are set beside it for `fine_only` runs only, since its 1.17 came from joint caption
  + reconstruction training, fine loss only, on training batches.
- val/train gap: (val fine loss - train fine loss) / train fine loss, frames 3..T, on as many
  training clips; about 0 when nothing was memorised.
- caption ratio: the val captions' loss, coarse pass / fine pass (`caption_ratio`); > 1 means the
  fine read tells the LLM more about the caption. Trained only under the joint objective (task
  `.../joint`); after recon training it is an untrained language side's, about 1.
- verdict: the paired difference from film, followed by "no signal in this setup" where, in some
  seed, the copy-gap or h-mean-gap interval does not lie above 0 (the setup then cannot tell "no
  effect" from "not seen").
"""


def comparison_markdown(summaries: list[HeadSummary], left_out: list[tuple[Experiment, str]] = ()) -> str:
    lines = [
        "# Prediction heads: fine/coarse ratio on held-out clips",
        "",
        "Written by `python stages/report.py` from every DVC experiment (`dvc exp show`, saved in `runs/`).",
        "Point estimates pool the per-clip losses over seeds and clips. Each 95% interval spans both a",
        "crossed-bootstrap interval of the same estimator (one clip resample shared by every seed and head of",
        "a task, and a seed resample; differences from film paired on the same draws) and a t interval over",
        "the per-seed values (from the lower of their low ends to the higher of their high ends).",
        "",
        "| task | protocol | head | seeds | steps | params | ratio [95% CI] | ratio > 1? | ratio - film [95% CI] | "
        "fovea gain [95% CI] | copy gap | h-mean gap | h-shuffle gap | train ratio (last 100) | "
        "val/train gap | caption ratio | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        m = s.means
        diff = "baseline" if s.is_baseline else _fmt_ci(s.diff_vs_film, s.diff_ci)
        train_ratio = _fmt(m.get("train_ratio_last100"))
        if s.proposal_criterion():
            train_ratio += f" ({s.proposal_criterion()})"
        lines.append(
            f"| {s.task} | {s.protocol} | {s.head} | {', '.join(map(str, s.seeds))} | {int(m.get('train_steps', 0))} | "
            f"{int(m.get('head_params', 0)):,} | {_fmt_ci(s.ratio, s.ratio_ci)} | {s.above_one()} | {diff} | "
            f"{_fmt_ci(s.fovea_gain, s.fovea_gain_ci, 2)} | {_fmt(m.get('copy_gap'))} | {_fmt(m.get('h_mean_gap'))} | "
            f"{_fmt(m.get('h_shuffle_gap'))} | {train_ratio} | {_fmt(m.get('val_train_gap'), 2)} | "
            f"{_fmt(m.get('caption_ratio'))} | {s.verdict()} |"
        )
    lines += [
        "",
        COLUMN_NOTES,
        "Runs:",
        "",
        "| experiment | task | protocol | head | seed | ratio (frames 3..T) | ratio (all frames) | num clips |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        for run in s.runs:
            lines.append(
                f"| {run.name} | {s.task} | {s.protocol} | {s.head} | {run.seed} | "
                f"{run.metrics['ratio_late']:.4f} | {run.metrics['ratio']:.4f} | "
                f"{int(run.metrics.get('num_clips', 0))} |"
            )
    if left_out:
        lines += ["", "Left out: runs whose other params differ from the compared setup:", ""]
        lines += [f"- {exp.name} ({exp.head}, seed {exp.seed}): {diff}" for exp, diff in left_out]
    return "\n".join(lines) + "\n"
