import json
import zipfile

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from simulator import actions as A
from simulator.data.loader import ClipDataset, encode_action_arrays
from simulator.data.shards import Episode, ShardError, ShardReader, list_shards, read_shard, write_shard


def make_episode(rng: np.random.Generator, T: int = 20, H: int = 8, W: int = 12, seed: int = 7) -> Episode:
    frames = rng.integers(0, 256, (T, H, W, 3), dtype=np.uint8)
    actions = [A.NOOP] + [A.Action(forward=bool(rng.integers(2)), jump=bool(rng.integers(2)),
                                   hotbar=None if rng.random() < 0.7 else int(rng.integers(9)),
                                   yaw=float(rng.normal(0, 6)), pitch=float(rng.normal(0, 3))).quantized()
                          for _ in range(T - 1)]
    return Episode(frames, actions, seed=seed, biome="forest", engine_version="test-1",
                   caption="a forest with a pond", extra={"start": "spawn"})


def test_round_trip_keeps_frames_actions_and_metadata(tmp_path):
    rng = np.random.default_rng(0)
    eps = [make_episode(rng, T=20, seed=3), make_episode(rng, T=9, seed=4)]
    path = write_shard(tmp_path / "s.npz", eps)
    back = read_shard(path)
    assert len(back) == 2
    for a, b in zip(eps, back):
        np.testing.assert_array_equal(a.frames, b.frames)
        assert a.actions == b.actions
        assert (a.seed, a.biome, a.engine_version, a.caption, a.extra) == (b.seed, b.biome, b.engine_version,
                                                                            b.caption, b.extra)
    # numpy alone, no pickle
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(bytes(z["meta"]).decode())
        assert meta["episodes"][1] == {"frames": 9, "seed": 4, "biome": "forest", "resolution": [8, 12],
                                       "engine_version": "test-1", "caption": "a forest with a pond",
                                       "start": "spawn"}
        assert z["e0_frames"].shape == (20, 8, 12, 3)


def test_episode_rejects_mismatched_actions():
    with pytest.raises(ValueError, match="20 frames but 19 actions"):
        Episode(np.zeros((20, 4, 4, 3), np.uint8), [A.NOOP] * 19, 0, "plains", "v", "")


def test_atomic_write_leaves_no_partial_shard(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np.lib.format, "write_array", explode)
    with pytest.raises(OSError, match="disk full"):
        write_shard(tmp_path / "s.npz", [make_episode(rng)])
    assert list(tmp_path.iterdir()) == []  # neither the shard nor its temp file
    monkeypatch.undo()
    write_shard(tmp_path / "s.npz", [make_episode(rng)])
    assert [p.name for p in tmp_path.iterdir()] == ["s.npz"]
    (tmp_path / ".s.npz.tmp123").write_bytes(b"half a shard")  # a crashed writer's leftover
    assert list_shards(tmp_path) == [tmp_path / "s.npz"]


def test_truncated_and_corrupt_shards_name_the_file(tmp_path):
    rng = np.random.default_rng(2)
    good = write_shard(tmp_path / "good.npz", [make_episode(rng, T=30, H=16, W=16)])
    data = good.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardError, match="truncated.npz"):
        ShardReader(truncated)
    with pytest.raises(ShardError, match="truncated.npz"):
        ClipDataset(tmp_path, clip_frames=4)
    # flip bytes in the middle of the frames: the zip CRC check catches it when the episode is read
    corrupt = tmp_path / "corrupt.npz"
    with zipfile.ZipFile(good) as z:
        offset = z.getinfo("e0_frames.npy").header_offset + 2000
    corrupt.write_bytes(data[:offset] + bytes(255 - b for b in data[offset:offset + 64]) + data[offset + 64:])
    with ShardReader(corrupt) as reader, pytest.raises(ShardError, match="corrupt.npz"):
        reader.frames(0)


def test_vectorised_action_encoding_matches_encode_many():
    rng = np.random.default_rng(3)
    actions = make_episode(rng, T=50).actions
    hot, cam = encode_action_arrays(**A.to_arrays(actions))
    ref_hot, ref_cam = A.encode_many(actions)
    np.testing.assert_array_equal(hot, ref_hot)
    np.testing.assert_array_equal(cam, ref_cam)


def write_dataset(root, n_shards=3, eps_per_shard=3, T=20):
    rng = np.random.default_rng(4)
    for s in range(n_shards):
        eps = []
        for e in range(eps_per_shard):
            ep = make_episode(rng, T=T, seed=100 * s + e)
            ep.frames[:, 0, 0, 0] = np.arange(T)  # frame index, to identify clips
            ep.frames[:, 0, 0, 1] = s * eps_per_shard + e  # episode id
            eps.append(ep)
        write_shard(root / f"shard_{s:03d}.npz", eps)


def clip_ids(items) -> list[tuple[int, int]]:
    return [(int(c["frames"][0, 0, 0, 1]), int(c["frames"][0, 0, 0, 0])) for c in items]


def test_clip_shapes_and_dtypes(tmp_path):
    write_dataset(tmp_path)
    ds = ClipDataset(tmp_path, clip_frames=6, seed=0)
    clips = list(ds)
    assert len(clips) == ds.num_clips() == 9 * 3  # 20 frames -> 3 clips of 6
    assert ds.resolutions == {(8, 12)} and ds.engine_versions == {"test-1"} and ds.num_episodes == 9
    c = clips[0]
    assert c["frames"].dtype == torch.uint8 and c["frames"].shape == (6, 8, 12, 3)
    assert c["buttons"].dtype == torch.float32 and c["buttons"].shape == (6, A.BUTTON_DIM)
    assert c["camera"].dtype == torch.int64 and c["camera"].shape == (6, 2)
    assert isinstance(c["seed"], int)
    # a clip's frames and actions line up: frame index k carries the action that produced it
    ep = read_shard(tmp_path / f"shard_{clip_ids([c])[0][0] // 3:03d}.npz")[clip_ids([c])[0][0] % 3]
    start = clip_ids([c])[0][1]
    hot, cam = A.encode_many(ep.actions[start:start + 6])
    np.testing.assert_array_equal(c["buttons"].numpy(), hot)
    np.testing.assert_array_equal(c["camera"].numpy(), cam)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["frames"].shape == (4, 6, 8, 12, 3) and batch["seed"].shape == (4,)


def test_unshuffled_order_and_seeded_shuffle(tmp_path):
    write_dataset(tmp_path)
    plain = clip_ids(ClipDataset(tmp_path, clip_frames=6, shuffle=False))
    assert plain[:4] == [(0, 0), (0, 6), (0, 12), (1, 0)]
    a = clip_ids(ClipDataset(tmp_path, clip_frames=6, seed=1))
    b = clip_ids(ClipDataset(tmp_path, clip_frames=6, seed=1))
    ds = ClipDataset(tmp_path, clip_frames=6, seed=1)
    ds.set_epoch(1)
    c = clip_ids(ds)
    assert a == b and a != c and a != plain
    # 20 frames, 3 clips of 6: two frames of slack, so shuffled clips start at a seeded phase 0-2
    assert {start % 6 for _, start in a} <= {0, 1, 2} and len({start % 6 for _, start in a + c}) > 1


@pytest.mark.parametrize("workers,world_size", [(2, 1), (2, 3)])
def test_workers_and_ranks_cover_each_clip_once(tmp_path, workers, world_size):
    write_dataset(tmp_path, n_shards=4, eps_per_shard=2, T=13)
    seen = []
    for rank in range(world_size):
        ds = ClipDataset(tmp_path, clip_frames=4, seed=5, shuffle_buffer=3, rank=rank, world_size=world_size)
        loader = DataLoader(ds, batch_size=None, num_workers=workers, persistent_workers=False)
        seen += clip_ids(loader)
    expected = ClipDataset(tmp_path, clip_frames=4, seed=5).num_clips()
    assert len(seen) == expected == 8 * 3
    assert len(set(seen)) == len(seen)  # no duplicates
    assert {e for e, _ in seen} == set(range(8))  # every episode


@pytest.mark.parametrize("level", [0, 1, 6])
def test_npz_writer_is_plain_numpy_at_any_level(tmp_path, level):
    import io

    from simulator.data.shards import write_npz

    arrays = {"a": np.arange(1000, dtype=np.int16).reshape(10, 100), "b": np.frombuffer(b'{"x": 1}', np.uint8)}
    buf = io.BytesIO()
    write_npz(buf, arrays, compresslevel=level)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as z:
        assert sorted(z.files) == ["a", "b"]
        np.testing.assert_array_equal(z["a"], arrays["a"])
        np.testing.assert_array_equal(z["b"], arrays["b"])
