"""Attention backends against the reference, forward and backward.

Without CUDA the Triton kernels run under TRITON_INTERPRET=1 (tests/conftest.py sets it), in
float32 and float16; with CUDA they run natively, bfloat16 too. Tolerances follow FlashAttention's
tests: a backend's largest error against the high-precision reference may be at most twice the
error of plain PyTorch doing the same computation in the same dtype, plus a small floor.
float16/bfloat16 are judged against a float32 reference, float32 against float64.
"""

import pytest
import torch

from kernels.attention import block_causal_attention, cached_attention
from kernels.reference import (block_causal_mask, reference_block_causal_attention,
                               reference_cached_attention)

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if CUDA else [])
FLOOR = {torch.float32: 1e-5, torch.float16: 1e-4, torch.bfloat16: 1e-3}
GOLD = {torch.float32: torch.float64, torch.float16: torch.float32, torch.bfloat16: torch.float32}


def _triton_usable() -> str | None:
    """None if Triton can run a trivial kernel here, else why not."""
    try:
        import triton
        import triton.language as tl

        @triton.jit
        def add_one(x_ptr, n, BLOCK: tl.constexpr):
            offs = tl.arange(0, BLOCK)
            tl.store(x_ptr + offs, tl.load(x_ptr + offs, mask=offs < n) + 1, mask=offs < n)

        x = torch.zeros(4, device=DEVICE)
        add_one[(1,)](x, 4, BLOCK=8)
        return None if bool((x == 1).all()) else "a trivial Triton kernel computed a wrong result"
    except Exception as e:  # an interpreter that does not work with the installed numpy, no triton, ...
        return f"Triton cannot run here ({type(e).__name__}: {e})"


_TRITON_PROBLEM: list[str | None] = []


@pytest.fixture(params=["torch", "triton"])
def backend(request) -> str:
    if request.param == "triton":
        if not _TRITON_PROBLEM:
            _TRITON_PROBLEM.append(_triton_usable())
        if _TRITON_PROBLEM[0] is not None:
            pytest.skip(_TRITON_PROBLEM[0])
    return request.param


def assert_within(name: str, got: torch.Tensor, gold: torch.Tensor, baseline: torch.Tensor,
                  dtype: torch.dtype) -> None:
    err = (got.double() - gold.double()).abs().max().item()
    base = (baseline.double() - gold.double()).abs().max().item()
    tol = 2 * base + FLOOR[dtype]
    assert err <= tol, (f"{name}: largest |backend - {GOLD[dtype]} reference| = {err:.3g} > tolerance {tol:.3g} "
                        f"(2 x PyTorch-in-{dtype} error {base:.3g} + floor {FLOOR[dtype]})")


def check_block_causal(backend: str, dtype: torch.dtype, shape: tuple[int, int, int, int], **layout) -> None:
    torch.manual_seed(0)
    q, k, v, dout = (torch.randn(shape, device=DEVICE) for _ in range(4))

    def run(fn, dt, **kw):
        inputs = [x.to(dt).requires_grad_() for x in (q, k, v)]
        out = fn(*inputs, **layout, **kw)
        grads = torch.autograd.grad(out, inputs, dout.to(dt))
        return out, grads

    got, got_grads = run(block_causal_attention, dtype, backend=backend)
    gold, gold_grads = run(reference_block_causal_attention, GOLD[dtype])
    base, base_grads = run(reference_block_causal_attention, dtype)
    assert got.dtype == dtype and got.shape == q.shape
    assert_within(f"{backend} out", got, gold, base, dtype)
    for name, g, gg, bg in zip(("dq", "dk", "dv"), got_grads, gold_grads, base_grads):
        assert_within(f"{backend} {name}", g, gg, bg, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("head_dim,layout", [
    (32, dict(frame_tokens=5)),                                 # frame-causal, frames cross tile edges
    (64, dict(frame_tokens=4, chunk_frames=2)),                 # chunks of 2 frames, odd length (L = 37)
    (128, dict(frame_tokens=3, chunk_frames=2, window_frames=3)),  # sliding window
])
def test_block_causal_matches_reference(backend: str, dtype: torch.dtype, head_dim: int, layout: dict) -> None:
    check_block_causal(backend, dtype, (2, 2, 37, head_dim), **layout)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_packed_ragged_clips_with_padding(backend: str, dtype: torch.dtype) -> None:
    # three clips of 13, 24 and 7 tokens, different tokens per frame, then 4 padding tokens
    cu = torch.tensor([0, 13, 37, 44], dtype=torch.int32, device=DEVICE)
    check_block_causal(backend, dtype, (1, 2, 48, 32), frame_tokens=[3, 4, 2], chunk_frames=2,
                       window_frames=3, cu_seqlens=cu)


def test_padding_rows_are_zero_with_zero_gradients(backend: str) -> None:
    cu = torch.tensor([0, 10, 21], dtype=torch.int32, device=DEVICE)
    q, k, v = (torch.randn(1, 1, 30, 32, device=DEVICE, requires_grad=True) for _ in range(3))
    out = block_causal_attention(q, k, v, frame_tokens=[5, 4], cu_seqlens=cu, backend=backend)
    assert torch.all(out[..., 21:, :] == 0), out[..., 21:, :].abs().max()
    dq, dk, dv = torch.autograd.grad(out.square().sum() + out.sum(), (q, k, v))
    for name, g in (("dq", dq), ("dk", dk), ("dv", dv)):
        assert torch.all(g[..., 21:, :] == 0), f"{name} of padding tokens: max {g[..., 21:, :].abs().max()}"
        assert torch.isfinite(g).all(), f"{name} has non-finite values"


def test_invisible_tiles_are_never_read() -> None:
    """NaN values in the last frame must not reach earlier frames: the kernel skips the key tiles
    no query of a tile can see instead of computing and discarding them (0 * NaN = NaN)."""
    problem = _triton_usable()
    if problem is not None:
        pytest.skip(problem)
    q, k, v = (torch.randn(1, 1, 256, 32, device=DEVICE) for _ in range(3))
    v[..., 128:, :] = float("nan")
    out = block_causal_attention(q, k, v, frame_tokens=128, backend="triton")
    assert torch.isfinite(out[..., :128, :]).all()
    assert torch.isnan(out[..., 128:, :]).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("head_dim,slots,starts,lens,chunk", [
    (32, 40, [30, 3], [25, 40], 17),   # row 0 wraps around the ring end, row 1 is full
    (64, 24, [0, 23], [0, 5], 8),      # an empty cache, and a wrap starting at the last slot
    (128, 19, [7, 7], [12, 3], 5),     # odd sizes, no wrap
])
def test_cached_matches_reference(backend: str, dtype: torch.dtype, head_dim: int, slots: int,
                                  starts: list[int], lens: list[int], chunk: int) -> None:
    torch.manual_seed(0)
    B, H = 2, 2
    q, k_new, v_new = (torch.randn(B, H, chunk, head_dim, device=DEVICE) for _ in range(3))
    k_cache, v_cache = (torch.randn(B, H, slots, head_dim, device=DEVICE) for _ in range(2))
    start = torch.tensor(starts, dtype=torch.int32, device=DEVICE)
    length = torch.tensor(lens, dtype=torch.int32, device=DEVICE)
    valid = (torch.arange(slots, device=DEVICE)[None] - start[:, None]) % slots < length[:, None]  # [B, S]
    # never-written slots may hold anything: NaN there must not leak into the output
    k_cache[~valid[:, None, :, None].expand_as(k_cache)] = float("nan")
    v_cache[~valid[:, None, :, None].expand_as(v_cache)] = float("nan")
    args = lambda dt: [x.to(dt) for x in (q, k_new, v_new, k_cache, v_cache)]  # noqa: E731
    bounds = dict(cache_start=start.cpu(), cache_len=length.cpu())
    got = cached_attention(*args(dtype), **bounds, backend=backend)
    gold = reference_cached_attention(*args(GOLD[dtype]), **bounds)
    base = reference_cached_attention(*args(dtype), **bounds)
    assert got.shape == q.shape and got.dtype == dtype
    assert_within(f"{backend} cached", got, gold, base, dtype)


def test_reference_mask_definition() -> None:
    # 2 tokens per frame, chunks of 2 frames, window 3 frames: token 10 (frame 5, chunk 2) sees
    # frames 3..5 (window) of chunks <= 2, i.e. tokens 6..11
    mask = block_causal_mask(12, frame_tokens=2, chunk_frames=2, window_frames=3)
    assert mask[10].nonzero().flatten().tolist() == list(range(6, 12))
    assert mask[4].nonzero().flatten().tolist() == [0, 1, 2, 3, 4, 5, 6, 7]  # frame 2 sees its chunk's frame 3
    cu = torch.tensor([0, 4, 6], dtype=torch.int32)
    packed = block_causal_mask(8, frame_tokens=[2, 1], cu_seqlens=cu)
    assert packed[5].nonzero().flatten().tolist() == [4, 5] and not packed[6:].any()


@pytest.mark.parametrize("kwargs,message", [
    (dict(frame_tokens=[4, 4]), "one int frame_tokens"),
    (dict(frame_tokens=4, chunk_frames=0), "chunk_frames"),
    (dict(frame_tokens=4, window_frames=0), "window_frames"),
    (dict(frame_tokens=[4], cu_seqlens=torch.tensor([0, 40], dtype=torch.int32)), "end at most at L"),
    (dict(frame_tokens=[4, 4], cu_seqlens=torch.tensor([0, 8], dtype=torch.int32)), "2 entries for 1 clips"),
    (dict(frame_tokens=4, backend="cuda"), "backend must be"),
])
def test_bad_arguments_are_rejected(kwargs: dict, message: str) -> None:
    q = torch.zeros(1, 1, 16, 32)
    with pytest.raises(ValueError, match=message):
        block_causal_attention(q, q, q, **kwargs)


def test_bad_cache_bounds_are_rejected() -> None:
    q = torch.zeros(2, 1, 4, 32)
    cache = torch.zeros(2, 1, 8, 32)
    with pytest.raises(ValueError, match="cache_len must lie in"):
        cached_attention(q, q, q, cache, cache, cache_start=0, cache_len=9, backend="torch")
    with pytest.raises(ValueError, match="cache_start must be an int or an int tensor"):
        cached_attention(q, q, q, cache, cache, cache_start=torch.zeros(3), cache_len=1, backend="torch")


def test_the_environment_can_choose_the_automatic_backend(monkeypatch):
    from kernels.attention import ENV_BACKEND, _pick

    q = torch.zeros(1, 1, 4, 16)
    monkeypatch.delenv(ENV_BACKEND, raising=False)
    assert _pick(None, q) == "torch"  # CPU tensors: the PyTorch path
    monkeypatch.setenv(ENV_BACKEND, "reference")
    assert _pick(None, q) == "reference" and _pick("torch", q) == "torch"  # an explicit backend still wins
    monkeypatch.setenv(ENV_BACKEND, "cuda-please")
    with pytest.raises(ValueError, match=ENV_BACKEND):
        _pick(None, q)
