"""`patchworld bench attention`: our kernels against SDPA with a dense mask and FlexAttention.

Shapes default to the world model's real ones: 16 frames x 256 tokens, 8 heads, D = 64, bf16,
one frame per chunk for training; one 256-token chunk against a 32-frame ring-buffer cache for
streaming. TFLOP/s count exactly the visible query-key pairs: 4 * pairs * D for the forward pass
and 2.5x that for the backward pass (FlashAttention's convention), whatever the method computes.
Standalone on a GPU box: `PYTHONPATH=. python -m kernels.bench` (simulator.benchlog is only
imported to record, and only if it is importable).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kernels.attention import block_causal_attention, cached_attention
from kernels.layout import KV_HI, KV_LO, dense_mask, intervals, layout_key

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
BWD_FLOPS_FACTOR = 2.5  # backward = 2.5 x forward matmul work (5 matmuls against 2)


@dataclass
class Row:
    case: str
    method: str
    ms: float
    tflops: float


def time_ms(fn: Callable[[], object]) -> float:
    """Median milliseconds per call (CUDA: triton's do_bench; CPU: wall clock)."""
    if torch.cuda.is_available():
        from triton.testing import do_bench
        return float(do_bench(fn, warmup=25, rep=100, return_mode="median"))
    fn()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2] * 1e3


def training_methods(q: torch.Tensor, key: tuple, frame_tokens: int, chunk_frames: int,
                     window: int | None) -> dict[str, Callable]:
    """method name -> attention(q, k, v) for the training layout."""
    layout = dict(frame_tokens=frame_tokens, chunk_frames=chunk_frames, window_frames=window)
    mask, _ = dense_mask(key, q.device)  # [L, L]
    methods: dict[str, Callable] = {
        "ours": lambda q, k, v: block_causal_attention(q, k, v, **layout, backend="triton" if q.is_cuda else "torch"),
        "sdpa dense mask": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
    }
    if q.is_cuda:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
        iv = intervals(key, q.device)
        lo, hi = iv[KV_LO], iv[KV_HI]

        def mask_mod(b, h, q_idx, kv_idx):
            return (kv_idx >= lo[q_idx]) & (kv_idx < hi[q_idx])

        L = q.shape[2]
        block_mask = create_block_mask(mask_mod, None, None, L, L, device=q.device)
        flex = torch.compile(flex_attention, dynamic=False)
        methods["flex block mask"] = lambda q, k, v: flex(q, k, v, block_mask=block_mask)
    return methods


def bench_training(args: argparse.Namespace, device: torch.device) -> list[Row]:
    dtype = DTYPES[args.dtype]
    L = args.frames * args.tokens
    shape = (args.batch, args.heads, L, args.head_dim)
    key = layout_key(args.batch, L, args.tokens, args.chunk_frames, args.window, None)
    iv = intervals(key, device)
    pairs = int((iv[KV_HI] - iv[KV_LO]).sum()) * args.batch * args.heads
    fwd_flops = 4 * pairs * args.head_dim
    q, k, v, dout = (torch.randn(shape, device=device, dtype=dtype) for _ in range(4))
    qg, kg, vg = (x.clone().requires_grad_() for x in (q, k, v))
    case = f"train B{args.batch} H{args.heads} {args.frames}x{args.tokens} D{args.head_dim} chunk{args.chunk_frames}" \
           + (f" window{args.window}" if args.window else "")
    rows = []
    for name, attn in training_methods(q, key, args.tokens, args.chunk_frames, args.window).items():
        with torch.no_grad():
            ms = time_ms(lambda: attn(q, k, v))
        rows.append(Row(case + " fwd", name, ms, fwd_flops / ms / 1e9))
        ms = time_ms(lambda: torch.autograd.grad(attn(qg, kg, vg), (qg, kg, vg), dout))
        rows.append(Row(case + " fwd+bwd", name, ms, fwd_flops * (1 + BWD_FLOPS_FACTOR) / ms / 1e9))
    return rows


def bench_streaming(args: argparse.Namespace, device: torch.device) -> list[Row]:
    dtype = DTYPES[args.dtype]
    B, H, D, Lc = args.batch, args.heads, args.head_dim, args.tokens
    S = args.cache_frames * args.tokens
    q, k_new, v_new = (torch.randn(B, H, Lc, D, device=device, dtype=dtype) for _ in range(3))
    k_cache, v_cache = (torch.randn(B, H, S, D, device=device, dtype=dtype) for _ in range(2))
    # a full ring whose logical start sits mid-buffer, as after the cache has wrapped
    start, length = S // 3, S
    pairs = B * H * Lc * (length + Lc)
    flops = 4 * pairs * D
    case = f"stream B{B} H{H} chunk {Lc} vs cache {args.cache_frames}x{args.tokens} D{D}"
    k_all = torch.cat([k_cache.roll(-start, 2), k_new], 2)  # [B, H, S + Lc, D], gathered once
    v_all = torch.cat([v_cache.roll(-start, 2), v_new], 2)
    methods = {
        "ours": lambda: cached_attention(q, k_new, v_new, k_cache, v_cache, cache_start=start, cache_len=length,
                                         backend="triton" if q.is_cuda else "torch"),
        "sdpa ring mask": lambda: cached_attention(q, k_new, v_new, k_cache, v_cache, cache_start=start,
                                                   cache_len=length, backend="torch"),
        "sdpa pre-gathered, no mask": lambda: F.scaled_dot_product_attention(q, k_all, v_all),
    }
    rows = []
    with torch.no_grad():
        for name, fn in methods.items():
            ms = time_ms(fn)
            rows.append(Row(case, name, ms, flops / ms / 1e9))
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--frames", type=int, default=16, help="frames per training clip")
    parser.add_argument("--tokens", type=int, default=256, help="tokens per frame")
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--chunk-frames", type=int, default=1)
    parser.add_argument("--window", type=int, default=None, help="training window in frames")
    parser.add_argument("--cache-frames", type=int, default=32, help="frames in the streaming cache")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--only", choices=["train", "stream"], default=None)
    from simulator.benchlog import add_record_arguments

    add_record_arguments(parser)


def speedups(rows: list[Row]) -> list[list[object]]:
    """Table rows with each method's speed relative to ours in the same case."""
    ours = {r.case: r.ms for r in rows if r.method == "ours"}
    return [[r.case, r.method, r.ms, r.tflops, round(r.ms / ours[r.case], 2)] for r in rows]


def main(args: argparse.Namespace) -> int:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and args.dtype == "bf16" and args.batch * args.frames > 16:
        print("no CUDA: ours runs the PyTorch path; consider smaller shapes (--batch 1 --frames 8)")
    rows: list[Row] = []
    if args.only in (None, "train"):
        rows += bench_training(args, device)
    if args.only in (None, "stream"):
        rows += bench_streaming(args, device)
    header = ["case", "method", "ms", "TFLOP/s (visible pairs)", "time / ours"]
    table = speedups(rows)
    notes = (f"dtype {args.dtype}. 'ours' = kernels.attention with backend "
             f"{'triton' if device.type == 'cuda' else 'torch (no CUDA)'}. {args.note}").strip()
    try:
        from simulator.benchlog import markdown_table, record
    except ImportError:  # a bare GPU box without the simulator package: print only
        for row in [header] + table:
            print(" | ".join(str(c) for c in row))
        return 0
    record("Attention kernels", markdown_table(header, table), notes=notes, dry_run=args.no_record)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    raise SystemExit(main(parser.parse_args()))
