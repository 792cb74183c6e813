"""Tile-size sweep for the Triton kernels on the GPU at hand: `python -m kernels.tune`.

Prints milliseconds per TileConfig for the forward, backward and streaming kernels at the
benchmark's shapes; the best ones become the defaults in triton_block_causal / triton_cached.
"""

from __future__ import annotations

import argparse
import itertools

import torch

from kernels.layout import intervals, layout_key
from kernels.triton_common import TileConfig

FWD = [TileConfig(128, 64, 4, 3), TileConfig(128, 64, 8, 3), TileConfig(128, 128, 8, 3), TileConfig(64, 64, 4, 3),
       TileConfig(128, 32, 4, 4), TileConfig(64, 128, 4, 3)]
DKDV = [TileConfig(32, 128, 4, 3), TileConfig(64, 128, 8, 3), TileConfig(64, 64, 4, 3), TileConfig(32, 64, 4, 4)]
DQ = [TileConfig(128, 32, 4, 3), TileConfig(128, 64, 8, 3), TileConfig(64, 64, 4, 3), TileConfig(64, 32, 4, 4)]
CACHED = [TileConfig(64, 64, 4, 3), TileConfig(128, 64, 4, 3), TileConfig(64, 128, 4, 3), TileConfig(32, 64, 4, 3),
          TileConfig(128, 128, 8, 3)]


def _try(label: str, fn) -> None:
    from triton.testing import do_bench
    try:
        print(f"{label}: {do_bench(fn, warmup=10, rep=50, return_mode='median'):.4f} ms", flush=True)
    except Exception as e:  # a config that does not fit in shared memory
        print(f"{label}: failed ({type(e).__name__}: {str(e)[:80]})", flush=True)


def main() -> None:
    from kernels.triton_block_causal import block_causal_backward, block_causal_forward
    from kernels.triton_cached import triton_cached
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--head-dim", type=int, default=64)
    args = parser.parse_args()
    B, H, F, N, D = 4, 8, 16, 256, args.head_dim
    L = F * N
    dev, dt = torch.device("cuda"), torch.bfloat16
    q, k, v, dout = (torch.randn(B, H, L, D, device=dev, dtype=dt) for _ in range(4))
    iv = intervals(layout_key(B, L, N, 1, None, None), dev)
    for cfg in FWD:
        _try(f"fwd {cfg}", lambda: block_causal_forward(q, k, v, iv, cfg))
    out, lse = block_causal_forward(q, k, v, iv)
    for kv_cfg, q_cfg in itertools.product(DKDV, DQ[:1]):
        _try(f"bwd dkdv {kv_cfg}", lambda: block_causal_backward(q, k, v, out, lse, dout, iv, (kv_cfg, q_cfg)))
    for q_cfg in DQ:
        _try(f"bwd dq {q_cfg}", lambda: block_causal_backward(q, k, v, out, lse, dout, iv, (DKDV[0], q_cfg)))
    S = 32 * N
    qc, kn, vn = (torch.randn(B, H, N, D, device=dev, dtype=dt) for _ in range(3))
    kc, vc = (torch.randn(B, H, S, D, device=dev, dtype=dt) for _ in range(2))
    for cfg in CACHED:
        _try(f"cached {cfg}", lambda: triton_cached(qc, kn, vn, kc, vc, S // 3, S, cfg))


if __name__ == "__main__":
    main()
