"""Training data for the world model: shards pre-encoded to latents once, then random clips.

On a CPU the tokenizer's encoder would cost as much as the DiT step, so every frame of a shard
directory is encoded once and cached as one safetensors file under the run folder, keyed by
the tokenizer's weights and the shard listing (a different tokenizer or new shards => a new
file). Episodes are concatenated along time:

    latents   bf16  [sum T, C, h, w]
    buttons   f32   [sum T, BUTTON_DIM]
    camera    i64   [sum T, 2]
    offsets   i64   [E + 1]     episode e is rows offsets[e]:offsets[e + 1]
    seeds     i64   [E]         world seed of each episode
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from simulator.data.loader import encode_action_arrays
from simulator.data.shards import ShardReader, list_shards
from simulator.models.precision import autocast, use_bf16
from simulator.models.tokenizer import Tokenizer


def _cache_key(shards: list[Path], tokenizer: Tokenizer) -> str:
    h = hashlib.sha256()
    for path in shards:
        h.update(f"{path.resolve()}:{path.stat().st_size}:{path.stat().st_mtime_ns}".encode())
    for name, tensor in sorted(tokenizer.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.inference_mode()
def encode_shards(root: str | Path, tokenizer: Tokenizer, cache_dir: str | Path, batch: int = 64,
                  device: str | torch.device = "cpu") -> Path:
    """Encode every episode under `root` (once; later calls reuse the file). Returns the cache path."""
    shards = list_shards(root)
    if not shards:
        raise FileNotFoundError(f"no *.npz shards under {root}")
    path = Path(cache_dir) / f"latents-{Path(root).name}-{_cache_key(shards, tokenizer)}.safetensors"
    if path.exists():
        return path
    tokenizer = tokenizer.to(device).eval()
    latents, buttons, camera, lengths, seeds, resolutions = [], [], [], [], [], set()
    for shard in tqdm(shards, desc=f"encoding {root}", unit="shard"):
        with ShardReader(shard) as reader:
            for i, meta in enumerate(reader.episodes):
                frames = torch.from_numpy(reader.frames(i))  # uint8 [T, H, W, 3]
                resolutions.add(tuple(frames.shape[1:3]))
                with autocast(torch.device(device), use_bf16("auto", torch.device(device))):
                    parts = [tokenizer.encode(frames[s:s + batch].to(device)).float().cpu()
                             for s in range(0, len(frames), batch)]
                latents.append(torch.cat(parts).to(torch.bfloat16))  # [T, C, h, w]
                hot, bins = encode_action_arrays(**reader.action_arrays(i))
                buttons.append(torch.from_numpy(hot))
                camera.append(torch.from_numpy(bins))
                lengths.append(len(frames))
                seeds.append(int(meta["seed"]))
    if len(resolutions) != 1:
        raise ValueError(f"shards under {root} mix resolutions {sorted(resolutions)}; the latent cache holds one "
                         "(pack clips of several resolutions with DiT.forward_packed instead)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"latents": torch.cat(latents), "buttons": torch.cat(buttons), "camera": torch.cat(camera),
               "offsets": torch.tensor([0, *np.cumsum(lengths)], dtype=torch.long),
               "seeds": torch.tensor(seeds, dtype=torch.long),
               "resolution": torch.tensor(sorted(resolutions)[0], dtype=torch.long)}, str(tmp))
    tmp.replace(path)
    return path


@dataclass
class LatentEpisodes:
    """All episodes of one latent cache, in memory."""

    latents: torch.Tensor  # bf16 [sum T, C, h, w]
    buttons: torch.Tensor  # f32 [sum T, BUTTON_DIM]
    camera: torch.Tensor  # i64 [sum T, 2]
    offsets: torch.Tensor  # i64 [E + 1]
    seeds: torch.Tensor  # i64 [E]
    resolution: tuple[int, int]  # (H, W) of the frames they came from

    @classmethod
    def load(cls, path: str | Path) -> LatentEpisodes:
        t = load_file(str(path))
        return cls(t["latents"], t["buttons"], t["camera"], t["offsets"], t["seeds"],
                   tuple(int(v) for v in t["resolution"]))

    def sampler(self, clip_frames: int, seed: int) -> ClipSampler:
        return ClipSampler(self, clip_frames, seed)


class ClipSampler:
    """Uniformly random clips of `clip_frames + 1` latents (the first serves as the previous frame).

    Each distributed rank passes its own seed, so ranks see different clips.
    """

    def __init__(self, episodes: LatentEpisodes, clip_frames: int, seed: int):
        lengths = episodes.offsets[1:] - episodes.offsets[:-1]
        self.span = clip_frames + 1
        starts = lengths - self.span + 1  # valid start positions per episode
        if int(starts.clamp_min(0).sum()) == 0:
            raise ValueError(f"no episode has the {self.span} frames a clip needs (longest: {int(lengths.max())})")
        self.episodes = episodes
        self.weights = starts.clamp_min(0).double()
        self.generator = torch.Generator().manual_seed(seed)

    def batch(self, batch_size: int) -> dict[str, torch.Tensor]:
        """{"latents" f32 [B, T+1, C, h, w], "buttons" [B, T+1, BUTTON_DIM], "camera" [B, T+1, 2]}."""
        ep = torch.multinomial(self.weights, batch_size, replacement=True, generator=self.generator)
        offset = (torch.rand(batch_size, generator=self.generator) * self.weights[ep]).long()
        index = (self.episodes.offsets[ep] + offset)[:, None] + torch.arange(self.span)  # [B, T+1]
        return {"latents": self.episodes.latents[index].float(), "buttons": self.episodes.buttons[index],
                "camera": self.episodes.camera[index]}

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)
