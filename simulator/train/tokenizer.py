"""`patchworld train-tokenizer`: train the frame tokenizer (small-KL conv VAE).

    patchworld train-tokenizer --data data/train --heldout data/heldout --out runs/tokenizer \\
        --preset cpu [--export checkpoints/tokenizer] [--minutes 60 | --steps 20000] [--threads 1]

The training frames are loaded into memory once (38k 64x64 frames = 0.5 GB) and sampled at
random. Resumes from OUT/last if it exists. Every `--eval-every` steps: the latent statistics
are re-measured, the held-out figures (PSNR, SSIM, sharpness ratio) computed, OUT/last written,
and when the score improves the weights go (bf16) to OUT/best and, with --export, to the
shipped folder, with their figures (measured on the bf16-rounded weights) in config.json.
Imports no pygame/gymnasium/websockets, so it runs on a bare GPU box.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from simulator.models.tokenizer import TOKENIZER_PRESETS, Tokenizer, TokenizerConfig, preset
from simulator.models.tokenizer_eval import decode_latents, evaluate, load_frames, reconstruction_figures
from simulator.models.tokenizer_trainer import (TRAIN_PRESETS, TokenizerTrainer, build_trainer, student_of,
                                               widened_decoder)
from simulator.train.decoder_pairs import load_pairs

SHARPNESS_TARGET = 0.85  # issue 8: reconstructions keep >= 85% of the true frames' sharpness
GENERATED_SHARPNESS_TARGET = 0.7  # issue 8: generated frames keep >= 70% of it
STATS_FRAMES = 2048  # training frames used to measure the latent shift/scale


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="training shard directory (e.g. data/train)")
    parser.add_argument("--heldout", required=True, help="held-out shard directory (world seeds never trained on)")
    parser.add_argument("--out", default="runs/tokenizer", help="run folder (resumes from OUT/last)")
    parser.add_argument("--preset", default="cpu", choices=sorted(TOKENIZER_PRESETS))
    parser.add_argument("--arch", nargs="+", default=[], metavar="KEY=V",
                        help="architecture changes to the preset for a fresh run (TokenizerConfig fields), e.g. "
                             "latent_channels=16 encoder_blocks=1,2,2; with --init, decoder_channels=... only: "
                             "a wider decoder grown from the checkpoint's, decoding exactly as it did at the start")
    parser.add_argument("--export", default=None, help="also write improved bf16 weights here (e.g. checkpoints/tokenizer)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--steps", type=int, default=None, help="stop at this total step count (also sets the cosine schedule)")
    parser.add_argument("--minutes", type=float, default=None, help="stop after this much wall time in this invocation")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--crop", type=int, default=None,
                        help="train on random CROP x CROP crops (a multiple of the stride; 0: whole frames)")
    parser.add_argument("--gradient-weight", type=float, default=None, help="edge (image-gradient L1) weight")
    parser.add_argument("--adv-weight", type=float, default=None, help="patch-GAN weight (0: no discriminator)")
    parser.add_argument("--adv-start", type=int, default=None, help="step at which the discriminator joins")
    parser.add_argument("--energy-weight", type=float, default=None,
                        help="local edge-energy L1 weight: as much edge contrast per region as the true frame")
    parser.add_argument("--energy-window", type=int, default=None, help="side in pixels of the edge-energy regions (8)")
    parser.add_argument("--fm-weight", type=float, default=None,
                        help="discriminator feature-matching L1 weight (pix2pixHD; needs --adv-weight > 0)")
    parser.add_argument("--init", default=None,
                        help="start a new run from this tokenizer checkpoint's weights and architecture "
                             "(e.g. checkpoints/world/tokenizer); ignored when OUT/last exists")
    parser.add_argument("--freeze-encoder", action="store_true", default=None,
                        help="train the decoder only: the latent space (encoder, shift, scale) stays fixed, so "
                             "world models trained on it keep working with the new decoder")
    parser.add_argument("--generated", default=None,
                        help="decoder pairs (patchworld decoder-pairs): also train the decoder on the world model's own "
                             "latents against the true frames (needs --freeze-encoder)")
    parser.add_argument("--generated-fraction", type=float, default=0.5,
                        help="share of each batch taken from --generated")
    parser.add_argument("--heldout-generated", default=None,
                        help="held-out decoder pairs: also score decoding the world model's latents (PSNR, sharpness)")
    parser.add_argument("--teacher", default=None,
                        help="distil this trained tokenizer into a new encoder shaped by --arch "
                             "(encoder_channels=..., encoder_blocks=...): same decoder, same latent space")
    parser.add_argument("--distill-weight", type=float, default=1.0,
                        help="with --teacher: weight of the latent MSE to the teacher's (normalised units)")
    parser.add_argument("--train-decoder", action="store_true",
                        help="with --teacher: train the decoder together with the student's encoder (the latent MSE "
                             "keeps the latent space the teacher's); --teacher with --init continues that student")
    parser.add_argument("--best", default=None, choices=sorted(BEST_BY),
                        help="what OUT/best (and --export) keeps: 'target' (default) is held-out PSNR less 10 dB per "
                             "unit of sharpness ratio short of issue 8's 0.85, which makes an L1 run keep its "
                             "sharpest evaluation; 'psnr' is held-out PSNR alone. A resumed run keeps its choice")
    parser.add_argument("--eval-every", type=int, default=500, help="steps between held-out evaluations/checkpoints")
    parser.add_argument("--eval-frames", type=int, default=768, help="held-out frames per evaluation (every 4th frame)")
    parser.add_argument("--max-train-frames", type=int, default=None, help="cap on training frames loaded")
    parser.add_argument("--seed", type=int, default=0)


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but torch sees no CUDA device")
    return torch.device(name)


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    fields = {"batch_size": args.batch_size, "lr": args.lr, "crop": args.crop,
              "gradient_weight": args.gradient_weight, "adv_weight": args.adv_weight, "adv_start": args.adv_start,
              "fm_weight": args.fm_weight, "energy_weight": args.energy_weight,
              "energy_window": args.energy_window, "freeze_encoder": args.freeze_encoder}
    return {k: v for k, v in fields.items() if v is not None}


def arch_config(name: str | TokenizerConfig, changes: list[str]) -> TokenizerConfig:
    """The preset `name` (or a given config) with `KEY=V` changes: integers, or comma-separated
    integers for per-level fields."""
    base = (preset(name) if isinstance(name, str) else name).to_dict()
    known = sorted(k for k in base if k not in ("latent_shift", "latent_scale"))  # measured, not chosen
    for change in changes:
        key, sep, value = change.partition("=")
        if not sep or key not in known:
            raise SystemExit(f"--arch {change!r}: expected KEY=V with KEY one of {', '.join(known)}")
        try:
            parsed = [int(v) for v in value.split(",")]
        except ValueError:
            raise SystemExit(f"--arch {change!r}: values must be integers") from None
        if isinstance(base[key], list):
            base[key] = parsed
        elif len(parsed) == 1:
            base[key] = parsed[0]
        else:
            raise SystemExit(f"--arch {change!r}: {key} takes one integer")
    try:
        return TokenizerConfig.from_dict(base)
    except ValueError as e:
        raise SystemExit(f"--arch: {e}") from None


BEST_BY = ("psnr", "target")


def score(figures: dict[str, float], by: str = "target") -> float:
    """What "best" means. By "target": held-out PSNR, minus 10 dB per unit of sharpness ratio short
    of target; with held-out decoder pairs, plus the same for the decoded world-model latents
    (target 0.7). By "psnr": held-out PSNR alone."""
    if by not in BEST_BY:
        raise ValueError(f"best by {by!r}: expected one of {', '.join(BEST_BY)}")
    if by == "psnr":
        return figures["psnr"]
    total = figures["psnr"] - 10.0 * max(0.0, SHARPNESS_TARGET - figures["sharpness_ratio"])
    if "generated_psnr" in figures:
        total += figures["generated_psnr"] - 10.0 * max(0.0, GENERATED_SHARPNESS_TARGET
                                                        - figures["generated_sharpness_ratio"])
    return total


def generated_figures(model: Tokenizer, pairs: dict[str, torch.Tensor], batch_size: int = 256) -> dict[str, float]:
    """PSNR and sharpness of the decoded world-model latents of decoder pairs against their true frames."""
    figures = reconstruction_figures(pairs["frames"].numpy(), decode_latents(model, pairs["latents"], batch_size))
    return {"generated_psnr": figures["psnr"], "generated_sharpness_ratio": figures["sharpness_ratio"],
            "generated_ssim": figures["ssim"]}


def _latent_space(config: TokenizerConfig) -> dict[str, object]:
    """What a student shares with its teacher: the latent shape and statistics (its decoder may have
    been widened since it was distilled: `--init STUDENT --freeze-encoder --arch decoder_channels=...`)."""
    return {k: v for k, v in config.to_dict().items() if not k.startswith(("encoder_", "decoder_"))}


def _open_trainer(args: argparse.Namespace, device: torch.device) -> tuple[TokenizerTrainer, dict]:
    """Resume from OUT/last, or start fresh from the preset; also returns the saved run state."""
    last = Path(args.out) / "last"
    if (last / "config.json").is_file():
        state = json.loads((last / "config.json").read_text())
        teacher = Tokenizer.load(state["teacher"]) if state.get("teacher") else None
        trainer = TokenizerTrainer.resume(last, device, args.steps, teacher, **_overrides(args))
        print(f"resumed {last} at step {trainer.step}")
        return trainer, state
    cfg = replace(TRAIN_PRESETS[args.preset], **_overrides(args))
    if args.teacher is not None:
        if cfg.freeze_encoder:
            raise SystemExit("--teacher trains the student's encoder: no --freeze-encoder")
        teacher = Tokenizer.load(args.teacher)
        if args.init is not None:  # continue a student of this teacher
            if args.arch:
                raise SystemExit("--teacher with --init continues that student: its architecture, no --arch")
            student = Tokenizer.load(args.init)
            if _latent_space(student.config) != _latent_space(teacher.config):
                raise SystemExit(f"--init {args.init} is not a student of {args.teacher}: its latent shape or "
                                 "latent shift/scale differ")
        else:
            changes = arch_config(teacher.config, args.arch).to_dict()
            student = student_of(teacher, {k: changes[k] for k in ("encoder_channels", "encoder_blocks")})
            if student.config.to_dict() != changes:
                raise SystemExit("--teacher: --arch may change encoder_channels and encoder_blocks only")
        cfg = replace(cfg, distill_weight=args.distill_weight, freeze_decoder=not args.train_decoder)
        model = student.to(device).to(memory_format=torch.channels_last).train()
        print(f"distilling {args.teacher} into encoder {student.config.encoder_channels} / "
              f"{student.config.encoder_blocks} ({'with' if args.train_decoder else 'its'} decoder, its latent space)")
        return (TokenizerTrainer(model, cfg, device, args.steps, teacher),
                {"teacher": str(args.teacher), **({"init": str(args.init)} if args.init else {})})
    if args.train_decoder:
        raise SystemExit("--train-decoder goes with --teacher (without one every run trains its decoder)")
    if args.init is None:
        if cfg.freeze_encoder:
            raise SystemExit("--freeze-encoder keeps a trained latent space: give the tokenizer with --init")
        return build_trainer(arch_config(args.preset, args.arch), cfg, device, args.steps), {}
    init = Tokenizer.load(args.init)
    if args.arch:  # only a wider decoder, grown from the trained one
        changes = arch_config(init.config, args.arch).to_dict()
        if {k for k, v in changes.items() if v != init.config.to_dict()[k]} - {"decoder_channels"}:
            raise SystemExit("--arch with --init may widen decoder_channels only; the rest is the checkpoint's")
        try:
            init = widened_decoder(init, changes["decoder_channels"])
        except ValueError as e:
            raise SystemExit(f"--arch: {e}") from None
    trainer = build_trainer(init.config, cfg, device, args.steps)
    trainer.model.load_state_dict(init.state_dict())
    print(f"started from {args.init} ({'decoder only' if cfg.freeze_encoder else 'all weights'}"
          f"{', decoder widened to ' + str(init.config.decoder_channels) if args.arch else ''})")
    return trainer, {"init": str(args.init)}


def _checkpoint(trainer: TokenizerTrainer, args: argparse.Namespace, stats_frames: torch.Tensor,
                heldout: np.ndarray, run: dict, heldout_pairs: dict[str, torch.Tensor] | None = None
                ) -> dict[str, float]:
    """Measure latent stats and held-out figures, write OUT/last, and OUT/best (+ export) if better.

    The figures are measured once, on the weights rounded to bf16 exactly as they ship, so the
    numbers in an exported config.json are those of the exported file."""
    trainer.model.eval()
    trainer.measure_latent_stats(stats_frames)
    shipped = _as_shipped(trainer.model)
    figures = evaluate(shipped, heldout)
    if heldout_pairs is not None:
        figures.update(generated_figures(shipped, heldout_pairs))
    trainer.model.train()
    run["history"].append({"step": trainer.step, **figures})
    value = score(figures, run["best_by"])
    improved = value > run.get("best_score", -1e9)
    if improved:
        run["best_score"], run["best_step"] = value, trainer.step
    extra = {"train_seconds": run["train_seconds"], "best_score": run["best_score"],
             "best_step": run["best_step"], "best_by": run["best_by"], "history": run["history"],
             "data": str(args.data), "heldout": str(args.heldout), **({"init": run["init"]} if run.get("init") else {}),
             **({"teacher": run["teacher"]} if run.get("teacher") else {})}
    trainer.save_state(Path(args.out) / "last", figures=figures, **extra)
    if improved:
        info = {"step": trainer.step, "train_seconds": round(run["train_seconds"]), "data": str(args.data),
                "heldout": str(args.heldout), "resolution": list(heldout.shape[1:3]), "heldout_figures": figures,
                **({"init": run["init"], "frozen_encoder": trainer.cfg.freeze_encoder} if run.get("init") else {}),
                **({"teacher": run["teacher"]} if run.get("teacher") else {})}
        for target in [Path(args.out) / "best"] + ([Path(args.export)] if args.export else []):
            shipped.save(target, **info)
    return figures


def _as_shipped(model: Tokenizer) -> Tokenizer:
    """A copy of `model` with its weights rounded to bf16 (the shipped form), computing in fp32."""
    copy = Tokenizer(TokenizerConfig.from_dict(model.config.to_dict()))
    copy.load_state_dict({k: v.detach().to(torch.bfloat16).float() for k, v in model.state_dict().items()})
    return copy.to(next(model.parameters()).device).to(memory_format=torch.channels_last).eval()


def main(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = _device(args.device)
    torch.manual_seed(args.seed)
    trainer, saved = _open_trainer(args, device)
    pairs = load_pairs(args.generated) if args.generated else None
    heldout_pairs = load_pairs(args.heldout_generated) if args.heldout_generated else None
    if pairs is not None and not trainer.cfg.freeze_encoder:
        raise SystemExit("--generated trains the decoder on a fixed latent space: add --freeze-encoder")
    n_gen = 0 if pairs is None else round(trainer.cfg.batch_size * args.generated_fraction)
    if pairs is not None and not 0 < n_gen < trainer.cfg.batch_size:
        raise SystemExit(f"--generated-fraction {args.generated_fraction} leaves no room in a batch of "
                         f"{trainer.cfg.batch_size} for both kinds (give 0 < fraction < 1)")
    run = {"train_seconds": float(saved.get("train_seconds", 0.0)), "history": list(saved.get("history", [])),
           "best_score": float(saved.get("best_score", -1e9)), "best_step": saved.get("best_step"),
           "best_by": saved.get("best_by", "target"), "init": saved.get("init"), "teacher": saved.get("teacher")}
    if args.best is not None and args.best != run["best_by"]:
        if run["history"]:
            raise SystemExit(f"--best {args.best}: this run keeps its best by {run['best_by']!r} (scores already "
                             f"compared that way); start a new --out, e.g. with --init {Path(args.out) / 'last'}")
        run["best_by"] = args.best
    train = torch.from_numpy(load_frames(args.data, args.max_train_frames))  # uint8 [N, H, W, 3]
    heldout = load_frames(args.heldout, args.eval_frames, every=4)  # uint8 [M, H, W, 3]
    if device.type == "cuda":
        train = train.to(device)
    stats_idx = torch.from_numpy(np.random.default_rng(args.seed).choice(len(train), min(STATS_FRAMES, len(train)),
                                                                         replace=False))
    stats_frames = train[stats_idx.to(train.device)]
    print(f"{len(train)} training frames {tuple(train.shape[1:3])}, {len(heldout)} held-out frames, device "
          f"{device}, {sum(p.numel() for p in trainer.model.parameters()) / 1e6:.2f} M parameters, "
          f"train config {trainer.cfg}", flush=True)

    rng = torch.Generator(device=train.device).manual_seed(args.seed * 100003 + trainer.step)
    deadline = time.monotonic() + 60 * args.minutes if args.minutes else None
    bar = tqdm(initial=trainer.step, total=args.steps, unit="step", dynamic_ncols=True)
    t_last, figures = time.monotonic(), None
    while (args.steps is None or trainer.step < args.steps) and (deadline is None or time.monotonic() < deadline):
        idx = torch.randint(len(train), (trainer.cfg.batch_size - n_gen,), generator=rng, device=train.device)
        generated = None
        if pairs is not None:
            pick = torch.randint(len(pairs["latents"]), (n_gen,), generator=rng, device=train.device).cpu()
            generated = (pairs["latents"][pick].to(device).float(), pairs["frames"][pick].to(device))
        logs = trainer.train_step(train[idx].to(device, non_blocking=True), generated)
        now = time.monotonic()
        run["train_seconds"] += now - t_last
        fps = trainer.cfg.batch_size / max(now - t_last, 1e-9)
        t_last = now
        bar.update(1)
        bar.set_postfix(loss=f"{logs['loss']:.4f}", l1=f"{logs['l1']:.4f}", fps=f"{fps:.0f}", refresh=False)
        if trainer.step % args.eval_every == 0:
            figures = _checkpoint(trainer, args, stats_frames, heldout, run, heldout_pairs)
            bar.write(f"step {trainer.step}: held-out PSNR {figures['psnr']:.2f} dB, SSIM {figures['ssim']:.4f}, "
                      f"sharpness {figures['sharpness']:.2f} / {figures['true_sharpness']:.2f} "
                      f"(ratio {figures['sharpness_ratio']:.3f})" + (
                          f"; world-model latents decoded: PSNR {figures['generated_psnr']:.2f} dB, sharpness ratio "
                          f"{figures['generated_sharpness_ratio']:.3f}" if heldout_pairs is not None else ""),
                      file=sys.stderr)
            t_last = time.monotonic()  # evaluation time is not training time
    bar.close()
    if figures is None or run["history"][-1]["step"] != trainer.step:
        figures = _checkpoint(trainer, args, stats_frames, heldout, run, heldout_pairs)
    print(f"done at step {trainer.step}: held-out PSNR {figures['psnr']:.2f} dB, SSIM {figures['ssim']:.4f}, "
          f"sharpness ratio {figures['sharpness_ratio']:.3f}; best step {run['best_step']}")
    return 0
