#!/usr/bin/env bash
# GPU check, prepared to run unattended whenever a GPU is available (well under 8 minutes):
# the paper preset (256x256 frames, 8 frames, SD-VAE, DINOv2-small frozen, SmolLM2-135M,
# 8 clips per optimizer step as one micro-batch, fused AdamW, bf16 autocast) for a fixed number
# of steps on one GPU, on synthetic clips, with randomly initialised models in the real
# architectures (no hub access needed). Prints steps per second, peak GPU memory and the time of
# every stage.
#
#   bash benchmarks/gpu_check.sh            # STEPS=100 CLIPS=64 by default
#   STEPS=200 bash benchmarks/gpu_check.sh
#   STEPS=2 CLIPS=4 DEVICE=cpu bash benchmarks/gpu_check.sh   # a dry run of the script on a CPU
#   BATCH=2 ACCUM=4 bash benchmarks/gpu_check.sh   # the same 8 clips as 4 micro-batches of 2
#   COMPILE=1 bash benchmarks/gpu_check.sh         # and torch.compile (compute.compile)
#   BENCHMARKS=1 bash benchmarks/gpu_check.sh   # then the train-loop (BENCH_STEPS=30) and latents
#                                               # benchmarks at this size
set -euo pipefail
cd "$(dirname "$0")/.."
# Runs from a plain checkout too (no `pip install -e .`); PYTHON picks the interpreter.
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
python=${PYTHON:-python}
steps=${STEPS:-100}
clips=${CLIPS:-64}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$python" benchmarks/gpu_check_setup.py --out "$work" --steps "$steps" --clips "$clips" --device "${DEVICE:-cuda}" \
  ${BATCH:+--batch-size "$BATCH"} ${ACCUM:+--grad-accum "$ACCUM"} ${COMPILE:+--compile}
timed() {  # name, command...
  local name=$1; shift
  local start=$SECONDS
  "$@" > "$work/$name.log" 2>&1 || { cat "$work/$name.log"; echo "stage $name failed"; exit 1; }
  echo "stage $name: $((SECONDS - start)) s"
}
p=(--params "$work/params.yaml")
timed videos "$python" stages/videos.py "${p[@]}" --out "$work/videos"
timed vae "$python" stages/vae.py "${p[@]}" --videos "$work/videos" --out "$work/vae" --metrics "$work/vae.json"
timed latents "$python" stages/latents.py "${p[@]}" --videos "$work/videos" --vae "$work/vae" --out "$work/latents"
timed train "$python" stages/train.py "${p[@]}" --latents "$work/latents" --out "$work/fvlm" --live "$work/live"
timed evaluate "$python" stages/evaluate.py "${p[@]}" --model "$work/fvlm" --vae "$work/vae" \
  --latents "$work/latents" --out "$work/eval.json" --clips "$work/clips.json" --samples "$work/samples.png"
"$python" - "$work" <<'PY'
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
training = json.loads((work / "fvlm" / "training.json").read_text())
metrics = json.loads((work / "eval.json").read_text())
print(f"train: {training['steps']} steps at {training['steps_per_second']:.2f} steps/s, "
      f"peak GPU memory {training['final'].get('peak_gpu_memory_gib', float('nan')):.2f} GiB")
print(f"eval: head {metrics['head']} ({metrics['head_params']:,} parameters), ratio {metrics['ratio_late']:.4f} (frames {metrics['headline_frames']}) "
      f"over {metrics['num_clips']} val clips")
PY
if [[ ${BENCHMARKS:-0} == 1 ]]; then
  echo "--- benchmarks/train_loop.py at this size"
  "$python" benchmarks/train_loop.py "${p[@]}" --latents "$work/latents" --vae "$work/vae" --steps "${BENCH_STEPS:-30}" --rounds 1
  echo "--- benchmarks/latents.py at this size"
  "$python" benchmarks/latents.py "${p[@]}" --vae "$work/vae" --clips "$clips" --repeats 2
fi
