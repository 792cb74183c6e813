"""Held-out evaluation of the world model during training, always beside the copy-last baseline.

On clips from world seeds never trained on (`context` true frames, then `horizon` more):
  teacher-forced   each target frame generated from the TRUE frames before it (one step);
  rollout          `horizon` frames generated from the context alone, driven by the true actions;
and for both: PSNR against the engine's frames, the same for copy-last-frame (in pixels, and
through the tokenizer) and for copy-warped-last (the last frame moved as the camera turns), the
tokenizer's own reconstruction PSNR (the ceiling), sharpness (mean |Laplacian|) of true,
reconstructed and generated frames, and whether the camera is followed: the slope of the
generated frames' horizontal image shift against the engine's on the same ticks (1 = turns as far as the engine, 0 = ignores the camera; `simulator.eval.camera`). Generation goes
through the streaming Generator, so what is measured is what players get.
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from simulator.actions import Action, from_arrays
from simulator.benchlog import add_record_arguments, markdown_table, record
from simulator.checkpoint import load_config
from simulator.data.shards import ShardReader, list_shards
from simulator.eval.camera import ShiftConfig, clip_shifts, following, image_shift
from simulator.eval.fidelity import pooled_psnr
from simulator.eval.metrics import psnr, sharpness
from simulator.eval.pipeline import EVAL_PRESETS
from simulator.eval.probes import PROBES, run_probe
from simulator.eval.predictors import CopyWarpedLast
from simulator.models.dit import DiT
from simulator.models.tokenizer import Tokenizer
from simulator.rollout.generator import Generator, GeneratorConfig


@dataclass
class EvalClips:
    frames: np.ndarray  # uint8 [K, S, H, W, 3]
    actions: list[list[Action]]  # K lists of S actions
    seeds: list[int]  # world seed per clip


def load_eval_clips(root: str | Path, clips: int, span: int) -> EvalClips:
    """The middle `span` frames of the first `clips` long-enough episodes (sorted shards: reproducible)."""
    frames, actions, seeds = [], [], []
    for shard in list_shards(root):
        with ShardReader(shard) as reader:
            for i, meta in enumerate(reader.episodes):
                if len(frames) == clips:
                    break
                T = int(meta["frames"])
                if T < span:
                    continue
                start = (T - span) // 2
                frames.append(reader.frames(i)[start:start + span])
                actions.append(from_arrays(reader.action_arrays(i))[start:start + span])
                seeds.append(int(meta["seed"]))
        if len(frames) == clips:
            break
    if not frames:
        raise ValueError(f"no episode under {root} has the {span} frames an evaluation clip needs")
    return EvalClips(np.stack(frames), actions, seeds)


def _roundtrip(tokenizer: Tokenizer, frames: np.ndarray, device: torch.device) -> np.ndarray:
    """Frames [..., H, W, 3] through the tokenizer and back."""
    flat = torch.from_numpy(frames.reshape(-1, *frames.shape[-3:])).to(device)  # [N, H, W, 3]
    with torch.inference_mode():
        out = tokenizer.decode_frames(tokenizer.encode(flat)).cpu().numpy()
    return out.reshape(frames.shape)


STILL_WORLDS = 2  # held-out worlds (the clips' first distinct seeds) the stand-still probe runs from
STILL_TICKS_REPORTED = (25, 100)  # its PSNR against the engine after this many ticks of no action


def evaluate(model: DiT, tokenizer: Tokenizer, clips: EvalClips, gen_config: GeneratorConfig,
             device: torch.device, context: int = 4, teacher_frames: int = 8) -> tuple[dict[str, float], np.ndarray]:
    """Figures (dict) and the rollout frames uint8 [K, horizon, H, W, 3]."""
    K, S = clips.frames.shape[:2]
    horizon = S - context
    gen = Generator(model, tokenizer, gen_config, batch_size=K, device=device)
    true = clips.frames
    recon = _roundtrip(tokenizer, true, device)  # [K, S, H, W, 3]

    def drive(predictor) -> tuple[np.ndarray, np.ndarray]:
        """Teacher-forced frames [K, teacher_frames, ...] (each from the true past) and the rollout [K, horizon, ...]."""
        teacher = []
        for t in range(context, context + teacher_frames):
            for k in range(K):
                predictor.start(k, true[k, :t], clips.actions[k][:t])
            out = predictor.step({k: clips.actions[k][t] for k in range(K)})
            teacher.append(np.stack([out[k] for k in range(K)]))
        for k in range(K):
            predictor.start(k, true[k, :context], clips.actions[k][:context])
        rollout = []
        for t in range(context, S):
            out = predictor.step({k: clips.actions[k][t] for k in range(K)})
            rollout.append(np.stack([out[k] for k in range(K)]))
        return np.stack(teacher, axis=1), np.stack(rollout, axis=1)

    teacher, rollout = drive(gen)
    warped_teacher, warped_rollout = drive(CopyWarpedLast(tuple(true.shape[2:4]), K))  # the camera-warp baseline
    tf = slice(context, context + teacher_frames)
    last_context = np.repeat(true[:, context - 1:context], horizon, axis=1)  # copy-last for every horizon

    rollout_psnr = psnr(rollout, true[:, context:]).mean(axis=0)  # [horizon]
    # camera following (yaw): image shift of each generated frame from the frame before it, against the engine's
    shift_config = ShiftConfig()
    before_tf = true[:, context - 1:context + teacher_frames - 1].reshape(-1, *true.shape[2:])
    engine_tf = image_shift(before_tf, true[:, tf].reshape(before_tf.shape), shift_config)[:, 0]
    model_tf = image_shift(before_tf, teacher.reshape(before_tf.shape), shift_config)[:, 0]
    engine_ro = clip_shifts(true[:, context - 1:], shift_config)[..., 0].ravel()
    model_ro = clip_shifts(np.concatenate([true[:, context - 1:context], rollout], axis=1), shift_config)[..., 0].ravel()
    tf_follow = following(engine_tf, model_tf, np.zeros(len(engine_tf)), shift_config)  # degrees unused here
    ro_follow = following(engine_ro, model_ro, np.zeros(len(engine_ro)), shift_config)
    tf_model = psnr(teacher, true[:, tf])  # [K, teacher_frames]
    tf_copy = psnr(true[:, context - 1:context + teacher_frames - 1], true[:, tf])
    figures = {
        "teacher_forced_psnr": float(tf_model.mean()),
        "teacher_forced_copy_last_psnr": float(tf_copy.mean()),
        "teacher_forced_copy_last_tokenizer_psnr": float(
            psnr(recon[:, context - 1:context + teacher_frames - 1], true[:, tf]).mean()),
        # still frames give copy-last 100 dB (identical), which dominates its mean: medians too
        "teacher_forced_psnr_median": float(np.median(tf_model)),
        "teacher_forced_copy_last_psnr_median": float(np.median(tf_copy)),
        "teacher_forced_beats_copy_last": float((tf_model > tf_copy).mean()),
        "teacher_forced_copy_warped_psnr": float(psnr(warped_teacher, true[:, tf]).mean()),
        "teacher_forced_copy_warped_psnr_median": float(np.median(psnr(warped_teacher, true[:, tf]))),
        "tokenizer_psnr": float(psnr(recon, true).mean()),
        # the figures above average per-frame PSNRs (still frames weigh in at up to the 100 dB cap); `patchworld
        # eval` pools the squared error first, as these do: compare a run with an evaluation on these
        "teacher_forced_psnr_pooled": pooled_psnr(teacher, true[:, tf]),
        "tokenizer_psnr_pooled": pooled_psnr(recon, true),
        f"rollout{horizon}_psnr_pooled": pooled_psnr(rollout, true[:, context:]),
        f"rollout{horizon}_psnr": float(rollout_psnr.mean()),
        f"rollout{horizon}_copy_last_psnr": float(psnr(last_context, true[:, context:]).mean()),
        f"rollout{horizon}_copy_warped_psnr": float(psnr(warped_rollout, true[:, context:]).mean()),
        "rollout_psnr_h1": float(rollout_psnr[0]),
        f"rollout_psnr_h{horizon}": float(rollout_psnr[-1]),
        "sharpness_true": float(sharpness(true).mean()),
        "sharpness_tokenizer": float(sharpness(recon).mean()),
        "sharpness_teacher_forced": float(sharpness(teacher).mean()),
        "sharpness_rollout": float(sharpness(rollout).mean()),
        f"sharpness_rollout_h{horizon}": float(sharpness(rollout[:, -1]).mean()),
        "teacher_forced_yaw_slope": tf_follow["slope"],
        "teacher_forced_yaw_sign_agreement": tf_follow["sign_agreement"],
        "rollout_yaw_slope": ro_follow["slope"],
        "rollout_yaw_sign_agreement": ro_follow["sign_agreement"],
    }
    # standing still from the engine's state in held-out worlds: `patchworld eval`'s stand_still probe, as played there
    full = EVAL_PRESETS["full"]
    still = np.mean([run_probe(gen, PROBES["stand_still"], seed, tuple(true.shape[2:4]), full.context, full.policy,
                               full.warmup)["psnr_by_tick"] for seed in list(dict.fromkeys(clips.seeds))[:STILL_WORLDS]],
                    axis=0)
    figures.update({f"still_psnr_t{t}": float(still[t - 1]) for t in STILL_TICKS_REPORTED})
    return figures, rollout


def save_video(path: str | Path, true: np.ndarray, generated: np.ndarray, scale: int = 2, fps: int = 20) -> Path | None:
    """An mp4 of true (top) over generated (bottom) frames, clips side by side: [K, T, H, W, 3] each.
    None, with a note, where imageio is not installed (a bare GPU box trains without it)."""
    try:
        import imageio.v2 as imageio
    except ImportError:
        tqdm.write(f"note: no imageio here, so no sample video ({path})")
        return None
    K, T, H, W, _ = generated.shape
    grid = np.concatenate([true[:, -T:], generated], axis=2)  # [K, T, 2H, W, 3]
    grid = np.concatenate(list(grid), axis=2)  # [T, 2H, K*W, 3]
    grid = grid.repeat(scale, axis=1).repeat(scale, axis=2)  # nearest-neighbour upscale
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(path, list(grid), fps=fps, macro_block_size=1)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="checkpoints/world", help="world-model checkpoint folder")
    parser.add_argument("--heldout", default="data/heldout", help="held-out shard directory")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--steps", default=None, help="sampler steps, comma-separated to compare (default: the checkpoint's)")
    parser.add_argument("--eta", default=None, help="sampler eta, comma-separated to compare (default: the checkpoint's)")
    parser.add_argument("--generator", nargs="+", default=[], metavar="KEY=V1,V2",
                        help="other generator options (GeneratorConfig fields), each with values to compare, e.g. "
                             "context_noise=0,0.05 context=pass,reuse (every combination is run)")
    parser.add_argument("--threads", type=int, default=None)
    add_record_arguments(parser)


def _figures_table(settings: list[dict], results: list[dict[str, float]]) -> str:
    """One column per generator setting, one row per figure."""
    def name(key: str, value) -> str:
        return f"{key.replace('_', ' ')} {value:g}" if isinstance(value, float) else f"{key.replace('_', ' ')} {value}"

    header = ["figure"] + [", ".join(name(k, v) for k, v in setting.items()) for setting in settings]
    return markdown_table(header, [[name] + [r[name] for r in results] for name in results[0]])


def generator_grid(gen_config: GeneratorConfig, steps: str | None, eta: str | None,
                   options: list[str]) -> list[dict]:
    """Every combination of the compared values: [{"steps": 4, "eta": 1.0, ...}, ...]."""
    from simulator.eval.cli import parse_options

    axes: dict[str, list] = {"steps": [int(v) for v in steps.split(",")] if steps else [gen_config.steps],
                             "eta": [float(v) for v in eta.split(",")] if eta else [gen_config.eta]}
    known = {f.name for f in fields(GeneratorConfig)}
    for item in options:
        key, _, values = item.partition("=")
        if key not in known:
            raise SystemExit(f"unknown generator option {key!r} (known: {', '.join(sorted(known))})")
        axes[key] = [parse_options([f"{key}={v}"])[key] for v in values.split(",")]
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def main(args: argparse.Namespace) -> int:
    """Evaluate a shipped checkpoint on held-out worlds and record the table in docs/benchmarks.md."""
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = Generator.from_checkpoint(args.checkpoint)
    settings = generator_grid(gen.config, args.steps, args.eta, args.generator)
    clips = load_eval_clips(args.heldout, args.clips, 4 + 16)
    results = []
    for setting in settings:
        results.append(evaluate(gen.model, gen.tokenizer, clips, replace(gen.config, **setting), gen.device,
                                context=4)[0])
    table = _figures_table(settings, results)
    config = load_config(args.checkpoint)
    notes = (f"World model `{args.checkpoint}` after {config.get('steps')} training steps; held-out world seeds "
             f"{clips.seeds}, {len(clips.seeds)} clips of 4 true context frames + 16 generated frames at "
             f"{gen.resolution[0]}x{gen.resolution[1]}. PSNR in dB (per frame, then averaged; copy-last of a still "
             f"frame counts 100 dB, hence the medians); sharpness = mean |Laplacian| of the grey image. " + args.note)
    command = "patchworld eval-sweep " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(v) if isinstance(v, list) else v}" for k, v in vars(args).items()
        if k != "note" and v not in (None, False, "", []))
    record("World model held-out figures", table, command=command, notes=notes, dry_run=args.no_record)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="evaluate a world-model checkpoint on held-out worlds")
    add_arguments(parser)
    raise SystemExit(main(parser.parse_args()))
