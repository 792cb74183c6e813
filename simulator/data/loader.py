"""`ClipDataset`: streams fixed-length clips with their encoded actions out of a shard directory.

Each yielded item (docs/CONTRACTS.md):
    {"frames": uint8 [T, H, W, 3], "buttons": float32 [T, BUTTON_DIM],
     "camera": int64 [T, 2], "seed": int}

How an epoch is ordered (all of it from `seed` and the epoch number, so it is reproducible):
  1. the shard order is permuted, and the episodes inside each shard are permuted;
  2. that list of episodes is dealt round-robin to the readers (every DataLoader worker of
     every distributed rank is one reader), so readers never share an episode and no clip is
     yielded twice; a reader still visits its shards in order, opening each once;
  3. each episode is cut into clips at `clip_stride` from a seeded start phase;
  4. a shuffle buffer of `shuffle_buffer` clips mixes clips of several episodes, so a batch
     is not made of neighbouring clips of one episode.
Only the metadata of every shard is read up front; frames are read one episode at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from simulator.actions import BUTTON_DIM, BUTTONS, CAMERA_BIN_CENTERS
from simulator.data.shards import ShardReader, list_shards

# camera degrees -> bin, vectorised: shards store bin centers, so this is exact for them
_CAMERA_EDGES = (CAMERA_BIN_CENTERS[1:] + CAMERA_BIN_CENTERS[:-1]) / 2


def encode_action_arrays(buttons: np.ndarray, hotbar: np.ndarray, camera: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shard action arrays -> (multi-hot float32 [T, BUTTON_DIM], camera bins int64 [T, 2]).

    The same encoding as `simulator.actions.encode_many`, vectorised over T.
    """
    T = len(buttons)
    hot = np.zeros((T, BUTTON_DIM), np.float32)
    hot[:, :len(BUTTONS)] = buttons
    hot[np.arange(T), len(BUTTONS) + 1 + hotbar.astype(np.int64)] = 1.0  # hotbar -1 (none) -> index len(BUTTONS)
    bins = np.searchsorted(_CAMERA_EDGES, np.clip(camera, CAMERA_BIN_CENTERS[0], CAMERA_BIN_CENTERS[-1]))
    return hot, bins.astype(np.int64)


@dataclass(frozen=True)
class _EpisodeRef:
    shard: int  # index into ClipDataset.shards
    episode: int  # index inside the shard
    frames: int  # T
    seed: int  # world seed


class ClipDataset(IterableDataset):
    """Clips of `clip_frames` frames from every episode under `root` (see the module docstring).

    Episodes shorter than `clip_frames` are skipped. `clip_stride` defaults to `clip_frames`
    (non-overlapping clips). `shuffle=False` gives the plain order: shards by name, episodes
    in order, clips from frame 0. `rank`/`world_size` split the data across distributed
    processes on top of the DataLoader workers. Call `set_epoch(e)` for a new order (with
    `persistent_workers=True` the workers keep their copy: re-create the DataLoader instead).
    """

    def __init__(self, root: str | Path, clip_frames: int, *, clip_stride: int | None = None,
                 shuffle: bool = True, seed: int = 0, shuffle_buffer: int = 256,
                 rank: int = 0, world_size: int = 1):
        if clip_frames < 1:
            raise ValueError(f"clip_frames must be >= 1, got {clip_frames}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.root = Path(root)
        self.clip_frames = clip_frames
        self.clip_stride = clip_stride or clip_frames
        self.shuffle = shuffle
        self.seed = seed
        self.shuffle_buffer = max(1, shuffle_buffer) if shuffle else 1
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.shards = list_shards(self.root)
        if not self.shards:
            raise FileNotFoundError(f"no *.npz shards under {self.root}")
        self._episodes: list[list[_EpisodeRef]] = []
        self.resolutions: set[tuple[int, int]] = set()
        self.engine_versions: set[str] = set()  # more than one: frames from different engines are mixed
        for s, path in enumerate(self.shards):
            with ShardReader(path) as reader:  # reads the metadata only
                self._episodes.append([_EpisodeRef(s, i, int(m["frames"]), int(m["seed"]))
                                       for i, m in enumerate(reader.episodes)])
                self.resolutions |= {tuple(m["resolution"]) for m in reader.episodes}
                self.engine_versions |= {m["engine_version"] for m in reader.episodes}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def num_episodes(self) -> int:
        return sum(len(eps) for eps in self._episodes)

    def _clips_in(self, frames: int) -> int:
        return 0 if frames < self.clip_frames else 1 + (frames - self.clip_frames) // self.clip_stride

    def num_clips(self) -> int:
        """Clips per epoch over all readers together."""
        return sum(self._clips_in(ep.frames) for eps in self._episodes for ep in eps)

    def _epoch_order(self, rng: np.random.Generator) -> list[_EpisodeRef]:
        shard_order = rng.permutation(len(self.shards)) if self.shuffle else range(len(self.shards))
        order = []
        for s in shard_order:
            eps = self._episodes[s]
            order += [eps[i] for i in (rng.permutation(len(eps)) if self.shuffle else range(len(eps)))]
        return [ep for ep in order if self._clips_in(ep.frames) > 0]

    def _clip_starts(self, ep: _EpisodeRef) -> np.ndarray:
        n = self._clips_in(ep.frames)
        slack = ep.frames - self.clip_frames - (n - 1) * self.clip_stride  # frames left over at the end
        phase = 0
        if self.shuffle and slack > 0:
            # its own generator, so an episode's clips do not depend on which reader got it
            phase = int(np.random.default_rng((self.seed, self.epoch, ep.shard, ep.episode)).integers(slack + 1))
        return phase + self.clip_stride * np.arange(n)

    def _clips_of(self, reader: ShardReader, ep: _EpisodeRef) -> Iterator[dict]:
        frames = reader.frames(ep.episode)
        buttons, camera = encode_action_arrays(**reader.action_arrays(ep.episode))
        for start in self._clip_starts(ep):
            sl = slice(int(start), int(start) + self.clip_frames)
            yield {"frames": torch.from_numpy(frames[sl].copy()),  # uint8 [T, H, W, 3]
                   "buttons": torch.from_numpy(buttons[sl].copy()),  # float32 [T, BUTTON_DIM]
                   "camera": torch.from_numpy(camera[sl].copy()),  # int64 [T, 2]
                   "seed": ep.seed}

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        readers, reader_id = self.world_size * workers, self.rank * workers + worker
        rng = np.random.default_rng((self.seed, self.epoch))
        mine = self._epoch_order(rng)[reader_id::readers]
        buffer_rng = np.random.default_rng((self.seed, self.epoch, reader_id))
        buffer: list[dict] = []
        reader: ShardReader | None = None
        try:
            for ep in mine:
                if reader is None or reader.path != self.shards[ep.shard]:
                    if reader is not None:
                        reader.close()
                    reader = ShardReader(self.shards[ep.shard])
                for clip in self._clips_of(reader, ep):
                    buffer.append(clip)
                    if len(buffer) >= self.shuffle_buffer:
                        yield _pop_random(buffer, buffer_rng)
            while buffer:
                yield _pop_random(buffer, buffer_rng)
        finally:
            if reader is not None:
                reader.close()


def _pop_random(buffer: list[dict], rng: np.random.Generator) -> dict:
    """Remove and return a random element in O(1) (swap with the last)."""
    i = int(rng.integers(len(buffer)))
    buffer[i], buffer[-1] = buffer[-1], buffer[i]
    return buffer.pop()
