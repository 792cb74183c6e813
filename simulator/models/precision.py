"""Which float type the world model computes in, per device: bf16 only where it is fast.

bf16 autocast doubles matmul speed on GPUs and on CPUs with AVX512-BF16 or AMX, but on CPUs
without them PyTorch emulates bf16 and runs about 10x SLOWER than fp32 (measured on an AVX2-only
AMD EPYC: 3 GFLOP/s against 30). So "auto" asks the hardware.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

PRECISIONS = ("auto", "bf16", "fp32")


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when the CPU advertises native bf16 matmul instructions (AVX512-BF16 or AMX-BF16)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def use_bf16(precision: str, device: torch.device) -> bool:
    """Resolve "auto" / "bf16" / "fp32" for a device."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_fast_bf16()


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


# modules whose weights bf16 autocast casts to bf16 on every call
_AUTOCAST_CAST = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d)


def bf16_weights(module: nn.Module) -> nn.Module:
    """A copy of `module` for inference under bf16 autocast: its linear and convolution
    parameters stored in bf16, everything else (norms, embeddings, buffers) unchanged.

    Under inference mode autocast casts every fp32 weight to bf16 again at every call: ~11 ms of
    a ~60 ms streaming tick on the AVX512-BF16 CPU (docs/benchmarks.md). Casting once gives the
    same bf16 values, so the outputs are bit-identical. The copy must only run under autocast;
    the original is left as it was (a trainer may still be training it)."""
    copied = copy.deepcopy(module)
    for sub in copied.modules():
        if isinstance(sub, _AUTOCAST_CAST):
            sub.to(torch.bfloat16)
    return copied
