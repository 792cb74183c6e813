"""Key bindings -> Action mapping (client/controls.py)."""

import pytest

from client.controls import (CONTROL_PRESETS, ControlsConfig, action_from_input, hotbar_for_key,
                             mouse_to_camera)
from simulator.actions import CAMERA_BIN_CENTERS, CAMERA_MAX_DEG, Action


def test_held_keys_map_to_buttons():
    a = action_from_input({"w", "space", "left ctrl"}, mouse_buttons={1})
    assert a.forward and a.jump and a.sprint and a.attack
    assert not (a.back or a.left or a.right or a.sneak or a.use)
    b = action_from_input({"s", "a", "left shift"}, mouse_buttons={3})
    assert b.back and b.left and b.sneak and b.use and not b.forward


def test_no_input_is_noop():
    assert action_from_input(set()) == Action()


def test_hotbar_keys():
    assert hotbar_for_key("1") == 0 and hotbar_for_key("9") == 8 and hotbar_for_key("0") is None
    assert action_from_input(set(), hotbar=4).hotbar == 4


def test_mouse_to_camera_direction_and_clamp():
    yaw, pitch = mouse_to_camera(10, 10)
    assert yaw > 0 and pitch < 0  # right turns right, down looks down
    yaw, pitch = mouse_to_camera(-10_000, -10_000)
    assert yaw == -CAMERA_MAX_DEG and pitch == CAMERA_MAX_DEG
    inv = ControlsConfig(invert_pitch=True)
    assert mouse_to_camera(0, 10, inv)[1] > 0


def test_camera_is_quantized_to_bins():
    a = action_from_input(set(), mouse_delta=(13.0, -7.0))
    assert a.yaw in CAMERA_BIN_CENTERS and a.pitch in CAMERA_BIN_CENTERS
    assert a.yaw > 0 and a.pitch > 0
    raw = action_from_input(set(), mouse_delta=(13.0, 0.0), config=ControlsConfig(quantize=False))
    assert raw.yaw == pytest.approx(13.0 * CONTROL_PRESETS["default"].sensitivity_deg_per_px)


def test_bad_binding_is_rejected():
    with pytest.raises(ValueError, match="fly"):
        ControlsConfig(key_bindings={"f": "fly"})
