"""Measuring a tokenizer: frames from shards, reconstruction figures, a side-by-side picture.

The figures (issues 3 and 8): PSNR and SSIM of reconstructions against the true frames, and
the sharpness ratio, mean |Laplacian| of reconstructions over that of the true frames (the
target is >= 0.85 at >= 32 dB on held-out world seeds).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from simulator.data.shards import ShardReader, list_shards
from simulator.eval.metrics import psnr, sharpness, ssim
from simulator.models.tokenizer import Tokenizer


def load_frames(root: str | Path, max_frames: int | None = None, every: int = 1,
                progress: bool = True) -> np.ndarray:
    """Every `every`-th frame of every episode under `root`, in shard order, at most `max_frames`:
    uint8 [N, H, W, 3]. All episodes must share one resolution."""
    shards = list_shards(root)
    if not shards:
        raise FileNotFoundError(f"no *.npz shards under {root}")
    chunks: list[np.ndarray] = []
    count = 0
    for path in tqdm(shards, desc=f"loading {root}", unit="shard", disable=not progress, leave=False):
        with ShardReader(path) as reader:
            for i in range(len(reader)):
                frames = reader.frames(i)[::every]  # [T', H, W, 3]
                if chunks and frames.shape[1:] != chunks[0].shape[1:]:
                    raise ValueError(f"{path} episode {i} has frames {frames.shape[1:]}, other episodes "
                                     f"{chunks[0].shape[1:]}: one resolution per run")
                chunks.append(frames)
                count += len(frames)
                if max_frames is not None and count >= max_frames:
                    return np.concatenate(chunks)[:max_frames]
    return np.concatenate(chunks)


@torch.inference_mode()
def decode_latents(tokenizer: Tokenizer, latents: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Normalised latents [N, C, h, w] (any float dtype, any device) -> uint8 frames [N, H, W, 3], in batches."""
    device = next(tokenizer.parameters()).device
    return np.concatenate([tokenizer.decode_frames(latents[i:i + batch_size].float().to(device)).cpu().numpy()
                           for i in range(0, len(latents), batch_size)])


@torch.inference_mode()
def reconstruct(tokenizer: Tokenizer, frames: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """uint8 [N, H, W, 3] -> its reconstructions, uint8 [N, H, W, 3] (encode, then decode)."""
    device = next(tokenizer.parameters()).device
    out = []
    for i in range(0, len(frames), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(frames[i:i + batch_size])).to(device)
        out.append(tokenizer.decode_frames(tokenizer.encode(batch)).cpu().numpy())
    return np.concatenate(out)


def reconstruction_figures(frames: np.ndarray, recons: np.ndarray) -> dict[str, float]:
    """Mean PSNR (dB), SSIM, sharpness of both, and the sharpness ratio recon/true."""
    true_sharp = float(sharpness(frames).mean())
    recon_sharp = float(sharpness(recons).mean())
    return {"psnr": float(psnr(frames, recons).mean()), "ssim": float(ssim(frames, recons).mean()),
            "sharpness": recon_sharp, "true_sharpness": true_sharp,
            "sharpness_ratio": recon_sharp / max(true_sharp, 1e-9), "frames": int(len(frames))}


def evaluate(tokenizer: Tokenizer, frames: np.ndarray, batch_size: int = 256) -> dict[str, float]:
    """Reconstruction figures of `tokenizer` on uint8 frames [N, H, W, 3]."""
    was_training = tokenizer.training
    tokenizer.eval()
    try:
        return reconstruction_figures(frames, reconstruct(tokenizer, frames, batch_size))
    finally:
        tokenizer.train(was_training)


def comparison_grid(originals: np.ndarray, recons: np.ndarray, columns: int = 8, scale: int = 2) -> np.ndarray:
    """Rows of originals over rows of their reconstructions, pixel-doubled: uint8 [H', W', 3].

    Pairs of rows: originals 0..columns-1, then their reconstructions, then the next columns."""
    N, H, W, _ = originals.shape
    rows = -(-N // columns)
    gap = 2
    grid = np.full((rows * 2 * (H + gap), columns * (W + gap), 3), 255, np.uint8)
    for i in range(N):
        r, c = divmod(i, columns)
        y, x = r * 2 * (H + gap), c * (W + gap)
        grid[y:y + H, x:x + W] = originals[i]
        grid[y + H + gap:y + 2 * H + gap, x:x + W] = recons[i]
    return grid.repeat(scale, axis=0).repeat(scale, axis=1)


def save_comparison_png(path: str | Path, originals: np.ndarray, recons: np.ndarray, columns: int = 8) -> Path:
    from PIL import Image  # only the picture needs pillow

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(comparison_grid(originals, recons, columns)).save(path)
    return path
