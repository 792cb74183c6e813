"""`patchworld train-refiner`: train the pixel refiner (simulator.models.refiner) on the world model's own rollouts.

    patchworld train-refiner --checkpoint checkpoints/world --data data/train --heldout data/heldout --out runs/refiner

1. Rollouts: episodes of `--data` (and `--heldout`) are cut into context + `--horizon` windows and run
   through the checkpoint's streaming Generator on their recorded actions (the loop evaluation uses,
   `decoder_pairs.rollout_latents`); every generated latent is decoded. Kept in OUT/rollouts-*.safetensors
   and reused by a later run with the same settings.
2. Training: the refiner runs each rollout from its last true context frame through every horizon,
   each step reading what it showed the step before, as a stream does in play; the loss is the mean
   squared error to the engine's frames over the whole chain (PSNR is what evaluation reads), plus
   with `--edge-weight` an edge-energy term (the squared error alone is won by a blur), its gradient
   through the chain (the refiner learns what its own frames are worth as they age). With
   `--adv-weight` a patch discriminator (tokenizer_losses.PatchDiscriminator) learns beside it to tell
   its frames from the engine's, and a hinge-GAN term asks the refiner for frames it cannot tell apart:
   detail, painted through the correction (`--residual-max`), where the decoder's picture is fog.
3. Every `--eval-every` steps the held-out rollouts are refined and the pooled PSNR by horizon band
   is compared with the decoder's pictures and with the frames the generator showed without a refiner
   (its configured detail carry), with their sharpness: OUT/eval.jsonl; the weights with the lowest
   held-out objective go to OUT/best, the latest to OUT/last (refiner checkpoint folders) with the
   optimizer, schedule and sampling state: a run stopped anywhere resumes from OUT/last when given
   the same command (with a larger `--steps` it trains on).

To play with it, name it in a world checkpoint's config.json ("generator": {"refiner": "refiner"}, a
folder next to config.json), or on a command line: `--generator refiner=runs/refiner/best`.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from simulator.actions import encode_many
from simulator.checkpoint import load_optimizer, save_optimizer, save_tensors
from simulator.data.shards import list_shards, read_shard
from simulator.eval.fidelity import pooled_psnr
from simulator.eval.metrics import sharpness
from simulator.models.tokenizer_losses import PatchDiscriminator, edge_energy_l1, hinge_d_loss, hinge_g_loss
from simulator.models.refiner import Refiner, RefinerConfig
from simulator.train.decoder_pairs import cut_episodes, rollout_latents

ROLLOUT_KEYS = ("decoded", "first_decoded", "true", "shown", "buttons", "camera")
BANDS = ((1, 4), (5, 8), (9, 16), (17, 32), (33, 64))


@torch.inference_mode()
def collect(generator, episodes, context: int, horizon: int, slots: int, desc: str = "rollouts",
            progress: bool = True) -> dict[str, torch.Tensor]:
    """The generator's rollouts of `episodes` as refiner training data (see ROLLOUT_KEYS): decoded pictures
    [R, horizon, 3, H, W] (float16, [-1, 1]), the decoded last context frame [R, 3, H, W], the engine's
    frames and the generator's shown frames uint8 [R, horizon + 1, H, W, 3] (index 0: the last context
    frame), the actions as the generator encodes them: buttons [R, horizon, BUTTON_DIM], camera bins [R, horizon, 2]."""
    rollouts, latents = rollout_latents(generator, episodes, context, horizon, slots, desc, progress)
    tokenizer = generator.tokenizer
    R = len(episodes)
    decoded = torch.stack([tokenizer.decode(latents[r].to(generator.device)).cpu() for r in range(R)])
    true = torch.from_numpy(rollouts.true)
    first = torch.cat([tokenizer.decode(tokenizer.encode(true[r:r + 1, 0].to(generator.device))).cpu() for r in range(R)])
    encoded = [encode_many([a.quantized() for a in actions]) for actions in rollouts.actions]
    return {"decoded": decoded.half(), "first_decoded": first.half(), "true": true,
            "shown": torch.from_numpy(rollouts.generated),
            "buttons": torch.from_numpy(np.stack([hot for hot, _ in encoded])),
            "camera": torch.from_numpy(np.stack([cam for _, cam in encoded]))}


def to_unit(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float [..., 3, H, W] in [-1, 1] (Tokenizer.frames_to_input's scale)."""
    return frames.movedim(-1, -3).float() / 127.5 - 1.0


def chain(refiner: Refiner, batch: dict[str, torch.Tensor], horizon: int | None = None) -> torch.Tensor:
    """The frames the refiner shows over each rollout of `batch` (ROLLOUT_KEYS, first axis R):
    [R, horizon, 3, H, W] in [-1, 1], each step reading the step before's shown frame and decoded picture."""
    horizon = horizon or batch["decoded"].shape[1]
    shown, last_decoded = to_unit(batch["true"][:, 0]), batch["first_decoded"].float()
    out = []
    for h in range(horizon):
        decoded = batch["decoded"][:, h].float()
        shown = refiner(decoded, shown, last_decoded, batch["camera"][:, h], batch["buttons"][:, h])
        last_decoded = decoded
        out.append(shown)
    return torch.stack(out, dim=1)


def unit_to_uint8(x: torch.Tensor) -> np.ndarray:
    """[..., 3, H, W] in [-1, 1] -> uint8 [..., H, W, 3], rounded as the generator shows frames."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).movedim(-3, -1).numpy()


def objective(pred: torch.Tensor, true: torch.Tensor, edge_weight: float) -> torch.Tensor:
    """The training loss of chained frames pred [R, T, 3, H, W] against the engine's uint8 [R, T, H, W, 3]:
    mean squared error, plus `edge_weight` times the edge-energy L1 (tokenizer_losses.edge_energy_l1: as
    much edge contrast per 8x8 region as the true frame has; the squared error alone is won by a blur)."""
    target = to_unit(true)
    loss = (pred - target).pow(2).mean()
    if edge_weight:
        loss = loss + edge_weight * edge_energy_l1(pred.flatten(0, 1), target.flatten(0, 1))
    return loss


def _chained(refiner: Refiner, data: dict[str, torch.Tensor], batch_size: int,
             edge_weight: float) -> tuple[dict[str, np.ndarray], np.ndarray, float]:
    """Chain the refiner over every rollout of `data` -> ({"refiner", "decoded", "shown"}: uint8 frames
    [R, horizon, H, W, 3]), the engine's frames alike, and the mean training objective."""
    R = data["decoded"].shape[0]
    chained = [chain(refiner, {k: v[i:i + batch_size] for k, v in data.items()}) for i in range(0, R, batch_size)]
    loss = sum(float(objective(c, data["true"][i * batch_size:(i + 1) * batch_size, 1:], edge_weight)) * len(c)
               for i, c in enumerate(chained)) / R
    methods = {"refiner": np.concatenate([unit_to_uint8(c) for c in chained]),
               "decoded": unit_to_uint8(data["decoded"].float()), "shown": data["shown"][:, 1:].numpy()}
    return methods, data["true"][:, 1:].numpy(), loss


@torch.no_grad()
def evaluate(refiner: Refiner, data: dict[str, torch.Tensor], batch_size: int = 32, edge_weight: float = 0.0,
             still: dict[str, torch.Tensor] | None = None, still_weight: float = 1.0) -> dict[str, float]:
    """Pooled PSNR (dB) of the refiner's frames, the decoder's pictures and the generator's shown frames
    against the engine's, over horizons 1-16 and by horizon band; their sharpness as a share of the true
    frames' over horizons 1-16; and the refiner's training objective (`objective`). With `still` rollouts
    (the player stands still, `still_episodes`): the same three over the whole still stretch and at its
    last tick, with the last frame's sharpness against the engine's (above 1: sharpened into noise), and
    `objective` adds `still_weight` times their objective (`still_objective`), as training does."""
    refiner.eval()
    horizon = data["decoded"].shape[1]
    methods, true, loss = _chained(refiner, data, batch_size, edge_weight)
    figures: dict[str, float] = {"objective": round(loss, 5)}
    if still is not None:
        still_methods, still_true, still_loss = _chained(refiner, still, batch_size, edge_weight)
        figures["objective"] = round(loss + still_weight * still_loss, 5)
        figures["still_objective"] = round(still_loss, 5)
        true_last = float(np.mean(sharpness(still_true[:, -1])))
        for name, frames in still_methods.items():
            figures[f"still_{name}_psnr"] = round(pooled_psnr(frames, still_true), 3)
            figures[f"still_{name}_last_psnr"] = round(pooled_psnr(frames[:, -1], still_true[:, -1]), 3)
            figures[f"still_{name}_sharpness_ratio_last"] = round(float(np.mean(sharpness(frames[:, -1]))) / true_last, 3)
    true_sharpness = float(np.mean(sharpness(true[:, :16])))
    for name, frames in methods.items():
        figures[f"{name}_h1-16"] = round(pooled_psnr(frames[:, :16], true[:, :16]), 3)
        figures[f"{name}_sharpness_ratio_h1-16"] = round(float(np.mean(sharpness(frames[:, :16]))) / true_sharpness, 3)
        for lo, hi in BANDS:
            if hi <= horizon:
                figures[f"{name}_h{lo}-{hi}"] = round(pooled_psnr(frames[:, lo - 1:hi], true[:, lo - 1:hi]), 3)
        figures[f"{name}_h1"] = round(pooled_psnr(frames[:, 0], true[:, 0]), 3)
    refiner.train()
    return figures


def _rollouts(path: Path, meta: dict[str, str], make) -> dict[str, torch.Tensor]:
    """The rollouts kept at `path` when they were made with the same settings `meta`, else `make()` them and keep them."""
    if path.is_file():
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            kept = f.metadata() or {}
        if kept == meta:
            print(f"reusing {path}")
            return load_file(str(path))
    data = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in data.items()}, str(path), metadata=meta)
    return data


def _resume(last: Path, config: RefinerConfig, refiner: Refiner, opt: torch.optim.Optimizer,
            sched: torch.optim.lr_scheduler.LRScheduler, device: str) -> dict | None:
    """Load OUT/last's weights, optimizer and schedule into a fresh run -> its saved state ({"steps",
    "rng", "best"}), or None when there is no resumable OUT/last (nothing there, or the weights of a run
    from before resuming existed)."""
    if not (last / "config.json").is_file() or not (last / "optim.safetensors").is_file():
        return None
    saved = json.loads((last / "config.json").read_text())
    if "resume" not in saved:
        return None
    if saved["refiner"] != asdict(config):
        raise SystemExit(f"{last} holds a refiner {saved['refiner']}, not the {asdict(config)} these options make: "
                         "resume with its options or use a new --out")
    refiner.load_state_dict(Refiner.load(last, device).state_dict())
    load_optimizer(opt, last / "optim", torch.device(device))
    # the optimizer is written before the weights: a run stopped between the two left a newer optimizer
    taken = {int(state["step"]) for state in opt.state.values()}
    if taken != {saved["steps"]}:
        raise SystemExit(f"{last}: optimizer at step {sorted(taken)}, weights at {saved['steps']} (stopped while "
                         "saving): use a new --out")
    sched.load_state_dict(saved["resume"]["schedule"])
    return {"steps": saved["steps"], "rng": saved["resume"]["rng"], "best": saved["best"]}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="checkpoints/world", help="world-model checkpoint folder")
    parser.add_argument("--generator", nargs="+", default=[], metavar="KEY=VALUE",
                        help="generator options the rollouts are made with (GeneratorConfig fields, as in "
                             "`patchworld eval`), e.g. prev_noise=0.15; play with the same ones")
    parser.add_argument("--data", required=True, help="shard directory whose episodes drive the training rollouts")
    parser.add_argument("--heldout", required=True, help="shard directory of held-out episodes (validation)")
    parser.add_argument("--out", required=True, help="output folder (rollouts, eval.jsonl, best/, last/)")
    parser.add_argument("--context", type=int, default=8, help="true frames each rollout starts from")
    parser.add_argument("--horizon", type=int, default=16, help="generated ticks per rollout (the training chain)")
    parser.add_argument("--starts", type=int, default=1, help="rollouts per training episode, spread over it")
    parser.add_argument("--heldout-starts", type=int, default=2, help="rollouts per held-out episode")
    parser.add_argument("--max-episodes", type=int, default=None, help="use at most this many training episodes")
    parser.add_argument("--slots", type=int, default=16, help="rollouts stepped together")
    parser.add_argument("--steps", type=int, default=800, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=8, help="rollouts per step")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (cosine decay to a tenth)")
    parser.add_argument("--width", type=int, default=RefinerConfig.width, help="refiner channels at full resolution")
    parser.add_argument("--blocks", type=int, default=RefinerConfig.blocks, help="residual blocks at 1/4 resolution")
    parser.add_argument("--residual-max", type=float, default=RefinerConfig.residual_max,
                        help="largest correction the refiner adds, [-1, 1] units (0: it only blends the two pictures)")
    parser.add_argument("--edge-weight", type=float, default=0.0,
                        help="weight of the edge-energy term beside the squared error (0: squared error alone, "
                             "which blurs: docs/training.md, 'The pixel refiner')")
    parser.add_argument("--adv-weight", type=float, default=0.0,
                        help="weight of a hinge-GAN term: a patch discriminator trained beside the refiner tells "
                             "its frames from the engine's (0: none). The refiner paints what it lacks through its "
                             "correction, so give it a --residual-max; best/ is still chosen on the held-out "
                             "objective, which the term does not enter: read OUT/last too")
    parser.add_argument("--disc-lr", type=float, default=2e-4, help="the discriminator's learning rate")
    parser.add_argument("--flow-max", type=float, default=RefinerConfig.flow_max,
                        help="largest shift, in pixels, the refiner may add to the moved last frame, pixel by pixel, "
                             "on ticks where the player walks, jumps or turns (0: the turn and walk's move alone)")
    parser.add_argument("--walk-zoom", type=float, default=RefinerConfig.walk_zoom,
                        help="the picture's enlargement per tick of walking forward, for the move")
    parser.add_argument("--still-seeds", nargs="+", default=[], metavar="SEED",
                        help="world seeds (ints or ranges a-b) of still rollouts trained beside the others: the "
                             "policy plays, then the player stands still for --still-horizon ticks (a chain of "
                             "16 never shows what a refiner does to a picture that stops changing)")
    parser.add_argument("--still-heldout-seeds", nargs="+", default=[], metavar="SEED",
                        help="world seeds of held-out still rollouts (evaluated; their objective joins the "
                             "held-out objective that chooses best/)")
    parser.add_argument("--still-horizon", type=int, default=64, help="still ticks per still rollout")
    parser.add_argument("--still-batch", type=int, default=4, help="still rollouts per step")
    parser.add_argument("--still-weight", type=float, default=1.0, help="weight of the still rollouts' objective")
    parser.add_argument("--init", default=None,
                        help="refiner checkpoint folder to start from (its --width and --blocks must match; "
                             "--residual-max, --walk-zoom and --flow-max are these options'; ignored when OUT/last "
                             "resumes)")
    parser.add_argument("--eval-every", type=int, default=100, help="steps between held-out evaluations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")


def main(args: argparse.Namespace) -> int:
    from simulator.eval.cli import parse_options, parse_seeds
    from simulator.eval.episodes import WARMUP, still_episodes
    from simulator.rollout.generator import Generator

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    # the rollouts show frames as the checkpoint plays them, without a refiner (its detail carry is the baseline)
    options = parse_options(args.generator)
    if options.get("refiner", "none") not in ("none", ""):
        raise SystemExit("train-refiner makes its rollouts without a refiner: drop --generator refiner=...")
    try:
        generator = Generator.from_checkpoint(args.checkpoint, device=args.device, batch_size=args.slots,
                                              **{**options, "refiner": "none"})
    except ValueError as err:  # an unknown option or a bad value
        raise SystemExit(str(err)) from None

    # what the cached rollouts were made with: they are made without a refiner, so its field says nothing of them
    made_with = json.dumps({k: v for k, v in generator.describe().items() if k != "refiner"}, default=str)

    def rollouts(data_dir: str, starts: int, max_episodes: int | None, name: str) -> dict[str, torch.Tensor]:
        meta = {"checkpoint": str(Path(args.checkpoint).resolve()), "data": str(Path(data_dir).resolve()),
                "context": str(args.context), "horizon": str(args.horizon), "starts": str(starts),
                "max_episodes": str(max_episodes),
                "generator": made_with}

        def make() -> dict[str, torch.Tensor]:
            episodes = [ep for shard in list_shards(data_dir) for ep in read_shard(shard)][:max_episodes]
            cuts = cut_episodes(episodes, args.context, args.horizon, starts)
            return collect(generator, cuts, args.context, args.horizon, args.slots, desc=f"{name} rollouts")

        return _rollouts(out / f"rollouts-{name}.safetensors", meta, make)

    def still_rollouts(seeds: list[str], name: str) -> dict[str, torch.Tensor] | None:
        if not seeds:
            return None
        try:
            seeds = parse_seeds(seeds)
        except ValueError as err:
            raise SystemExit(str(err)) from None
        warmup = WARMUP  # as the evaluation's episodes and probes start
        meta = {"checkpoint": str(Path(args.checkpoint).resolve()), "still_seeds": json.dumps(seeds),
                "context": str(args.context), "horizon": str(args.still_horizon), "warmup": str(warmup),
                "generator": made_with}

        def make() -> dict[str, torch.Tensor]:
            episodes = still_episodes(seeds, args.context, args.still_horizon, generator.resolution, warmup=warmup,
                                      desc=f"{name} engine episodes")
            return collect(generator, episodes, args.context, args.still_horizon, args.slots, desc=f"{name} rollouts")

        return _rollouts(out / f"rollouts-{name}.safetensors", meta, make)

    if args.still_batch < 1 or args.still_horizon < 1:
        raise SystemExit(f"--still-batch and --still-horizon must be >= 1, got {args.still_batch}, {args.still_horizon}")
    train = rollouts(args.data, args.starts, args.max_episodes, "train")
    heldout = rollouts(args.heldout, args.heldout_starts, None, "heldout")
    still_train = still_rollouts(args.still_seeds, "still-train")
    still_heldout = still_rollouts(args.still_heldout_seeds, "still-heldout")
    if still_train is not None and len(still_train["decoded"]) < args.still_batch:
        raise SystemExit(f"--still-batch {args.still_batch} needs at least that many --still-seeds")
    torch.manual_seed(args.seed)
    config = RefinerConfig(width=args.width, blocks=args.blocks, walk_zoom=args.walk_zoom,
                           residual_max=args.residual_max, flow_max=args.flow_max)
    refiner = Refiner(config).to(args.device).train()
    if args.init:
        init = Refiner.load(args.init, args.device)
        if (init.config.width, init.config.blocks) != (config.width, config.blocks):
            raise SystemExit(f"--init {args.init} holds a refiner of width {init.config.width} and {init.config.blocks} "
                             f"blocks, not the {config.width} and {config.blocks} of --width and --blocks")
        # a refiner without the shift field starts one that has it: the field starts at zero, no shift
        missing, unexpected = refiner.load_state_dict(init.state_dict(), strict=False)
        if unexpected or any(not k.startswith("flow.") for k in missing):
            raise SystemExit(f"--init {args.init}: its weights do not fit these options ({missing + unexpected})")
    opt = torch.optim.AdamW(refiner.parameters(), lr=args.lr, weight_decay=0.0)
    disc = disc_opt = None
    if args.adv_weight < 0:
        raise SystemExit(f"--adv-weight must be >= 0, got {args.adv_weight}")
    if args.adv_weight:
        disc = PatchDiscriminator().to(args.device).train()
        disc_opt = torch.optim.AdamW(disc.parameters(), lr=args.disc_lr, betas=(0.5, 0.9))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps)))
    R = len(train["decoded"])
    rng = np.random.default_rng(args.seed)
    settings = {**{k: v for k, v in vars(args).items() if k != "func"}, "train_rollouts": R,
                "heldout_rollouts": len(heldout["decoded"]), "world_generator": generator.describe(),
                "still_train_rollouts": 0 if still_train is None else len(still_train["decoded"]),
                "still_heldout_rollouts": 0 if still_heldout is None else len(still_heldout["decoded"])}
    best, best_score, start = None, math.inf, 1
    resumed = _resume(out / "last", config, refiner, opt, sched, args.device)
    if resumed is not None:
        start, rng.bit_generator.state = resumed["steps"] + 1, resumed["rng"]
        best, best_score = resumed["best"], resumed["best"]["objective"]
        print(f"resumed {out / 'last'} at step {resumed['steps']} (best held-out objective {best_score:.4f})")
        if disc is not None and (out / "last" / "disc.safetensors").is_file():
            disc.load_state_dict(load_file(str(out / "last" / "disc.safetensors"), device=args.device))
            load_optimizer(disc_opt, out / "last" / "disc_optim", torch.device(args.device))
        if start > args.steps:
            raise SystemExit(f"{out / 'last'} is already at step {start - 1} of --steps {args.steps}: nothing to "
                             "train (a larger --steps trains on)")
    log = (out / "eval.jsonl").open("a")

    def checkpoint(step: int) -> None:
        nonlocal best, best_score
        figures = {"step": step, **evaluate(refiner, heldout, edge_weight=args.edge_weight, still=still_heldout,
                                            still_weight=args.still_weight)}
        log.write(json.dumps(figures) + "\n")
        log.flush()
        if figures["objective"] < best_score:  # the training objective on the held-out rollouts
            best, best_score = figures, figures["objective"]
            refiner.save(out / "best", dtype=None, extra={"steps": step, "figures": figures, "train": settings})
        # OUT/last last: a run stopped between the two saves resumes from the step before, best/ intact
        (out / "last").mkdir(parents=True, exist_ok=True)
        save_optimizer(opt, out / "last" / "optim")
        if disc is not None:
            save_tensors(disc.state_dict(), out / "last" / "disc.safetensors")
            save_optimizer(disc_opt, out / "last" / "disc_optim")
        refiner.save(out / "last", dtype=None, extra={
            "steps": step, "figures": figures, "train": settings, "best": best,
            "resume": {"schedule": sched.state_dict(), "rng": rng.bit_generator.state}})
        bar.set_postfix(loss=f"{loss_value:.4f}", h1_16=figures["refiner_h1-16"], shown=figures["shown_h1-16"],
                        sharp=figures["refiner_sharpness_ratio_h1-16"], best=best_score)

    loss_value, started = float("nan"), time.perf_counter()
    bar = tqdm(range(start, args.steps + 1), desc="refiner", unit="step", initial=start - 1, total=args.steps)
    for step in bar:
        idx = torch.from_numpy(rng.choice(R, args.batch_size, replace=False))
        batch = {k: v[idx] for k, v in train.items()}
        frames = chain(refiner, batch)
        loss = objective(frames, batch["true"][:, 1:], args.edge_weight)
        judged = [(frames, batch["true"][:, 1:])]
        if still_train is not None:
            idx = torch.from_numpy(rng.choice(len(still_train["decoded"]), args.still_batch, replace=False))
            batch = {k: v[idx] for k, v in still_train.items()}
            frames = chain(refiner, batch)
            loss = loss + args.still_weight * objective(frames, batch["true"][:, 1:], args.edge_weight)
            every = max(1, frames.shape[1] // args.horizon)  # as many judged frames per still rollout as per moving one
            judged.append((frames[:, every - 1::every], batch["true"][:, every::every]))
        if disc is not None:
            fake = torch.cat([f.flatten(0, 1) for f, _ in judged])
            real = torch.cat([to_unit(t).flatten(0, 1) for _, t in judged])
            d_loss = hinge_d_loss(disc(real), disc(fake.detach()))
            disc_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            disc_opt.step()
            disc.requires_grad_(False)
            g_adv = hinge_g_loss(disc(fake))
            disc.requires_grad_(True)
            loss = loss + args.adv_weight * g_adv
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(refiner.parameters(), 1.0)
        opt.step()
        sched.step()
        loss_value = loss.item()
        bar.set_postfix(loss=f"{loss_value:.4f}", best=best_score,
                        **({} if disc is None else {"d": f"{d_loss.item():.3f}", "g_adv": f"{g_adv.item():.3f}"}))
        if step % args.eval_every == 0 or step == args.steps:
            checkpoint(step)
    log.close()
    print(f"best held-out objective at step {best['step']}: PSNR over horizons 1-16 refiner {best['refiner_h1-16']} dB "
          f"(sharpness {best['refiner_sharpness_ratio_h1-16']} of true), decoded {best['decoded_h1-16']}, shown without "
          f"refiner {best['shown_h1-16']} ({best['shown_sharpness_ratio_h1-16']}) "
          f"({time.perf_counter() - started:.0f} s); {out / 'best'}")
    return 0
