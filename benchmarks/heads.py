"""Forward+backward time and peak memory of every prediction head at the paper's sizes.

    python benchmarks/heads.py [--batch 16] [--repeats 5] [--threads N] [--device cpu|cuda]

Each head runs in a fresh Python process, so one head's allocator state cannot hide another's
peak. Besides the registered heads, ``xattn/naive`` is ``xattn`` with its attention computed the
textbook way (materialised [N, heads, HW, HW] score and softmax matrices) instead of through
``scaled_dot_product_attention``, to show what the fused kernel saves. The issue's target: xattn
with SDPA needs at most half the peak memory of the naive variant.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from fovea.heads import PAPER_SIZES

NAIVE_SUFFIX = "/naive"

# Make every large allocation its own mmap, returned to the OS when freed, so resident memory
# follows live tensors instead of glibc's cache of freed chunks (its adaptive threshold would
# otherwise keep blocks up to 32 MiB in the heap after the warm-up step).
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(64 * 1024), "MALLOC_TRIM_THRESHOLD_": str(128 * 1024)}

CPU_MEMORY_METHOD = (
    "peak MiB = the rise of the process's resident-memory high-water mark (VmHWM, reset through "
    "/proc/self/clear_refs) during one forward+backward, over the resident memory just before it; "
    "the head, its inputs and its gradient buffers already exist (one warm-up step ran), so this is "
    "what a training step adds: activations kept for backward, temporaries, workspaces. "
    f"Large allocations are forced to mmap ({', '.join(f'{k}={v}' for k, v in MALLOC_ENV.items())}) "
    "so freed memory leaves the resident set."
)
CUDA_MEMORY_METHOD = (
    "peak MiB = torch.cuda.max_memory_allocated during one forward+backward minus the memory "
    "allocated just before it (head, inputs and gradient buffers already exist)."
)


def naive_attention(q, k, v):
    """Softmax attention with the full score matrix in memory, as code without a fused kernel
    would write it."""
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    return scores.softmax(dim=-1) @ v


# --- child: measure one head -------------------------------------------------------------


def _reset_cpu_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(variant: str, batch: int, repeats: int, device_name: str) -> dict:
    import torch

    import fovea.heads._blocks as blocks
    from fovea.heads import build_head, count_parameters

    name, naive = (variant[: -len(NAIVE_SUFFIX)], True) if variant.endswith(NAIVE_SUFFIX) else (variant, False)
    if naive:
        blocks.scaled_dot_product_attention = naive_attention  # this process only

    device = torch.device(device_name)
    torch.manual_seed(0)
    head = build_head(name, **PAPER_SIZES).to(device)
    h = torch.randn(batch, PAPER_SIZES["h_dim"], device=device)
    z_prev = torch.randn(
        batch, PAPER_SIZES["latent_channels"], PAPER_SIZES["height"], PAPER_SIZES["width"], device=device
    )
    target = torch.randn_like(z_prev)

    def step() -> None:
        loss = (head(h, z_prev) - target).square().mean()
        loss.backward()

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up: kernels chosen, gradient buffers allocated
    head.zero_grad(set_to_none=False)
    synchronize()

    if device.type == "cuda":
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        synchronize()
        peak_bytes = torch.cuda.max_memory_allocated() - before
    else:
        if not _reset_cpu_peak():
            raise RuntimeError("cannot reset the resident-memory high-water mark (/proc/self/clear_refs)")
        before_kib = _status_kib("VmRSS")
        step()
        peak_bytes = (_status_kib("VmHWM") - before_kib) * 1024

    times = []
    for _ in range(repeats):
        head.zero_grad(set_to_none=False)
        synchronize()
        start = time.perf_counter()
        step()
        synchronize()
        times.append(time.perf_counter() - start)

    return {
        "head": variant,
        "parameters": count_parameters(head),
        "median_ms": 1000 * statistics.median(times),
        "min_ms": 1000 * min(times),
        "peak_mib": peak_bytes / 2**20,
    }


# --- parent: one process per head, one table ----------------------------------------------


def run_child(variant: str, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        variant,
        "--batch",
        str(args.batch),
        "--repeats",
        str(args.repeats),
        "--device",
        args.device,
    ]
    if args.threads:
        command += ["--threads", str(args.threads)]
    env = {**os.environ, **MALLOC_ENV}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode:
        raise RuntimeError(f"benchmark of {variant} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7, help="timed steps after the measured one")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(measure(args.child, args.batch, args.repeats, args.device)))
        return

    from fovea.heads import head_names

    variants = head_names() + ["xattn" + NAIVE_SUFFIX]
    load_before = os.getloadavg()[0]
    rows = [run_child(variant, args) for variant in variants]

    if args.device == "cpu":
        threads = args.threads or torch.get_num_threads()
        machine = (
            f"cpu, {threads} torch thread(s), 1-minute load average {load_before:.1f} before and "
            f"{os.getloadavg()[0]:.1f} after (other work on the machine inflates times, not memory)"
        )
        memory_method = CPU_MEMORY_METHOD
    else:
        machine, memory_method = torch.cuda.get_device_name(), CUDA_MEMORY_METHOD
    sizes = "h {h_dim}, latent {latent_channels}x{height}x{width}".format(**PAPER_SIZES)
    print(f"$ {' '.join(['python', 'benchmarks/heads.py', *sys.argv[1:]])}")
    print("Prediction heads, one training step (forward + backward of an MSE loss) at the paper's sizes:")
    print(f"{sizes}, batch {args.batch}, float32, {machine}, torch {torch.__version__}.")
    print(f"time = median (min) of {args.repeats} steps after a warm-up step; each head in a fresh process.")
    print(memory_method)
    print(
        "xattn/naive = xattn with softmax(QK^T/sqrt(d))V written out (score matrix materialised) "
        "instead of scaled_dot_product_attention.\n"
    )
    print(f"| {'head':<12} | {'parameters':>11} | {'step ms, median (min)':>21} | {'peak MiB':>9} |")
    print(f"|{'-' * 14}|{'-' * 12}:|{'-' * 22}:|{'-' * 10}:|")
    for row in rows:
        timing = f"{row['median_ms']:.1f} ({row['min_ms']:.1f})"
        print(f"| {row['head']:<12} | {row['parameters']:>11,} | {timing:>21} | {row['peak_mib']:>9.1f} |")

    by_name = {row["head"]: row for row in rows}
    sdpa, naive = by_name["xattn"]["peak_mib"], by_name["xattn" + NAIVE_SUFFIX]["peak_mib"]
    verdict = "holds" if sdpa <= naive / 2 else "does NOT hold"
    print(
        f"\nxattn peak memory, SDPA / naive = {sdpa:.1f} / {naive:.1f} MiB = {sdpa / naive:.2f}: "
        f"the target (at most half) {verdict}."
    )


if __name__ == "__main__":
    main()
