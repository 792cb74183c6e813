import json

import numpy as np
import pytest

from simulator import actions as A
from simulator.data import collect as C
from simulator.data.shards import list_shards, read_shard

from simulator.world import engine


def small_config(**overrides) -> C.CollectConfig:
    settings = dict(episodes=5, steps=6, resolution=(16, 24), seed=11, world_seeds=(11, 12),
                    episodes_per_shard=2, start_radius=60.0, engine_version=engine.ENGINE_VERSION)
    return C.CollectConfig(**{**settings, **overrides})


def episodes_of(out) -> list:
    return [ep for p in list_shards(out) for ep in read_shard(p)]


def test_collect_writes_aligned_episodes_with_metadata(tmp_path):
    config = small_config()
    paths = C.collect(config, tmp_path, workers=1, progress=False)
    assert [p.name for p in paths] == ["shard_00000.npz", "shard_00001.npz", "shard_00002.npz"]
    eps = episodes_of(tmp_path)
    assert [e.extra["episode"] for e in eps] == [0, 1, 2, 3, 4]
    assert [e.seed for e in eps] == [11, 12, 11, 12, 11]  # worlds cycled over episodes
    for e in eps:
        assert e.frames.shape == (6, 16, 24, 3) and e.frames.dtype == np.uint8
        assert e.actions[0] == A.NOOP and all(a == a.quantized() for a in e.actions)
        assert e.biome in engine.BIOMES and e.caption and e.engine_version == engine.ENGINE_VERSION
    # frames[t] is what the engine shows after actions[1..t] from the recorded start: replay one
    e = eps[1]
    world = engine.World(e.seed, engine.WorldConfig(width=24, height=16))
    world.reset()
    np.testing.assert_array_equal(C.place_player(world, e.extra["start_pose"]), e.frames[0])
    for t in range(1, 6):
        np.testing.assert_array_equal(world.step(e.actions[t]), e.frames[t])
    assert json.loads((tmp_path / C.MANIFEST).read_text())["world_seeds"] == [11, 12]


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    config = small_config()
    C.collect(config, tmp_path / "full", workers=1, progress=False)
    reference = episodes_of(tmp_path / "full")
    out = tmp_path / "resumed"
    C.collect(config, out, workers=1, progress=False)
    # interrupt: one shard never written, one truncated mid-write, a temp file left behind
    (out / "shard_00001.npz").unlink()
    data = (out / "shard_00002.npz").read_bytes()
    (out / "shard_00002.npz").write_bytes(data[: len(data) // 3])
    (out / ".shard_00001.npz.tmp999").write_bytes(b"partial")
    kept = (out / "shard_00000.npz").stat().st_mtime_ns
    C.collect(config, out, workers=2, progress=False)
    assert (out / "shard_00000.npz").stat().st_mtime_ns == kept  # finished shards are not redone
    assert not list(out.glob(".*tmp*"))
    resumed = episodes_of(out)
    assert len(resumed) == len(reference) == 5
    for a, b in zip(reference, resumed):
        np.testing.assert_array_equal(a.frames, b.frames)
        assert a.actions == b.actions and a.extra == b.extra and a.caption == b.caption


def test_resume_with_other_settings_is_refused(tmp_path):
    C.collect(small_config(episodes=2), tmp_path, workers=1, progress=False)
    with pytest.raises(SystemExit, match="steps"):
        C.collect(small_config(episodes=2, steps=7), tmp_path, workers=1, progress=False)


def test_command_line_arguments():
    import argparse

    parser = argparse.ArgumentParser()
    C.add_arguments(parser)
    args = parser.parse_args(["--out", "x", "--episodes", "3", "--resolution", "32x48", "--seed", "100000",
                              "--worlds", "8"])
    config = C.config_from_args(args)
    assert config.resolution == (32, 48) and config.worlds == tuple(range(100000, 100008))
    args = parser.parse_args(["--out", "x", "--episodes", "3", "--world-seeds", "5:8"])
    assert C.config_from_args(args).worlds == (5, 6, 7)
    with pytest.raises(SystemExit):
        parser.parse_args(["--out", "x", "--episodes", "3", "--resolution", "64"])
    assert C.config_from_args(parser.parse_args(["--out", "x", "--preset", "heldout"])).episodes == 48
    with pytest.raises(SystemExit, match="leave out --steps"):
        C.config_from_args(parser.parse_args(["--out", "x", "--preset", "heldout", "--steps", "9"]))
    with pytest.raises(SystemExit, match="--episodes"):
        C.config_from_args(parser.parse_args(["--out", "x"]))


def test_dataset_presets_keep_heldout_worlds_out_of_training():
    for name in ("train", "train_wide"):
        train = set(C.DATASET_PRESETS[name].worlds)
        assert train and max(train) < C.HELDOUT_WORLD_SEEDS_FROM, name
    for name in ("heldout", "heldout_long", "heldout_select"):
        assert min(C.DATASET_PRESETS[name].worlds) >= C.HELDOUT_WORLD_SEEDS_FROM
    # the worlds a run is selected on are neither evaluation set (report 100000-100007, unseen 100008-100015)
    assert not set(C.DATASET_PRESETS["heldout_select"].worlds) & set(range(100_000, 100_016))
    assert set(C.DATASET_PRESETS["train"].worlds) < set(C.DATASET_PRESETS["train_wide"].worlds)
