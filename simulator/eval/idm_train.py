"""Train the inverse-dynamics model on engine episodes; record its held-out accuracy in its config.

    python -m simulator.eval.idm_train --preset small --out checkpoints/idm
    python -m simulator.eval.idm_train --evaluate OLD_CKPT checkpoints/idm   # per-head accuracy, side by side

Recipe: episodes from the IDM action sampler (idm_data.py) on world seeds reserved for the IDM
(far from the seeds the world model trains and is evaluated on), random frame pairs,
cross-entropy per camera axis and a pos-weighted BCE per button. Half the pairs are blurred
(both frames alike) so that the referee still reads actions from a blurry world model's
frames, and an IDM verdict of "uncontrollable" means the motion is wrong, not the texture.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from simulator.actions import CAMERA_BINS, Action
from simulator.eval.idm import IDM_BUTTONS, IDM_PRESETS, InverseDynamics, accuracy, action_targets, predict
from simulator.benchlog import add_record_arguments, markdown_table, record
from simulator.eval.idm_data import IdmSamplerConfig, collect
from simulator.eval.metrics import down_up

# IDM world seeds are IDM_SEED_BASE + i: below HELDOUT_WORLD_SEEDS_FROM (100,000: evaluation only) and far from
# the world model's training worlds (0-59). The first shipped IDM used 9,000,000+.
IDM_SEED_BASE = 50_000


@dataclass
class IdmTrainConfig:
    preset: str = "small"
    train_episodes: int = 600
    heldout_episodes: int = 64
    episode_frames: int = 64
    resolution: tuple[int, int] = (64, 64)  # engine frame size (H, W)
    steps: int = 2500
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.01
    blur_prob: float = 0.5  # share of pairs blurred by a random 2x or 4x down-up sampling
    brightness: float = 0.2  # both frames of a pair scaled by one factor in [1 - this, 1 + this]
    balance: float = 1.0  # button pos_weight = ((1 - rate) / rate) ** balance: 1 = fully balanced, as scored
    seed: int = 0
    sampler: IdmSamplerConfig = field(default_factory=IdmSamplerConfig)


IDM_TRAIN_PRESETS: dict[str, IdmTrainConfig] = {
    "tiny": IdmTrainConfig(preset="tiny", train_episodes=6, heldout_episodes=2, episode_frames=24, steps=40,
                           batch_size=32),  # tests: seconds
    "small": IdmTrainConfig(),  # the shipped checkpoint (~30 min on the shared 2-core CPU)
}


def _episode_arrays(episodes: list[tuple[np.ndarray, list[Action]]]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    frames = torch.from_numpy(np.stack([f for f, _ in episodes]))  # [E, T, H, W, 3]
    targets = [action_targets(a) for _, a in episodes]
    return frames, {k: torch.from_numpy(np.stack([t[k] for t in targets])) for k in targets[0]}  # [E, T, ...]


def _blur(x: torch.Tensor, prob: float, gen: torch.Generator) -> torch.Tensor:
    """Blur a random share of uint8 pairs [B, 2, H, W, 3] by down- then up-sampling (same factor per pair)."""
    out = x.clone()
    picks = torch.nonzero(torch.rand(len(x), generator=gen) < prob).flatten().to(x.device)
    use_four = torch.randint(0, 2, (len(picks),), generator=gen).bool().to(x.device)  # which picked pairs get factor 4
    for factor in (2, 4):
        rows = picks[use_four == (factor == 4)]
        if len(rows):
            out[rows] = torch.from_numpy(down_up(x[rows].cpu(), factor)).to(x.device)
    return out


_LEFT, _RIGHT = IDM_BUTTONS.index("left"), IDM_BUTTONS.index("right")


def _mirror(pairs: torch.Tensor, yaw: torch.Tensor, buttons: torch.Tensor, gen: torch.Generator,
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mirror a random half of the pairs left-right, with their labels: the yaw bin flips sign and left and
    right swap. The world looks alike in a mirror, so this doubles the data the IDM sees, and it cannot
    learn "this world turns left"."""
    flip = (torch.rand(len(pairs), generator=gen) < 0.5).to(pairs.device)
    pairs = torch.where(flip[:, None, None, None, None], pairs.flip(3), pairs)  # [B, 2, H, W, 3], W flipped
    yaw = torch.where(flip, CAMERA_BINS - 1 - yaw, yaw)  # the bins are symmetric around the middle one
    swapped = buttons.clone()
    swapped[:, [_LEFT, _RIGHT]] = buttons[:, [_RIGHT, _LEFT]]
    return pairs, yaw, torch.where(flip[:, None], swapped, buttons)


def _brightness(pairs: torch.Tensor, spread: float, gen: torch.Generator) -> torch.Tensor:
    """Scale both frames of each pair by one random factor in [1 - spread, 1 + spread]."""
    factor = (1 + spread * (2 * torch.rand(len(pairs), generator=gen) - 1)).to(pairs.device)
    return (pairs.float() * factor[:, None, None, None, None]).round().clamp(0, 255).to(torch.uint8)


def evaluate(model: InverseDynamics, episodes: list[tuple[np.ndarray, list[Action]]]) -> dict[str, float]:
    """IDM accuracy over every transition of the given episodes."""
    preds = [predict(model, f) for f, _ in episodes]
    targets = [action_targets(a[1:]) for _, a in episodes]
    return accuracy({k: np.concatenate([p[k] for p in preds]) for k in ("yaw", "pitch", "buttons")},
                    {k: np.concatenate([t[k] for t in targets]) for k in ("yaw", "pitch", "buttons")})


def idm_seeds(config: IdmTrainConfig) -> tuple[list[int], list[int]]:
    """(training world seeds, held-out world seeds) of a run."""
    n_train, n_held = config.train_episodes, config.heldout_episodes
    return ([IDM_SEED_BASE + i for i in range(n_train)], [IDM_SEED_BASE + n_train + i for i in range(n_held)])


def train(config: IdmTrainConfig, progress: bool = True, device: str = "cpu", workers: int = 1,
          ) -> tuple[InverseDynamics, dict]:
    """Collect (in `workers` processes), train on `device`, evaluate on held-out worlds.
    Returns (model on the CPU, summary with accuracies)."""
    train_seeds, held_seeds = idm_seeds(config)
    started = time.time()
    episodes = collect(train_seeds + held_seeds, config.episode_frames, config.resolution, config.seed, config.sampler,
                       progress, workers)
    collect_s = time.time() - started
    model, summary = fit(config, episodes[:len(train_seeds)], episodes[len(train_seeds):], progress, device)
    summary.update(train_seeds=[train_seeds[0], train_seeds[-1]], heldout_seeds=[held_seeds[0], held_seeds[-1]],
                   collect_seconds=round(collect_s, 1))
    return model, summary


def fit(config: IdmTrainConfig, train_eps: list[tuple[np.ndarray, list[Action]]],
        held_eps: list[tuple[np.ndarray, list[Action]]], progress: bool = True, device: str = "cpu",
        ) -> tuple[InverseDynamics, dict]:
    """Train on collected episodes, evaluate on held-out ones -> (model on the CPU, summary with accuracies)."""
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    started = time.time()
    frames, targets = _episode_arrays(train_eps)
    frames, targets = frames.to(device), {k: v.to(device) for k, v in targets.items()}
    E, T = frames.shape[:2]

    model = InverseDynamics(IDM_PRESETS[config.preset]).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.steps, pct_start=0.1)
    rate = targets["buttons"].float().mean(dim=(0, 1)).clamp(0.02, 0.98)
    pos_weight = ((1 - rate) / rate) ** config.balance  # the buttons are scored by balanced accuracy
    model.train()
    bar = tqdm(range(config.steps), desc="IDM training", disable=not progress)
    for _ in bar:
        e = torch.randint(0, E, (config.batch_size,), generator=gen).to(device)
        t = torch.randint(1, T, (config.batch_size,), generator=gen).to(device)
        pairs = _blur(torch.stack([frames[e, t - 1], frames[e, t]], dim=1), config.blur_prob, gen)  # [B, 2, H, W, 3]
        pairs, yaw, buttons = _mirror(pairs, targets["yaw"][e, t], targets["buttons"][e, t], gen)
        pairs = _brightness(pairs, config.brightness, gen)
        out = model(pairs[:, 0], pairs[:, 1])
        loss = (F.cross_entropy(out["yaw"], yaw) + F.cross_entropy(out["pitch"], targets["pitch"][e, t])
                + F.binary_cross_entropy_with_logits(out["buttons"], buttons, pos_weight=pos_weight))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model = model.cpu().eval()
    summary = {"heldout_accuracy": evaluate(model, held_eps), "train_accuracy": evaluate(model, train_eps[:len(held_eps)]),
               "train_seconds": round(time.time() - started, 1),
               "train": {k: v for k, v in asdict(config).items() if k != "sampler"}, "sampler": asdict(config.sampler)}
    return model, summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="small", choices=sorted(IDM_TRAIN_PRESETS))
    parser.add_argument("--out", default="checkpoints/idm", help="checkpoint folder to write")
    parser.add_argument("--steps", type=int, help="override the preset's training steps")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument("--device", default="cpu", help="where to train (cuda when there is one)")
    parser.add_argument("--workers", type=int, default=1, help="engine processes collecting episodes")
    parser.add_argument("--episodes", type=int, help="override the preset's training episodes")
    parser.add_argument("--evaluate", nargs="+", metavar="CKPT",
                        help="train nothing: score these IDM checkpoints on the preset's held-out worlds, side by side")
    add_record_arguments(parser, opt_in=True)


REPORTED_HEADS: tuple[str, ...] = ("action", "yaw_balanced", "yaw_moving_within1", "pitch_balanced",
                                    "pitch_moving_within1", *IDM_BUTTONS)


def compare(config: IdmTrainConfig, checkpoints: list[str], workers: int = 1, record_table: bool = False,
            notes: str = "") -> str:
    """Score IDM checkpoints on the held-out worlds of `config` (the same transitions for each) -> markdown table."""
    _, held_seeds = idm_seeds(config)
    episodes = collect(held_seeds, config.episode_frames, config.resolution, config.seed, config.sampler, True, workers)
    scores = {ckpt: evaluate(InverseDynamics.load(ckpt), episodes) for ckpt in checkpoints}
    table = markdown_table(["head", *checkpoints], [[h, *(f"{scores[c][h]:.3f}" for c in checkpoints)]
                                                    for h in REPORTED_HEADS])
    if record_table:
        record(f"IDM accuracy on held-out IDM worlds {held_seeds[0]}-{held_seeds[-1]}", table,
               command="python -m simulator.eval.idm_train " + " ".join(sys.argv[1:]),
               notes=f"{len(held_seeds)} episodes of {config.episode_frames} frames from the IDM action sampler; "
                     f"buttons and `*_balanced`: balanced accuracy (0.5 = chance). {notes}".strip())
    return table


def main(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    config = dataclasses.replace(IDM_TRAIN_PRESETS[args.preset])  # presets are shared: never mutate them
    if args.evaluate:
        print(compare(config, args.evaluate, args.workers, args.record, args.note))
        return 0
    if args.steps:
        config.steps = args.steps
    if args.episodes:
        config.train_episodes = args.episodes
    model, summary = train(config, device=args.device, workers=args.workers)
    model.save(args.out, **summary)
    print(json.dumps(summary["heldout_accuracy"], indent=2))
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    raise SystemExit(main(p.parse_args()))
