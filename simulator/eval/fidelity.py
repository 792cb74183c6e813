"""Fidelity against the engine: tokenizer reconstruction, teacher-forced next frame, rollouts per horizon.

Every PSNR/SSIM comes with the frames' sharpness and a Frechet distance to the engine's frames
(on IDM features of consecutive-frame pairs), and with the copy-last baselines: the last true
frame (in pixels) and the last true frame passed through the tokenizer (the best a model that
only copies its latent could do). Issue 8 asks for exactly this beside every PSNR.
"""

from __future__ import annotations

import numpy as np
import torch

from simulator.actions import Action
from simulator.eval.idm import InverseDynamics
from simulator.eval.metrics import frechet_distance, psnr, sharpness, ssim
from simulator.eval.rollouts import Rollouts

# horizon bands for the rollout Frechet distance: a covariance needs many frames, and one
# horizon has only one frame per episode, so frames are pooled per band
FD_BANDS: tuple[tuple[int, int], ...] = ((1, 4), (5, 8), (9, 16), (17, 32), (33, 64), (65, 1200))


@torch.no_grad()
def reconstruct(tokenizer, frames: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """uint8 [..., H, W, 3] -> the tokenizer's decode(encode(.)) of each frame, same shape."""
    flat = frames.reshape(-1, *frames.shape[-3:])  # [N, H, W, 3]
    out = np.empty_like(flat)
    for i in range(0, len(flat), batch_size):
        latents = tokenizer.encode(torch.from_numpy(np.ascontiguousarray(flat[i:i + batch_size])))
        out[i:i + batch_size] = tokenizer.decode_frames(latents).cpu().numpy()
    return out.reshape(frames.shape)


def pair_features(idm: InverseDynamics, prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """IDM embedding of each (prev, cur) pair: uint8 [N, H, W, 3] x 2 -> float [N, D]."""
    idm.eval()
    prev, cur = np.ascontiguousarray(prev), np.ascontiguousarray(cur)
    with torch.no_grad():
        return torch.cat([idm.features(torch.from_numpy(prev[i:i + 256]), torch.from_numpy(cur[i:i + 256]))
                          for i in range(0, len(prev), 256)]).numpy()


def transitions(clips: np.ndarray, first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
    """The (previous, current) frame pairs of transitions first..last (inclusive; transition h goes from
    index h-1 to h) of every clip, flattened over clips: uint8 [E, T, H, W, 3] -> 2 x [E * (last-first+1), H, W, 3]."""
    prev = np.ascontiguousarray(clips[:, first - 1:last]).reshape(-1, *clips.shape[2:])
    cur = np.ascontiguousarray(clips[:, first:last + 1]).reshape(-1, *clips.shape[2:])
    return prev, cur


def pooled_psnr(pred: np.ndarray, true: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """PSNR of the mean squared error over frames (all of them, or along `axis` of the leading dims).

    The headline PSNR: a mean of per-frame PSNRs is dominated by identical frames (capped at 100 dB),
    which a still player hands to copy-last; averaging the error first is how dB values average."""
    err = ((pred.astype(np.float64) - true.astype(np.float64)) ** 2).mean(axis=(-3, -2, -1))  # per frame
    mse = err.mean() if axis is None else err.mean(axis=axis)
    out = 10 * np.log10(255.0**2 / np.maximum(mse, 255.0**2 * 1e-10))
    return float(out) if axis is None else out


def _summary(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    return {"psnr": pooled_psnr(pred, true), "psnr_frame_mean": float(np.mean(psnr(pred, true))),
            "ssim": float(np.mean(ssim(pred, true))), "sharpness": float(np.mean(sharpness(pred)))}


def _fd(idm: InverseDynamics | None, prev: np.ndarray, cur: np.ndarray, true_feats: np.ndarray | None) -> float | None:
    if idm is None or true_feats is None or len(prev) < 2:
        return None
    return frechet_distance(pair_features(idm, prev, cur), true_feats)


def tokenizer_fidelity(tokenizer, frames: np.ndarray, idm: InverseDynamics | None) -> dict[str, float]:
    """Reconstruction figures over clips uint8 [E, T, H, W, 3] (pairs are consecutive frames of a clip)."""
    recon = reconstruct(tokenizer, frames)
    out = _summary(recon, frames)
    out["true_sharpness"] = float(np.mean(sharpness(frames)))
    T = frames.shape[1]
    true_feats = pair_features(idm, *transitions(frames, 1, T - 1)) if idm is not None else None
    out["fd"] = _fd(idm, *transitions(recon, 1, T - 1), true_feats)
    return out


ACTION_KINDS = ("still", "camera", "walk", "walk+camera", "other")


def action_kind(action: Action) -> str:
    """What the player does in a tick, in the five kinds teacher-forced error is split by: no action at all
    ("still"), only the camera, only walking keys, both, or the rest alone (jump, sneak, attack, use, hotbar)."""
    walk = action.forward or action.back or action.left or action.right
    camera = bool(action.yaw or action.pitch)
    if walk:
        return "walk+camera" if camera else "walk"
    if camera:
        return "camera"
    return "other" if action != Action() else "still"


def by_action_kind(kinds: list[str], true: np.ndarray, methods: dict[str, np.ndarray]) -> dict[str, dict]:
    """Kind -> {frames, model_error_share (of the model's squared error), and per method its pooled PSNR}
    for frames [N, H, W, 3] whose actions are of `kinds` (N, `action_kind`). Kinds with no frames are left out."""
    kinds_arr = np.asarray(kinds)
    model_err = ((methods["model"].astype(np.float64) - true.astype(np.float64)) ** 2).sum(axis=(1, 2, 3))
    total = max(float(model_err.sum()), 1e-12)
    out = {}
    for kind in ACTION_KINDS:
        mask = kinds_arr == kind
        if mask.any():
            out[kind] = {"frames": int(mask.sum()), "model_error_share": float(model_err[mask].sum()) / total,
                         **{name: pooled_psnr(f[mask], true[mask]) for name, f in methods.items()}}
    return out


def teacher_forced_fidelity(prev: np.ndarray, true: np.ndarray, pred: np.ndarray, tokenizer,
                            idm: InverseDynamics | None, warped: np.ndarray | None = None,
                            kinds: list[str] | None = None) -> dict[str, dict]:
    """Method -> {psnr, ssim, sharpness, fd} for next-frame predictions from the true past.
    Methods: model, copy-last, copy-last-tokenizer (when a tokenizer is given), copy-warped-last (when its
    predictions `warped` are given), and true (sharpness only). With the predicted frames' action kinds
    (`action_kind`), also `by_action`: PSNR per kind of action (`by_action_kind`)."""
    true_feats = pair_features(idm, prev, true) if idm is not None else None
    methods = {"model": pred, "copy-last": prev}
    if tokenizer is not None:
        methods["copy-last-tokenizer"] = reconstruct(tokenizer, prev)
    if warped is not None:
        methods["copy-warped-last"] = warped
    out: dict[str, dict] = {}
    for name, frames in methods.items():
        out[name] = {**_summary(frames, true), "fd": _fd(idm, prev, frames, true_feats)}
    out["model"]["beats_copy_last"] = float(np.mean(psnr(pred, true) > psnr(prev, true)))  # share of frames
    out["true"] = {"sharpness": float(np.mean(sharpness(true)))}
    if kinds is not None:
        out["by_action"] = by_action_kind(kinds, true, methods)
    return out


def _per_horizon(pred: np.ndarray, true: np.ndarray) -> dict[str, list[float]]:
    """[E, h, H, W, 3] pairs -> per horizon: PSNR pooled over episodes (`psnr_mean`, see pooled_psnr), the
    per-episode PSNR quartiles and mean, SSIM mean and quartiles, and mean sharpness."""
    p, s = psnr(pred, true), ssim(pred, true)  # [E, h]
    return {"psnr_mean": pooled_psnr(pred, true, axis=0).tolist(), "psnr_frame_mean": p.mean(0).tolist(),
            "psnr_p25": np.percentile(p, 25, axis=0).tolist(),
            "psnr_p75": np.percentile(p, 75, axis=0).tolist(), "ssim_mean": s.mean(0).tolist(),
            "ssim_p25": np.percentile(s, 25, axis=0).tolist(), "ssim_p75": np.percentile(s, 75, axis=0).tolist(),
            "sharpness_mean": sharpness(pred).mean(0).tolist()}


def rollout_fidelity(rollouts: Rollouts, tokenizer, idm: InverseDynamics | None) -> dict:
    """Per-horizon figures (index h-1 = horizon h) for the model and the copy-last baselines, the
    true frames' sharpness per horizon, and per-band Frechet distances."""
    true, gen = rollouts.true[:, 1:], rollouts.generated[:, 1:]  # [E, horizon, H, W, 3]
    E, Hz = true.shape[:2]
    # every method as [E, horizon + 1, ...] with index 0 the last context frame; copy-last holds it
    methods = {"model": rollouts.generated, "copy-last": np.broadcast_to(rollouts.true[:, :1], rollouts.true.shape)}
    if tokenizer is not None:
        methods["copy-last-tokenizer"] = np.broadcast_to(reconstruct(tokenizer, rollouts.true[:, :1]), rollouts.true.shape)
        # the ceiling: the true future through the tokenizer, and the FD reference at the same sample count
        # (an FD from few samples is biased upward, so compare FDs over the same frames only)
        methods["tokenizer-reconstruction"] = reconstruct(tokenizer, rollouts.true)
    out: dict = {"horizons": list(range(1, Hz + 1)), "episodes": E,
                 "true_sharpness_mean": sharpness(true).mean(0).tolist(), "methods": {}}
    for name, frames in methods.items():
        out["methods"][name] = _per_horizon(np.ascontiguousarray(frames[:, 1:]), true)
    out["fd_bands"] = _band_fds(rollouts.true, methods, idm)
    return out


def _band_fds(true: np.ndarray, methods: dict[str, np.ndarray], idm: InverseDynamics | None) -> list[dict]:
    """Frechet distance per horizon band, pairs (h-1, h) pooled over episodes and the band's horizons."""
    if idm is None:
        return []
    Hz = true.shape[1] - 1
    bands = []
    for lo, hi in FD_BANDS:
        if lo > Hz:
            break
        hi = min(hi, Hz)
        true_feats = pair_features(idm, *transitions(true, lo, hi))
        row = {"band": [lo, hi]}
        for name, frames in methods.items():
            row[name] = _fd(idm, *transitions(frames, lo, hi), true_feats)
        bands.append(row)
    return bands
