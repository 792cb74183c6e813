"""Player physics and block interaction in a hand-built arena (simulator/world)."""

import numpy as np
import pytest

from simulator.actions import NOOP, Action
from simulator.world.blocks import HOTBAR, BLOCK_NAMES
from simulator.world.engine import WORLD_PRESETS, World

FLOOR = 60  # arena floor: stone at y = FLOOR - 1, air from FLOOR to FLOOR + 7


@pytest.fixture()
def arena() -> World:
    """A 13x13 air box with a stone floor, player at its centre looking along -z."""
    w = World(5, WORLD_PRESETS["tiny"])
    w.reset()
    cx, cz = 8, 8
    w.fill((cx - 6, FLOOR - 1, cz - 6), (cx + 6, FLOOR - 1, cz + 6), "stone")
    w.fill((cx - 6, FLOOR, cz - 6), (cx + 6, FLOOR + 7, cz + 6), "air")
    w.teleport(cx + 0.5, cz + 0.5, yaw=0.0, pitch=0.0)
    assert w.player.position[1] == FLOOR
    return w


def run(w: World, action: Action, ticks: int) -> None:
    for _ in range(ticks):
        w.step(action)


def test_falls_under_gravity_and_lands(arena):
    arena.player.position[1] = FLOOR + 5.0
    arena.player.on_ground = False
    run(arena, NOOP, 2)  # velocity starts at rest: the first tick only gains speed
    assert arena.player.position[1] < FLOOR + 5.0 and not arena.player.on_ground
    run(arena, NOOP, 40)
    assert arena.player.on_ground
    assert arena.player.position[1] == pytest.approx(FLOOR, abs=1e-6)


def test_cannot_walk_through_a_wall(arena):
    arena.fill((2, FLOOR, 5), (14, FLOOR + 2, 5), "cobblestone")  # wall across -z, 3 high
    run(arena, Action(forward=True, sprint=True), 40)
    # the wall's +z face is at z = 6; the player's box is 0.3 deep in front of its centre
    assert arena.player.position[2] >= 6.3 - 1e-6
    assert arena.player.position[2] == pytest.approx(6.3, abs=1e-3)


def test_one_block_jump_succeeds_two_fails(arena):
    arena.fill((2, FLOOR, 2), (14, FLOOR, 5), "stone")  # a one-block-high platform ahead
    run(arena, Action(forward=True, jump=True), 20)
    run(arena, NOOP, 20)
    assert arena.player.position[2] < 6.0 and arena.player.on_ground
    assert arena.player.position[1] == pytest.approx(FLOOR + 1, abs=1e-6)

    w2 = World(5, WORLD_PRESETS["tiny"])
    w2.reset()
    w2.fill((2, FLOOR - 1, 2), (14, FLOOR - 1, 14), "stone")
    w2.fill((2, FLOOR, 2), (14, FLOOR + 7, 14), "air")
    w2.fill((2, FLOOR, 5), (14, FLOOR + 1, 5), "stone")  # two blocks high
    w2.teleport(8.5, 8.5, yaw=0.0, pitch=0.0)
    run(w2, Action(forward=True, jump=True), 30)
    assert w2.player.position[2] >= 6.3 - 1e-6
    assert w2.player.position[1] < FLOOR + 1.26


def test_sneak_does_not_walk_off_an_edge(arena):
    arena.fill((2, FLOOR - 1, 2), (14, FLOOR - 1, 6), "air")  # the floor ends at z = 7
    run(arena, Action(forward=True, sneak=True), 60)
    assert arena.player.on_ground and arena.player.position[1] == pytest.approx(FLOOR)
    run(arena, Action(forward=True), 20)
    assert arena.player.position[1] < FLOOR - 0.5  # without sneak it walks off and falls


def test_break_the_block_ahead(arena):
    arena.fill((8, FLOOR, 6), (8, FLOOR + 2, 6), "brick")
    assert arena.target() == (8, FLOOR + 1, 6)  # eye at FLOOR + 1.62 looking level
    arena.step(Action(attack=True))
    assert not arena.is_solid(8, FLOOR + 1, 6)
    assert arena.is_solid(8, FLOOR, 6) and arena.is_solid(8, FLOOR + 2, 6)


def test_holding_attack_repeats_every_few_ticks(arena):
    arena.fill((8, FLOOR, 2), (8, FLOOR + 2, 6), "planks")  # a 5-deep column of wood ahead
    run(arena, Action(attack=True), 5)  # breaks on tick 0 and tick 4 (repeat every 4)
    broken = [z for z in range(2, 7) if not arena.is_solid(8, FLOOR + 1, z)]
    assert broken == [5, 6]


def test_place_against_the_targeted_face_with_the_selected_block(arena):
    arena.fill((2, FLOOR, 5), (14, FLOOR + 2, 5), "stone")
    arena.player.position[2] = 8.5  # 2.2 blocks from the wall: out of the player's box
    arena.step(Action(hotbar=2))
    arena.step(Action(use=True))
    assert arena.block(8, FLOOR + 1, 6) == BLOCK_NAMES[HOTBAR[2]]


def test_refuses_to_place_inside_the_player(arena):
    arena.step(Action(pitch=-20.0))
    arena.step(Action(pitch=-20.0))
    arena.step(Action(pitch=-20.0))
    arena.step(Action(pitch=-20.0))
    arena.step(Action(pitch=-20.0))
    assert arena.player.pitch == -89.0  # clamped
    assert arena.target() == (8, FLOOR - 1, 8)  # the floor under the feet
    arena.step(Action(use=True))
    assert arena.block(8, FLOOR, 8) == "air"
    assert arena.player.position[1] == pytest.approx(FLOOR)


def test_bottom_layer_is_unbreakable():
    w = World(5, WORLD_PRESETS["tiny"])
    w.reset()
    w.fill((6, 0, 6), (10, 70, 10), "air")
    w.fill((6, 0, 6), (10, 0, 10), "stone")
    w.teleport(8.5, 8.5, pitch=-89.0)
    assert w.player.position[1] == 1
    run(w, Action(attack=True), 8)
    assert w.is_solid(8, 0, 8) and w.player.on_ground


def test_wades_in_water(arena):
    arena.fill((2, FLOOR, 2), (14, FLOOR + 2, 14), "water")
    assert not arena.is_solid(8, FLOOR, 8)
    run(arena, Action(forward=True), 10)
    assert arena.player.in_water and arena.player.position[2] < 8.5 - 1.0
    run(arena, Action(jump=True), 20)
    assert arena.player.position[1] > FLOOR + 0.5  # swims up
    assert np.isfinite(arena.player.position).all()


def test_climbs_out_of_water_onto_a_bank(arena):
    # a pool two deep whose water surface is level with the bank, as lakes are
    arena.fill((2, FLOOR - 3, 7), (14, FLOOR - 3, 14), "stone")
    arena.fill((2, FLOOR - 2, 7), (14, FLOOR - 1, 14), "water")
    arena.teleport(8.5, 10.5, yaw=0.0)  # on the water, facing the bank at z < 7
    run(arena, NOOP, 40)  # sinks to the pool floor
    assert arena.player.position[1] == pytest.approx(FLOOR - 2)
    assert arena.player.in_water and arena.player.position[1] < FLOOR
    run(arena, Action(forward=True, jump=True), 40)
    run(arena, NOOP, 20)
    assert arena.player.position[2] < 7.0 and arena.player.position[1] == pytest.approx(FLOOR, abs=1e-6)


@pytest.mark.parametrize("keys,blocks_per_second", [({"forward": True}, 4.317),
                                                    ({"forward": True, "sprint": True}, 5.612),
                                                    ({"forward": True, "sneak": True}, 1.295),
                                                    ({"right": True, "sprint": True}, 4.317)])  # sprint is forward-only
def test_walk_sprint_sneak_speeds(arena, keys, blocks_per_second):
    start = arena.player.position.copy()
    run(arena, Action(**keys), 20)  # one second
    moved = np.linalg.norm(arena.player.position - start)
    assert moved == pytest.approx(blocks_per_second, rel=1e-6)


def test_turning_changes_the_walking_direction(arena):
    arena.step(Action(yaw=20.0))
    arena.step(Action(yaw=20.0))
    arena.step(Action(yaw=20.0))
    arena.step(Action(yaw=20.0))
    arena.step(Action(yaw=10.0))  # yaw 90: facing +x
    start = arena.player.position.copy()
    run(arena, Action(forward=True), 10)
    delta = arena.player.position - start
    assert delta[0] == pytest.approx(4.317 / 2, rel=1e-6) and abs(delta[2]) < 1e-9
