"""Which float type the world model computes in, per device: bf16 only where it is fast.

bf16 autocast doubles matmul speed on GPUs and on CPUs with AVX512-BF16 or AMX, but on CPUs
without them PyTorch emulates bf16 and runs about 10x SLOWER than fp32 (measured on an AVX2-only
AMD EPYC: 3 GFLOP/s against 30). So "auto" asks the hardware.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

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
