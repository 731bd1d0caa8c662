"""Devices and processes for the latents and train stages (params: ``compute.*``).

Both stages run under plain ``python`` or ``accelerate launch``; Accelerate reads the process
layout from the launcher's environment, and these helpers add the project's device choice.
"""

from __future__ import annotations

import torch
from accelerate import Accelerator, PartialState

from fovea.params import ComputeParams


def use_cuda(compute: ComputeParams) -> bool:
    if compute.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("compute.device is 'cuda' but no CUDA device is visible")
    return compute.device != "cpu" and torch.cuda.is_available()


def process_state(compute: ComputeParams) -> PartialState:
    """This process's rank, the number of processes, its device and a barrier."""
    return PartialState(cpu=not use_cuda(compute))


def make_accelerator(compute: ComputeParams, grad_accum: int = 1) -> Accelerator:
    cuda = use_cuda(compute)
    precision = compute.mixed_precision
    if precision == "auto":
        precision = "bf16" if cuda else "no"
    return Accelerator(cpu=not cuda, mixed_precision=precision, gradient_accumulation_steps=grad_accum)
