"""Pieces shared by the Triton kernels: the online-softmax step and the launch configurations.

Scores are kept in the log2 domain (q k^T * log2(e) / sqrt(D)) so the kernels use exp2.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

SUPPORTED_HEAD_DIMS = (16, 32, 64, 128)
LOG2E = 1.4426950408889634
# m_i starts finite so a row with nothing visible yet never computes exp2(-inf - -inf) = NaN
M_INIT = tl.constexpr(-1.0e30)


@dataclass(frozen=True)
class TileConfig:
    """One kernel launch shape: query rows and key columns per tile, warps, pipeline stages."""
    block_m: int
    block_n: int
    num_warps: int = 4
    num_stages: int = 2


# the interpreter runs each program in numpy: small tiles keep the CPU tests quick while
# still crossing tile edges on tiny shapes
INTERPRETER_CONFIG = TileConfig(16, 16, 1, 1)


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def check_triton_inputs(*tensors: torch.Tensor) -> None:
    head_dim = tensors[0].shape[-1]
    if head_dim not in SUPPORTED_HEAD_DIMS:
        raise ValueError(f"the Triton kernels support head dims {SUPPORTED_HEAD_DIMS}, got D = {head_dim}")
    if not tensors[0].is_cuda and not interpreting():
        raise ValueError(f"backend='triton' needs CUDA tensors or TRITON_INTERPRET=1 (set before triton is "
                         f"imported), got tensors on {tensors[0].device}")
    if interpreting() and tensors[0].dtype == torch.bfloat16:
        raise ValueError("the Triton interpreter cannot compute in bfloat16; use float16/float32 or a GPU")


def last_dim_contiguous(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


def dot_precision(dtype: torch.dtype) -> str:
    """fp32 inputs are multiplied exactly ("ieee"), not in TF32, so they match PyTorch's fp32."""
    return "ieee" if dtype == torch.float32 else "tf32"


def softmax_scale(head_dim: int) -> float:
    return 1.0 / math.sqrt(head_dim)


@triton.jit
def softmax_tile(acc, m_i, l_i, q, k, v, qk_scale, visible, MASKED: tl.constexpr, PREC: tl.constexpr):
    """One online-softmax update of (acc [BM, D], m_i [BM], l_i [BM]) with a key/value tile
    k, v [BN, D]; `visible` [BM, BN] is only read when MASKED."""
    s = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale  # [BM, BN], log2 domain
    if MASKED:
        s = tl.where(visible, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PREC)
    return acc, m_new, l_i
