#!/usr/bin/env bash
# The known-answer control at larger frames, prepared to run unattended on one GPU (issue 11):
# at the default 64 px the latent is 8x8, small enough for FiLM's convolutions to reach every
# cell, so FiLM's "one modulation everywhere" is no handicap there (benchmarks/oracle_heads.py).
# At SIZE=256 the latent is 32x32, the paper's size. Everything else is the default params.yaml
# (tiny models, control task, sfilm's defaults); videos, tokenizer, VAE and latents are made once per task
# and every head x seed trains and evaluates on them. Each finished run is saved in the report's
# run format (fovea.experiments.save_runs), so the comparison is rebuilt here with
#   python stages/report.py --from-runs --out results/control-256px
#
#   SIZE=256 HEADS="film sfilm stx xattn mlp" SEEDS="0 1" PAN_HEADS="film sfilm" \
#     DEADLINE=480 OUT=/tmp/control bash benchmarks/gpu_control.sh
#   SIZE=64 CLIPS=64 STEPS=4 HEADS="film sfilm" SEEDS=0 PAN_HEADS= DEVICE=cpu OUT=/tmp/c bash benchmarks/gpu_control.sh
#
# Up to JOBS runs at a time side by side (each with 2 reader workers and THREADS torch threads):
# tiny models leave most of a GPU idle.
# DEADLINE (seconds since the start, data stages included): no new run starts after it, so the
# call ends in time and the runs already finished come back. A failed data stage or run is
# reported and the others go on; the exit status is 1 if any failed. REV names the commit the
# runs are recorded against (default: HEAD, marked -dirty with uncommitted changes).
# DATA (a folder): where each task's videos, tokenizer, VAE and latents go (default: a temporary
# one); stages whose output is there are skipped, and DATA_STAGES="videos tokenizer" makes only
# those, e.g. to make the videos on another machine and bring them along:
#   SIZE=256 DATA=.gpu_data DATA_STAGES="videos tokenizer" OUT=/tmp/c bash benchmarks/gpu_control.sh
set -euo pipefail
export OMP_NUM_THREADS=${THREADS:-2}
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
python=${PYTHON:-python}
size=${SIZE:-256}
heads=(${HEADS:-film sfilm stx xattn mlp})
seeds=(${SEEDS:-0 1})
pan_heads=(${PAN_HEADS-film sfilm})
deadline=${DEADLINE:-480}
jobs_max=${JOBS:-8}
out=${OUT:?set OUT to the folder the runs go to}
# A run of uncommitted code is marked as such: its results are not the commit's.
rev=${REV:-$(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo -dirty)}
mkdir -p "$out/runs"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
data_root=${DATA:-$work/data}
data_stages=${DATA_STAGES:-videos tokenizer vae latents}

label_of() {  # motion -> the task's name in file and run names
  if [[ $1 == pan ]]; then echo pan; else echo control; fi
}

finish() {  # what ended, in how long; the exit status says whether anything failed
  local failed
  failed=$(cd "$work" && ls failed-* 2>/dev/null | sed 's/^failed-//' | tr '\n' ' ' || true)
  echo "$1 in $SECONDS s${failed:+; failed: $failed}"
  [[ -z $failed ]]
}

params_for() {  # motion, head, seed, reader workers -> $work/<control|pan>-<head>-s<seed>.yaml
  local label; label=$(label_of "$1")
  "$python" - "$work/$label-$2-s$3.yaml" "$1" "$2" "$3" "$4" "$size" "${CLIPS:-}" "${STEPS:-}" "${DEVICE:-cuda}" <<'PY'
import sys
import yaml
from fovea.params import parse_params
from fovea.presets import merge_overrides
path, motion, head, seed, workers, size, clips, steps, device = sys.argv[1:]
params = yaml.safe_load(open("params.yaml"))
data = {"size": int(size), "motion": motion}
if clips:
    data["num_clips"] = int(clips)
overrides = {"head": head, "seed": int(seed), "data": data, "frames": {"size": int(size)},
             "compute": {"device": device, "num_workers": int(workers)}}
if steps:
    overrides["train"] = {"steps": int(steps)}
merge_overrides(params, overrides)
parse_params(params)
open(path, "w").write(yaml.safe_dump(params, sort_keys=False))
PY
}

timed() {  # name, command...
  local name=$1; shift
  local start=$SECONDS
  "$@" > "$work/$name.log" 2>&1 || { tail -n 30 "$work/$name.log"; echo "$name failed"; return 1; }
  echo "$name: $((SECONDS - start)) s"
}

prepare_task() {  # motion: videos, tokenizer, VAE and latents of one task, in $data_root/<control|pan>
  local motion=$1 label; label=$(label_of "$1")
  local data="$data_root/$label"
  params_for "$motion" "${heads[0]}" "${seeds[0]}" 8
  local p=(--params "$work/$label-${heads[0]}-s${seeds[0]}.yaml")
  # A stage whose output is there already (DATA made beforehand) is skipped.
  want videos "$data/videos" || timed "$label-videos" "$python" stages/videos.py "${p[@]}" --out "$data/videos" || return 1
  want tokenizer "$data/tokenizer" ||
    timed "$label-tokenizer" "$python" stages/tokenizer.py "${p[@]}" --videos "$data/videos" --out "$data/tokenizer" || return 1
  want vae "$data/vae" ||
    timed "$label-vae" "$python" stages/vae.py "${p[@]}" --videos "$data/videos" --out "$data/vae" --metrics "$data/vae.json" || return 1
  want latents "$data/latents" ||
    timed "$label-latents" "$python" stages/latents.py "${p[@]}" --videos "$data/videos" --vae "$data/vae" --out "$data/latents"
}

want() {  # stage, output: true (skip the stage) when its output exists or DATA_STAGES leaves it out
  [[ -e $2 ]] && { echo "$(basename "$(dirname "$2")")-$1: made beforehand"; return 0; }
  [[ " $data_stages " == *" $1 "* ]] && return 1
  return 0
}

start_run() {  # motion, head, seed: one run in the background, once fewer than JOBS run
  local label; label=$(label_of "$1")
  while (( $(jobs -rp | wc -l) >= jobs_max )); do wait -n || true; done
  if (( SECONDS > deadline )); then echo "deadline: $label-$2-s$3 not run"; return 0; fi
  [[ -d "$data_root/$label/latents" ]] || { echo "$label-$2-s$3: no data"; return 0; }
  run_one "$1" "$label" "$2" "$3" "$data_root/$label" &
}

run_one() {  # motion, label, head, seed, data dir (its report is printed when it ends)
  local name="$2-$3-s$4"
  # A failure anywhere in a run is reported and counted, and the other runs go on.
  run_one_logged "$@" > "$work/$name.out" 2>&1 || { echo "$name failed"; touch "$work/failed-$name"; } >> "$work/$name.out"
  cat "$work/$name.out"
}

run_one_logged() {
  local motion=$1 label=$2 head=$3 seed=$4 data=$5
  local name="$label-$head-s$seed" run="$work/$label-$head-s$seed"
  local p=(--params "$work/$name.yaml")
  params_for "$motion" "$head" "$seed" 2
  timed "$name-train" "$python" stages/train.py "${p[@]}" --latents "$data/latents" \
    --tokenizer "$data/tokenizer" --out "$run/fvlm" --live "$run/live" || return 1
  timed "$name-evaluate" "$python" stages/evaluate.py "${p[@]}" --model "$run/fvlm" --vae "$data/vae" \
    --latents "$data/latents" --out "$run/eval.json" --clips "$run/clips.json" --samples "$run/samples.png" \
    --attention "$run/attention.png" || return 1
  "$python" - "$out/runs" "$name" "$rev" "$work/$name.yaml" "$run" <<'PY'
import json, sys
from pathlib import Path
import yaml
from fovea.experiments import Experiment
runs, name, rev, params, run = sys.argv[1:]
run = Path(run)
exp = Experiment(name=name, rev=rev, params=yaml.safe_load(open(params)),
                 metrics=json.loads((run / "eval.json").read_text()),
                 clips=json.loads((run / "clips.json").read_text()))
(Path(runs) / f"{name}.json").write_text(json.dumps(exp.__dict__, indent=1) + "\n")
m = exp.metrics
print(f"  {name}: ratio_late {m['ratio_late']:.4f} [{m['ratio_late_ci_low']:.4f}, {m['ratio_late_ci_high']:.4f}]"
      f"  h_shuffle_gap {m['h_shuffle_gap']:.3g} [{m['h_shuffle_gap_ci_low']:.3g}, {m['h_shuffle_gap_ci_high']:.3g}]"
      f"  h_mean_gap {m['h_mean_gap']:.3g}  val clips {m['num_clips']}")
PY
  cp "$run/attention.png" "$out/runs/$name-attention.png" 2>/dev/null || true
}

echo "control at ${size} px (latent $((size / 8))x$((size / 8))), heads ${heads[*]}, seeds ${seeds[*]}, pan ${pan_heads[*]:-none}, $jobs_max runs at a time"
# Both tasks' data are made side by side (CPU work); then every run goes through one pool of
# JOBS, control before pan and seed by seed, so a deadline leaves whole seeds of the control.
prepare_task target || touch "$work/failed-control-data" &
(( ${#pan_heads[@]} == 0 )) || { prepare_task pan || touch "$work/failed-pan-data"; } &
wait
[[ " $data_stages " == *" latents "* ]] || { finish "data made (DATA_STAGES: $data_stages)"; exit; }
for seed in "${seeds[@]}"; do for head in "${heads[@]}"; do start_run target "$head" "$seed"; done; done
for seed in "${seeds[@]}"; do for head in "${pan_heads[@]}"; do start_run pan "$head" "$seed"; done; done
wait
finish done
