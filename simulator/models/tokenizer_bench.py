"""`patchworld bench tokenizer`: decode latency of one frame, batched encode throughput, and
(with --heldout) reconstruction quality on held-out worlds plus the side-by-side PNG.

    patchworld bench tokenizer [--checkpoint checkpoints/tokenizer] [--threads 1,2]
    patchworld bench tokenizer --heldout data/heldout --png docs/tokenizer_recon.png

Speed runs under `torch.inference_mode` with channels_last weights, in fp32 and, where the
hardware makes it fast (AVX512-BF16/AMX CPUs, CUDA; simulator.models.precision), under bf16
autocast too, as the streaming generator decodes there. CPUs without native bf16 emulate it and
run bf16 convolutions far slower than fp32 (docs/training.md), so they time fp32 only. Targets
(issue 3): one 64x64 frame decoded in <= 3 ms, >= 1,000 frames/s encoded in batches.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from simulator.benchlog import add_record_arguments, markdown_table, record
from simulator.cli import parse_resolution
from simulator.models.precision import autocast, cpu_has_fast_bf16
from simulator.models.tokenizer import TOKENIZER_PRESETS, Tokenizer, preset
from simulator.models.tokenizer_eval import load_frames, reconstruct, reconstruction_figures, save_comparison_png

DECODE_TARGET_MS = 3.0
ENCODE_TARGET_FPS = 1000.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="checkpoints/tokenizer",
                        help="tokenizer folder; if missing, an untrained --preset model is timed")
    parser.add_argument("--preset", default="cpu", choices=sorted(TOKENIZER_PRESETS))
    parser.add_argument("--resolution", type=parse_resolution, default=(64, 64), help="HxW of the timed frames")
    parser.add_argument("--threads", default="1,2",
                        help="comma-separated torch thread counts, one row each (on a busy 2-core machine "
                             "2 threads at batch 1 stall on each other)")
    parser.add_argument("--precision", default=None,
                        help="comma-separated fp32/bf16, one row each (default: fp32, plus bf16 where this CPU "
                             "has native bf16)")
    parser.add_argument("--batch-size", type=int, default=256, help="encode batch")
    parser.add_argument("--repeats", type=int, default=200, help="timed single-frame decodes")
    parser.add_argument("--heldout", default=None, help="held-out shards: also measure reconstruction quality")
    parser.add_argument("--every", type=int, default=1, help="use every N-th held-out frame")
    parser.add_argument("--png", default=None, help="write originals beside reconstructions here")
    add_record_arguments(parser)


def _model(args: argparse.Namespace) -> tuple[Tokenizer, str]:
    if (Path(args.checkpoint) / "config.json").is_file():
        return Tokenizer.load(args.checkpoint), args.checkpoint
    return Tokenizer(preset(args.preset)).eval(), f"untrained preset {args.preset}"


def _median_seconds(fn, repeats: int, warmup: int = 10) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


@torch.inference_mode()
def time_tokenizer(model: Tokenizer, height: int, width: int, batch_size: int, repeats: int,
                   bf16: bool = False) -> dict[str, float]:
    """Median ms to decode one frame to uint8, and frames/s encoding uint8 batches (fp32, or under
    bf16 autocast)."""
    with autocast(torch.device("cpu"), bf16):
        return _time_tokenizer(model.to(memory_format=torch.channels_last), height, width, batch_size, repeats)


def _time_tokenizer(model: Tokenizer, height: int, width: int, batch_size: int, repeats: int) -> dict[str, float]:
    model.check_size(height, width)
    f = model.stride
    z = torch.randn(1, model.latent_channels, height // f, width // f)
    frames = torch.randint(0, 256, (batch_size, height, width, 3), dtype=torch.uint8)
    decode_s = _median_seconds(lambda: model.decode_frames(z), repeats)
    encode_s = _median_seconds(lambda: model.encode(frames), max(3, repeats // 40), warmup=2)
    decode_batch_s = _median_seconds(lambda: model.decode_frames(model.encode(frames)), 3, warmup=1)
    return {"decode_ms": 1e3 * decode_s, "encode_fps": batch_size / encode_s,
            "roundtrip_fps": batch_size / decode_batch_s}


@torch.inference_mode()
def encoder_flops(model: Tokenizer, height: int, width: int) -> float:
    """Floating-point operations (multiply and add counted apart) to encode one frame: with the
    measured frames/s, how close the encoder runs to what this CPU can do at all."""
    counter = FlopCounterMode(display=False)
    with counter:
        model.encode(torch.zeros(1, height, width, 3, dtype=torch.uint8))
    return float(counter.get_total_flops())


def _quality(model: Tokenizer, args: argparse.Namespace, source: str) -> None:
    frames = load_frames(args.heldout, every=args.every)
    recons = reconstruct(model, frames)
    q = reconstruction_figures(frames, recons)
    rows = [[source, q["frames"], q["psnr"], q["ssim"], q["sharpness"], q["true_sharpness"], q["sharpness_ratio"]]]
    table = markdown_table(["tokenizer", "held-out frames", "PSNR dB", "SSIM", "sharpness (recon)",
                            "sharpness (true)", "sharpness ratio"], rows)
    notes = ("Targets: PSNR >= 32 dB (issue 3), sharpness ratio >= 0.85 (issue 8). Held-out shards: "
             f"{args.heldout} (world seeds never trained on). {args.note}").strip()
    if args.png:
        pick = np.linspace(0, len(frames) - 1, 16).astype(int)
        save_comparison_png(args.png, frames[pick], recons[pick])
        notes += f" Picture: {args.png} (rows of originals, each above its reconstructions)."
    record("Tokenizer reconstruction quality (held out)", table, notes=notes, dry_run=args.no_record)


def main(args: argparse.Namespace) -> int:
    model, source = _model(args)
    h, w = args.resolution
    params = sum(p.numel() for p in model.parameters())
    flops = encoder_flops(model, h, w)
    precisions = (args.precision or ("fp32,bf16" if cpu_has_fast_bf16() else "fp32")).split(",")
    unknown = sorted(set(precisions) - {"fp32", "bf16"})
    if unknown:
        raise SystemExit(f"--precision takes fp32 and/or bf16, got {unknown[0]!r}")
    rows, best_decode, best_encode = [], float("inf"), 0.0
    for precision in precisions:
        for threads in (int(t) for t in args.threads.split(",")):
            torch.set_num_threads(threads)
            s = time_tokenizer(model, h, w, args.batch_size, args.repeats, bf16=precision == "bf16")
            best_decode, best_encode = min(best_decode, s["decode_ms"]), max(best_encode, s["encode_fps"])
            rows.append([source, f"{h}x{w}", f"{model.latent_channels}x{h // model.stride}x{w // model.stride}",
                         f"{params / 1e6:.2f} M", precision, threads, s["decode_ms"], s["encode_fps"],
                         s["encode_fps"] * flops / 1e9, s["roundtrip_fps"]])
    table = markdown_table(["tokenizer", "frame", "latent", "params", "precision", "threads",
                            "decode 1 frame ms (median)",
                            f"encode frames/s (batch {args.batch_size})",
                            f"encode GFLOP/s ({flops / 1e6:.0f} MFLOP a frame)", "encode+decode frames/s"], rows)
    verdict = (f"Targets (best row): decode <= {DECODE_TARGET_MS} ms "
               f"({'met' if best_decode <= DECODE_TARGET_MS else 'MISSED'}), encode >= {ENCODE_TARGET_FPS:.0f} "
               f"frames/s ({'met' if best_encode >= ENCODE_TARGET_FPS else 'MISSED'}). inference_mode, channels_last; "
               f"bf16 = autocast, as the streaming generator runs on this CPU "
               f"({'native bf16' if cpu_has_fast_bf16() else 'no native bf16'}).")
    record("Tokenizer speed", table, notes=f"{verdict} {args.note}".strip(), dry_run=args.no_record)
    if args.heldout:
        _quality(model, args, source)
    return 0
