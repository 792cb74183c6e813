"""`patchworld train`: train the world model (DiT, diffusion forcing) on pre-encoded latents.

    patchworld train --data data/train --heldout data/heldout --tokenizer checkpoints/tokenizer \\
        --preset cpu --out runs/world [--export checkpoints/world]

The tokenizer folder is copied to OUT/tokenizer at the first start and used from there on
(resumes included): the world model is tied to the exact latent space it was trained on, even
while the tokenizer keeps training elsewhere. Exports carry that copy in EXPORT/tokenizer.

Resumes from OUT/last if it exists. Every `eval_every` steps the EMA weights are evaluated on
held-out worlds (figures beside copy-last), a rollout video is written to OUT/samples/, and
when their score improves (`score`: teacher-forced PSNR, less a penalty when rollouts are blurrier
than issue 8 allows) the EMA weights are written (bf16) to OUT/best and, with --export, to the
shipped checkpoint folder. Under `torchrun` every process trains on its own
clips (DDP); rank 0 encodes, evaluates and saves. Imports no pygame/gymnasium/websockets.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

import torch
from tqdm import tqdm

from simulator.actions import ENCODING_VERSION
from simulator.checkpoint import load_config, save_checkpoint
from simulator.models.dit import build_dit
from simulator.models.tokenizer import Tokenizer
from simulator.rollout.generator import GeneratorConfig
from simulator.train.ddp import DistInfo, barrier, init_distributed, shutdown
from simulator.train.own_rollouts import RolloutBuffer
from simulator.train.world_data import LatentEpisodes, encode_shards
from simulator.train.world_eval import evaluate, load_eval_clips, save_video
from simulator.train.world_trainer import TRAIN_PRESETS, TrainConfig, WorldTrainer, generation_prev_noise

EVAL_CONTEXT, EVAL_HORIZON = 4, 16  # held-out clips: 4 true frames, then 16 generated


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="training shard directory (e.g. data/train)")
    parser.add_argument("--heldout", required=True, help="held-out shard directory (world seeds never trained on)")
    parser.add_argument("--tokenizer", required=True, help="tokenizer checkpoint folder")
    parser.add_argument("--preset", default="cpu", choices=sorted(TRAIN_PRESETS))
    parser.add_argument("--out", default="runs/world", help="run folder (resumes from OUT/last)")
    parser.add_argument("--export", default=None, help="also write improved EMA weights here (e.g. checkpoints/world)")
    parser.add_argument("--init", default=None,
                        help="warm-start weights from this checkpoint folder (e.g. checkpoints/world) when OUT/last "
                             "does not exist yet: how a new session continues the shipped model")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--steps", type=int, default=None, help="stop at this total step count")
    parser.add_argument("--cooldown", type=int, default=None,
                        help="the last N steps before --steps, the learning rate falls linearly to zero (ends a "
                             "constant-rate run, e.g. a resumed one: --steps CURRENT+N --cooldown N)")
    parser.add_argument("--minutes", type=float, default=None, help="stop after this much wall time")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--eval-every", type=int, default=None)
    parser.add_argument("--self-context", type=float, default=None,
                        help="share of clips trained on the model's own guesses as context (0-1; default 0)")
    parser.add_argument("--rollout-context", type=float, default=None,
                        help="share of clips whose inputs are the model's own rollouts (up to --rollout-frames ticks "
                             "deep; the targets stay true; 0-1, default 0: docs/training.md, 'Its own rollouts')")
    parser.add_argument("--rollout-frames", type=int, default=None,
                        help="ticks each buffered rollout runs past its 4 true frames (default 48)")
    parser.add_argument("--rollout-still", action="store_true", default=None,
                        help="the buffered rollouts stand still: from still frames, under no action, each frame's target "
                             "the model's own frame before it (docs/training.md, 'Standing still')")
    parser.add_argument("--adv-weight", type=float, default=None,
                        help="weight of the patch-GAN term on the decoded predictions (default 0: off; "
                             "docs/training.md, 'A discriminator for the world model')")
    parser.add_argument("--energy-score", type=float, default=None,
                        help="share of the objective given to the energy score of two draws (0-1; default 0: the x0 "
                             "loss alone; docs/training.md, 'The energy score')")
    parser.add_argument("--warp-padding", choices=["border", "zeros"], default=None,
                        help="what the camera warp of the previous latent puts where the picture moves in: the edge "
                             "repeated ('border') or zeros (the network draws it); a fresh or --init run (default: the --init checkpoint's, "
                             "else 'border')")
    parser.add_argument("--clean-base", action=argparse.BooleanOptionalAction, default=None,
                        help="add the network's correction to the clean previous latent, not to the noised input it "
                             "reads (a fresh or --init run; default: the --init checkpoint's, else off; "
                             "--no-clean-base drops it from an --init checkpoint built so; docs/training.md, 'The clean base')")
    parser.add_argument("--depth", type=int, default=None,
                        help="DiT blocks of a fresh or --init run (default: the --init checkpoint's, else the "
                             "preset's); deeper than the --init checkpoint grows it: its blocks first, the new ones "
                             "starting as identities")
    parser.add_argument("--mlp-ratio", type=float, default=None,
                        help="MLP hidden width as a multiple of the model width, for a fresh or --init run (default: "
                             "the --init checkpoint's, else the preset's 4); wider than the --init checkpoint grows "
                             "it: its hidden units first, the new ones adding nothing until trained")
    parser.add_argument("--walk-zoom", type=float, default=None,
                        help="also enlarge the previous latent by this factor per tick of walking forward (e.g. "
                             "0.015; a fresh or --init run; default: the --init checkpoint's, else 0; docs/training.md, 'The walk zoom')")
    parser.add_argument("--context-max", type=float, default=None,
                        help="train on context and previous-latent noise levels up to this (default 0.15)")
    parser.add_argument("--context-noise", type=float, default=None,
                        help="noise level the exported generator gives finished frames (default 0.05; at most "
                             "--context-max; docs/training.md, 'Context noise')")
    parser.add_argument("--no-compile", action="store_true",
                        help="run the training pass eagerly instead of through torch.compile (compiled, the default "
                             "on CPU: ~1.3-1.5x the steps a minute for a compile of ~1 minute at the start; on CUDA "
                             "the pass runs eagerly, its Triton kernels inside a compiled graph are not measured)")
    parser.add_argument("--eval-clips", type=int, default=8, help="held-out clips per evaluation")
    parser.add_argument("--export-last", action="store_true",
                        help="train no further: evaluate OUT/last's EMA weights and export them to OUT/best and "
                             "--export whatever they score (a session's last step before it commits them)")


def _train_config(args: argparse.Namespace, saved: dict | None = None) -> TrainConfig:
    """The preset, or on resume the recipe saved in OUT/last (so `--lr` and the like need not be
    given again), with the command line's overrides on top; a fresh `--init` run takes the checkpoint's
    depth and MLP ratio unless `--depth` or `--mlp-ratio` says otherwise."""
    cfg = TRAIN_PRESETS[args.preset]
    if saved is not None:
        if saved.get("model", cfg.model) != cfg.model:
            raise SystemExit(f"{args.out} trains the {saved['model']!r} model; --preset {args.preset} would build "
                             f"{cfg.model!r}: resume with --preset {saved['model']} or use a new --out")
        known = {f.name for f in fields(TrainConfig)}
        cfg = replace(cfg, **{k: v for k, v in saved.items() if k in known})
        if saved.get("adv_weight", 0) > 0 and "adv_previous" not in saved:
            cfg = replace(cfg, adv_previous=False)  # saved before the pairs: its discriminator judges frames alone
    overrides = {"max_steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "eval_every": args.eval_every,
                 "self_context": args.self_context, "adv_weight": args.adv_weight, "walk_zoom": args.walk_zoom,
                 "rollout_context": args.rollout_context, "rollout_frames": args.rollout_frames,
                 "rollout_still": args.rollout_still,
                 "energy_score": args.energy_score, "warp_padding": args.warp_padding, "clean_base": args.clean_base,
                 "depth": args.depth,
                 "mlp_ratio": args.mlp_ratio,
                 "context_max": args.context_max, "context_noise": args.context_noise,
                 "cooldown_steps": args.cooldown}
    if args.self_context is not None and not 0.0 <= args.self_context <= 1.0:
        raise SystemExit(f"--self-context {args.self_context} is not a share in [0, 1]")
    if args.rollout_context is not None and not 0.0 <= args.rollout_context <= 1.0:
        raise SystemExit(f"--rollout-context {args.rollout_context} is not a share in [0, 1]")
    if args.energy_score is not None and not 0.0 <= args.energy_score <= 1.0:
        raise SystemExit(f"--energy-score {args.energy_score} is not a share in [0, 1]")
    if args.mlp_ratio is not None and args.mlp_ratio <= 0:
        raise SystemExit(f"--mlp-ratio {args.mlp_ratio} must be positive")
    if args.adv_weight is not None and args.adv_weight < 0:
        raise SystemExit(f"--adv-weight {args.adv_weight} must be >= 0")
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    if saved is None and args.init:  # the checkpoint's network as it was built, unless told otherwise
        model = load_config(args.init)["model"]
        cfg = replace(cfg, **{key: model[key] for key in INIT_TAKES if overrides[key] is None and key in model})
    if not 0 <= cfg.cooldown_steps <= cfg.max_steps:
        raise SystemExit(f"--cooldown {cfg.cooldown_steps} must lie in [0, the run's {cfg.max_steps} steps]")
    if not 0.0 <= cfg.context_noise <= cfg.context_max < 1.0:
        raise SystemExit(f"context noise {cfg.context_noise} must lie in [0, context max {cfg.context_max}], "
                         "and the context max below 1: the generator gives finished frames a level it was trained on")
    return cfg


# what a fresh --init run takes from its checkpoint's model unless its flag is given: its size (a grown
# checkpoint continues at its own size) and the switches that hold no weights, which loading could not refuse
INIT_TAKES = ("depth", "mlp_ratio", "clean_base", "warp_padding", "walk_zoom")


def _last_config(out: Path) -> dict | None:
    """The checkpoint config of a resumable run in OUT/last (its `train` recipe, best score,
    lineage), or None when there is nothing to resume."""
    if not (out / "last" / "trainer.json").exists():
        return None
    return json.loads((out / "last" / "config.json").read_text())


def _snapshot_tokenizer(source: Path, out: Path) -> Path:
    """OUT/tokenizer: a copy of `source` made at the first start (see the module docstring)."""
    snapshot = out / "tokenizer"
    if not snapshot.exists():
        tmp = out / "tokenizer.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source, tmp)
        tmp.rename(snapshot)
    elif (source / "model.safetensors").read_bytes() != (snapshot / "model.safetensors").read_bytes():
        tqdm.write(f"note: {source} changed since this run started; training goes on with its copy in {snapshot}")
    return snapshot


# pixel detail carried where the picture stays (GeneratorConfig.detail_carry/detail_gate): better
# than plain decoding on every figure of the held-out evaluation (docs/evaluation.md, 2026-11-29)
SHIPPED_DETAIL = {"detail_carry": 1.0, "detail_gate": 0.2}
# the sampler's levels shifted towards clean (1, 0.6, 0.33, 0.14, 0 in 4 steps): less of the last step's noise
# stays in a frame, so a standing picture drifts less and rollouts keep more contrast, +0.5 dB over horizons
# 1-16, -0.2 dB teacher-forced (docs/evaluation.md, "Measured: standing still", session 20)
SHIPPED_SHIFT = 0.5


def _checkpoint_config(cfg: TrainConfig, model_cfg: dict, tokenizer: Tokenizer, tokenizer_source: str,
                       resolution: tuple[int, int], seeds: list[int]) -> dict:
    """Everything needed to rebuild and run the model (docs/CONTRACTS.md, Checkpoints)."""
    diffusion = cfg.diffusion()
    generator = {"window_frames": cfg.clip_frames - 1, "steps": cfg.sampler_steps,
                 "context_noise": diffusion.context_noise, "shift": SHIPPED_SHIFT,
                 "prev_noise": generation_prev_noise(diffusion), **SHIPPED_DETAIL}
    return {"kind": "world_model", "model": model_cfg, "diffusion": asdict(diffusion), "train": asdict(cfg),
            "generator": generator, "tokenizer": "tokenizer", "tokenizer_source": tokenizer_source,
            "tokenizer_stride": tokenizer.stride, "action_encoding_version": ENCODING_VERSION,
            "resolution": list(resolution), "clip_frames": cfg.clip_frames, "world_seeds": seeds}


# issue 8: generated frames keep at least this share of the true frames' sharpness
SHARPNESS_TARGET = 0.7


def score(figures: dict[str, float]) -> float:
    """What 'best' means for a run: teacher-forced PSNR (the steadiest of the training evaluation's
    figures), less 10 dB per unit of rollout sharpness ratio short of SHARPNESS_TARGET, as the
    tokenizer's 'best' weighs its reconstructions. Without the penalty a run trained for sharp
    frames (--adv-weight) would keep its first, blurriest evaluation as best."""
    ratio = figures["sharpness_rollout"] / max(figures["sharpness_true"], 1e-6)
    return figures["teacher_forced_psnr"] - 10.0 * max(0.0, SHARPNESS_TARGET - ratio)


def _evaluate_and_export(trainer: WorldTrainer, tokenizer: Tokenizer, clips, cfg: TrainConfig, base_config: dict,
                         args: argparse.Namespace, best: float) -> float:
    """Evaluate the EMA weights; save a video; export when the score improved. Returns the best score."""
    out = Path(args.out)
    gen_cfg = GeneratorConfig(resolution=tuple(base_config["resolution"]), **base_config["generator"], seed=0)
    figures, rollout = evaluate(trainer.ema, tokenizer, clips, gen_cfg, trainer.info.device, context=EVAL_CONTEXT)
    save_video(out / "samples" / f"step{trainer.step:07d}.mp4", clips.frames, rollout)
    line = {"step": trainer.step, **{k: round(v, 3) for k, v in figures.items()}, "score": round(score(figures), 3)}
    with (out / "eval.jsonl").open("a") as f:
        f.write(json.dumps(line) + "\n")
    tqdm.write("eval " + json.dumps(line))
    if score(figures) > best:
        best = score(figures)
        config = {**base_config, "steps": trainer.step, "eval": figures, "eval_seeds": clips.seeds}
        targets = [out / "best"] + ([Path(args.export)] if args.export else [])
        for target in targets:
            save_checkpoint(target, trainer.ema.state_dict(), config, dtype=torch.bfloat16)
            shutil.copytree(out / "tokenizer", target / "tokenizer", dirs_exist_ok=True)  # the run's snapshot
    return best


def main(args: argparse.Namespace) -> int:
    info: DistInfo = init_distributed(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    last_config = _last_config(out)
    cfg = _train_config(args, last_config.get("train") if last_config else None)
    if info.is_main:  # snapshot and encode once, on rank 0; the others wait and read the same files
        _snapshot_tokenizer(Path(args.tokenizer), out)
    barrier(info)
    tokenizer = Tokenizer.load(out / "tokenizer", device=info.device)
    if info.is_main:
        encode_shards(args.data, tokenizer, out / "latents", device=info.device)
    barrier(info)
    train = LatentEpisodes.load(encode_shards(args.data, tokenizer, out / "latents", device=info.device))
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = build_dit(cfg.model, latent_channels=tokenizer.latent_channels, walk_zoom=cfg.walk_zoom,
                      warp_padding=cfg.warp_padding, clean_base=cfg.clean_base,  # depth and MLP ratio: 0 keeps the preset's
                      **{k: v for k, v in (("depth", cfg.depth), ("mlp_ratio", cfg.mlp_ratio)) if v})
    trainer = WorldTrainer(cfg, model, info, tokenizer=tokenizer,
                           compile=info.device.type == "cpu" and not args.no_compile)
    base_config = _checkpoint_config(cfg, model.config_dict(), tokenizer, str(args.tokenizer),
                                     train.resolution, sorted(set(train.seeds.tolist())))
    best = float("-inf")
    if last_config is not None:
        trainer.load(out / "last")
        best = last_config.get("best_score", best)  # runs saved before the score existed: -inf
        base_config.update({k: last_config[k] for k in ("init", "init_steps") if k in last_config})
    elif args.init:
        base_config.update(init=str(args.init), init_steps=trainer.init_weights(args.init))
    # every rank draws its own clips; a resumed run continues with a fresh, step-dependent stream
    sampler = train.sampler(cfg.clip_frames, seed=(cfg.seed * 1_000_003 + trainer.step) * 1009 + info.rank)
    buffer = None
    if cfg.rollout_context > 0:  # the model's own rollouts, played as the exported generator plays
        buffer = RolloutBuffer(train, cfg.rollout_context, cfg.clip_frames,
                               GeneratorConfig(resolution=tuple(base_config["resolution"]), **base_config["generator"]),
                               tokenizer, frames=cfg.rollout_frames, rollouts=cfg.rollout_batch,
                               refresh=cfg.rollout_refresh, seed=(cfg.seed * 1_000_003 + trainer.step) * 1013 + info.rank,
                               device=info.device, still=cfg.rollout_still)
    clips = load_eval_clips(args.heldout, args.eval_clips, EVAL_CONTEXT + EVAL_HORIZON) if info.is_main else None
    n_params = sum(p.numel() for p in model.parameters())
    if info.is_main:
        tqdm.write(f"world model {cfg.model}: {n_params / 1e6:.2f} M parameters, {train.latents.shape[0]} training "
                   f"frames, resolution {train.resolution}, start at step {trainer.step}, device {info.device}")
    if args.export_last:
        if last_config is None:
            raise SystemExit(f"--export-last: {out / 'last'} does not exist: nothing trained to export")
        if info.is_main:
            _evaluate_and_export(trainer, tokenizer, clips, cfg, base_config, args, float("-inf"))
        shutdown(info)
        return 0
    deadline = time.time() + 60 * args.minutes if args.minutes else float("inf")
    bar = tqdm(total=cfg.max_steps, initial=trainer.step, disable=not info.is_main, unit="step", dynamic_ncols=True)
    tic, tokens_per_step = time.time(), cfg.batch_size * info.world_size * cfg.clip_frames
    rollout_s = {}
    while trainer.step < cfg.max_steps and time.time() < deadline:
        batch = sampler.batch(cfg.batch_size)
        if buffer is not None:
            if buffer.due(trainer.step):
                rollout_s = {"rollouts_s": f"{buffer.refresh(trainer.model, trainer.step):.0f}"}
            batch = buffer.mix(batch)
        stats = trainer.train_step(batch)
        bar.update(1)
        if trainer.step % cfg.log_every == 0:
            rate = cfg.log_every * tokens_per_step / (time.time() - tic)
            bar.set_postfix(loss=f"{stats['loss']:.4f}", gnorm=f"{stats['grad_norm']:.2f}", frames_s=f"{rate:.0f}",
                            **{k: f"{stats[k]:.3f}" for k in ("g_adv", "d") if k in stats}, **rollout_s)
            tic = time.time()
        done = trainer.step >= cfg.max_steps or time.time() >= deadline
        if info.is_main and (trainer.step % cfg.eval_every == 0 or done):
            best = _evaluate_and_export(trainer, tokenizer, clips, cfg, base_config, args, best)
        if info.is_main and (trainer.step % cfg.save_every == 0 or done):
            trainer.save(out / "last", {**base_config, "best_score": best}, {})
    bar.close()
    shutdown(info)
    return 0
