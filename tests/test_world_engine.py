"""Terrain, rendering and determinism of the voxel engine (simulator/world)."""

import hashlib

import numpy as np
import pytest

from simulator.actions import NOOP, Action
from simulator.world.engine import BIOMES, ENGINE_VERSION, WORLD_PRESETS, World, WorldConfig
from simulator.world.survey import find_biome
from simulator.world.terrain import CHUNK, OCEAN, column, generate_chunk


def varied_actions(n: int, seed: int = 0) -> list[Action]:
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        out.append(Action(forward=bool(rng.random() < 0.6), left=bool(rng.random() < 0.1),
                          jump=bool(rng.random() < 0.2), sprint=bool(rng.random() < 0.3),
                          attack=bool(rng.random() < 0.2), use=bool(rng.random() < 0.15),
                          hotbar=int(rng.integers(9)) if rng.random() < 0.05 else None,
                          yaw=float(rng.normal(0, 6)), pitch=float(rng.normal(-0.5, 4))).quantized())
    return out


def test_same_seed_same_actions_bit_identical_frames():
    config = WorldConfig(width=40, height=32)
    a, b = World(11, config), World(11, config)
    fa, fb = a.reset(), b.reset()
    assert np.array_equal(fa, fb)
    for action in varied_actions(100):
        fa, fb = a.step(action), b.step(action)
        assert np.array_equal(fa, fb)
    assert np.array_equal(a.player.position, b.player.position)
    broken = placed = 0  # the run really broke and placed blocks
    for key in a.store.edited:
        now, before = a.store.chunk(*key), generate_chunk(11, *key)
        broken += int(((now == 0) & (before != 0)).sum())
        placed += int(((now != 0) & (now != before)).sum())
    assert broken > 0 and placed > 0, (broken, placed)


def test_threads_do_not_change_frames():
    for action_count in (0, 30):
        frames = []
        for parallel in (False, True):
            w = World(3, WorldConfig(width=48, height=40, parallel=parallel))
            w.reset()
            for action in varied_actions(action_count, seed=1):
                w.step(action)
            frames.append(w.render())
        assert np.array_equal(*frames)


def test_golden_frame_hash():
    """Catches any change to terrain, physics or rendering (bump ENGINE_VERSION when intended)."""
    w = World(0, WORLD_PRESETS["cpu"])
    w.reset()
    for action in varied_actions(20, seed=2):
        frame = w.step(action)
    digest = hashlib.sha256(frame.tobytes()).hexdigest()[:16]
    assert ENGINE_VERSION == "1.2"
    assert digest == GOLDEN, f"frame hash {digest} != golden {GOLDEN}: engine output changed"


GOLDEN = "dd864b4f8529d4de"  # seed 0, "cpu" preset, 20 ticks of varied_actions(seed=2)


@pytest.mark.parametrize("seed", [0, 4])
def test_fast_ray_caster_matches_the_plain_dda(seed):
    w = World(seed, WorldConfig(width=48, height=48))
    w.reset()
    for i, action in enumerate(varied_actions(60, seed=seed)):
        w.step(action)
        if i % 15 == 14:
            fast, ref = w.render(), w.render(reference=True)
            differ = np.any(fast != ref, axis=2)
            assert differ.mean() == 0.0, f"{differ.sum()} of {differ.size} pixels differ"


@pytest.mark.parametrize("seed", [5, 9])
def test_fast_ray_caster_matches_the_plain_dda_anywhere(seed):
    """Random places, heights (in the air, underground, under water), look directions and fovs."""
    rng = np.random.default_rng(seed)
    w = World(seed, WorldConfig(width=40, height=30, fov_deg=float(rng.uniform(30, 120))))
    w.reset()
    for k in range(10):
        x, z = rng.uniform(-300, 300, 2)
        w.teleport(x, z, yaw=rng.uniform(0, 360), pitch=float(rng.choice([-89, -45, -10, 0, 5, 30, 89])))
        w.player.position[1] += (0.0, rng.uniform(-8, 0), rng.uniform(0, 40))[k % 3]
        fast, ref = w.render(), w.render(reference=True)
        differ = np.any(fast != ref, axis=2)
        assert differ.sum() == 0, f"view {k} at {w.player.position}: {differ.sum()} pixels differ"


@pytest.mark.parametrize("width,height", [(17, 23), (1, 1), (65, 33), (96, 64)])
def test_frame_shape_and_dtype(width, height):
    w = World(2, WorldConfig(width=width, height=height))
    frame = w.reset()
    assert frame.shape == (height, width, 3) and frame.dtype == np.uint8
    frame = w.step(Action(forward=True, yaw=3.0))
    assert frame.shape == (height, width, 3) and frame.dtype == np.uint8


def test_frame_shows_sky_above_and_ground_below():
    w = World(1, WorldConfig(width=32, height=32))
    frame = w.reset().astype(int)
    top, bottom = frame[:4].mean(axis=(0, 1)), frame[-4:].mean(axis=(0, 1))
    assert top[2] > top[0]  # blue sky
    assert np.abs(top - bottom).sum() > 60  # the ground looks different


def test_spawn_is_on_land():
    for seed in range(5):
        w = World(seed, WORLD_PRESETS["tiny"])
        w.reset()
        x, y, z = w.player.position
        assert column(seed, int(np.floor(x)), int(np.floor(z)))[1] != OCEAN
        assert w.is_solid(int(np.floor(x)), int(y) - 1, int(np.floor(z)))
        assert not w.is_solid(int(np.floor(x)), int(y), int(np.floor(z)))
        assert w.biome() in BIOMES


def test_bad_seed_and_config_are_rejected():
    with pytest.raises(ValueError, match="64-bit"):
        World(2**70)
    with pytest.raises(ValueError, match="render distance"):
        WorldConfig(render_distance=100.0, view_radius_chunks=2)
    with pytest.raises(ValueError, match="resolution 0x5"):
        WorldConfig(width=0, height=5)
    assert World(-12345, WORLD_PRESETS["tiny"]).reset().shape == (24, 32, 3)  # negative seeds are fine


def test_different_seeds_differ():
    a, b = World(0, WORLD_PRESETS["tiny"]).reset(), World(1, WORLD_PRESETS["tiny"]).reset()
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("x,z", [(400, 0), (-400, 0), (0, 400), (0, -400), (-3000, 2500)])
def test_chunks_generate_far_from_spawn(x, z):
    w = World(7, WORLD_PRESETS["tiny"])
    w.reset()
    w.teleport(x + 0.5, z + 0.5, pitch=-30.0)
    frame = w.step(Action(forward=True))
    assert w.is_solid(x, int(w.player.position[1]) - 1, z) or w.player.in_water or not w.player.on_ground
    assert frame.std() > 5  # terrain, not an empty sky
    assert len(w.store.chunks) <= (2 * (2 * w.config.view_radius_chunks + 2) + 1) ** 2 + 9


def test_terrain_is_a_function_of_the_seed_alone():
    """A chunk generated first or last, from either side, holds the same blocks (trees included)."""
    a = World(9, WORLD_PRESETS["tiny"])
    b = World(9, WORLD_PRESETS["tiny"])
    chunks = [(c, d) for c in range(-2, 2) for d in range(-2, 2)]
    got_a = {k: a.store.chunk(*k).copy() for k in chunks}
    got_b = {k: b.store.chunk(*k).copy() for k in reversed(chunks)}
    assert all(np.array_equal(got_a[k], got_b[k]) for k in chunks)


@pytest.mark.parametrize("biome", BIOMES)
def test_every_biome_exists_and_is_named(biome):
    spot = find_biome(0, biome)
    assert spot is not None, f"no {biome} within the search area of seed 0"
    w = World(0, WORLD_PRESETS["tiny"])
    w.reset()
    w.teleport(spot[0] + 0.5, spot[1] + 0.5, pitch=-20.0)
    assert w.biome() == biome
    caption = w.caption()
    assert caption.startswith(biome.replace("_", " ") + ", looking at ") and caption.endswith("daytime")


def test_terrain_ahead_reports_steps_and_walls():
    w = World(5, WORLD_PRESETS["tiny"])
    w.reset()
    w.fill((2, 59, 2), (14, 59, 14), "stone")
    w.fill((2, 60, 2), (14, 67, 14), "air")
    w.teleport(8.5, 8.5, yaw=0.0)
    assert w.terrain_ahead() == "clear"
    w.fill((8, 60, 7), (8, 60, 7), "dirt")
    assert w.terrain_ahead() == "step"
    w.fill((8, 61, 7), (8, 61, 7), "dirt")
    assert w.terrain_ahead() == "wall"


def test_reset_undoes_edits_and_returns_to_spawn():
    w = World(4, WORLD_PRESETS["tiny"])
    first = w.reset()
    for action in varied_actions(40, seed=3):
        w.step(action)
    again = w.reset()
    assert np.array_equal(first, again) and w.tick == 0 and not w.store.edited
    assert w.step(NOOP).shape == first.shape


def test_view_and_skip_maps_stay_consistent_with_the_chunks():
    """After walking across chunk borders while breaking and placing, the dense view, the column
    heights and the macro maxima used for empty-space skipping all equal a fresh rebuild."""
    from simulator.world.raycast import MACRO
    from simulator.world.voxels import VoxelStore

    w = World(8, WORLD_PRESETS["tiny"])
    w.reset()
    for t, action in enumerate(varied_actions(150, seed=5)):
        w.step(action)
    s = w.store
    assert s.edited, "the walk should have edited some blocks"
    fresh = VoxelStore(w.seed, s.radius)
    fresh.chunks = {k: v.copy() for k, v in s.chunks.items()}
    fresh.follow(w.player.position[0], w.player.position[2])
    assert fresh.origin == s.origin
    assert np.array_equal(fresh.view, s.view)
    assert np.array_equal(fresh.heights, s.heights)
    assert np.array_equal(fresh.macro, s.macro)
    assert s.top >= fresh.top
    side = s.heights.shape[0]
    assert s.macro.shape == (side // MACRO, side // MACRO)
    assert abs(w.player.position[0] - w.spawn[0]) + abs(w.player.position[2] - w.spawn[2]) > CHUNK


def test_caption_names_what_is_looked_at_and_water():
    w = World(5, WORLD_PRESETS["tiny"])
    w.reset()
    w.fill((2, 59, 2), (14, 59, 14), "stone")
    w.fill((2, 60, 2), (14, 70, 14), "air")
    w.fill((2, 60, 4), (14, 64, 4), "brick")
    w.teleport(8.5, 8.5, yaw=0.0, pitch=0.0)
    assert ", looking at brick, daytime" in w.caption()
    w.fill((2, 60, 5), (14, 63, 14), "water")
    assert w.caption().endswith("looking at brick, underwater, daytime")
