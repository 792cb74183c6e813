"""Key bindings as data, and the one function that turns input state into an Action.

Both the real engine's window (`patchworld world`) and the dreamed world's client use this
module, so that the same keys mean the same thing in both. Keys are named by
`pygame.key.name()` strings ("w", "space", "left shift"), so the tables are plain data and this
module imports pygame only inside the helper that reads pygame's state.

Camera: mouse motion in pixels times a sensitivity gives degrees; the result is clamped to
the action encoding's range and quantized to its bins, so the engine makes exactly the move
the model will see.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from simulator.actions import BUTTONS, CAMERA_MAX_DEG, HOTBAR_SLOTS, Action

# held key -> Action button field
KEY_BINDINGS: dict[str, str] = {
    "w": "forward",
    "s": "back",
    "a": "left",
    "d": "right",
    "up": "forward",
    "down": "back",
    "space": "jump",
    "left shift": "sneak",
    "right shift": "sneak",
    "left ctrl": "sprint",
    "right ctrl": "sprint",
}

# held mouse button (pygame numbering: 1 left, 2 middle, 3 right) -> Action button field
MOUSE_BINDINGS: dict[int, str] = {
    1: "attack",
    3: "use",
}

# pressed (not held) key -> hotbar slot; "1" selects slot 0, as in Minecraft
HOTBAR_KEYS: dict[str, int] = {str(i + 1): i for i in range(HOTBAR_SLOTS)}

# keys that turn the camera without a mouse (degrees per tick while held)
KEY_CAMERA: dict[str, tuple[float, float]] = {
    "left": (-6.0, 0.0),
    "right": (6.0, 0.0),
    "page up": (0.0, 4.0),
    "page down": (0.0, -4.0),
}


@dataclass(frozen=True)
class ControlsConfig:
    sensitivity_deg_per_px: float = 0.15  # mouse: degrees of camera per pixel of motion
    invert_pitch: bool = False  # True: moving the mouse up looks down
    quantize: bool = True  # snap camera to the action encoding's bins (what the model sees)
    key_bindings: dict[str, str] = field(default_factory=lambda: dict(KEY_BINDINGS))
    mouse_bindings: dict[int, str] = field(default_factory=lambda: dict(MOUSE_BINDINGS))
    hotbar_keys: dict[str, int] = field(default_factory=lambda: dict(HOTBAR_KEYS))
    key_camera: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(KEY_CAMERA))

    def __post_init__(self) -> None:
        for key, name in list(self.key_bindings.items()) + list(self.mouse_bindings.items()):
            if name not in BUTTONS:
                raise ValueError(f"binding {key!r} -> {name!r}: not an Action button (known: {', '.join(BUTTONS)})")
        for key, slot in self.hotbar_keys.items():
            if not 0 <= slot < HOTBAR_SLOTS:
                raise ValueError(f"hotbar key {key!r} -> slot {slot}: not in 0..{HOTBAR_SLOTS - 1}")


CONTROL_PRESETS: dict[str, ControlsConfig] = {
    "default": ControlsConfig(),
    "slow_mouse": ControlsConfig(sensitivity_deg_per_px=0.08),
    "fast_mouse": ControlsConfig(sensitivity_deg_per_px=0.3),
}


def mouse_to_camera(dx: float, dy: float, config: ControlsConfig = CONTROL_PRESETS["default"]) -> tuple[float, float]:
    """Mouse motion in pixels (pygame: +dx right, +dy down) -> (yaw, pitch) degrees, clamped."""
    yaw = dx * config.sensitivity_deg_per_px
    pitch = (dy if config.invert_pitch else -dy) * config.sensitivity_deg_per_px
    clamp = lambda v: max(-CAMERA_MAX_DEG, min(CAMERA_MAX_DEG, v))  # noqa: E731
    return clamp(yaw), clamp(pitch)


def hotbar_for_key(key: str, config: ControlsConfig = CONTROL_PRESETS["default"]) -> int | None:
    """The hotbar slot a key press selects, or None."""
    return config.hotbar_keys.get(key)


def action_from_input(keys_held: Iterable[str], mouse_buttons: Iterable[int] = (),
                      mouse_delta: tuple[float, float] = (0.0, 0.0), hotbar: int | None = None,
                      config: ControlsConfig = CONTROL_PRESETS["default"]) -> Action:
    """Held keys (pygame key names), held mouse buttons, mouse motion since the last tick and an
    optional hotbar press -> the tick's Action (camera quantized unless the config says not)."""
    keys = set(keys_held)
    pressed = {name for key, name in config.key_bindings.items() if key in keys}
    pressed |= {name for button, name in config.mouse_bindings.items() if button in set(mouse_buttons)}
    yaw, pitch = mouse_to_camera(*mouse_delta, config=config)
    for key, (dyaw, dpitch) in config.key_camera.items():
        if key in keys:
            yaw, pitch = yaw + dyaw, pitch + dpitch
    yaw = max(-CAMERA_MAX_DEG, min(CAMERA_MAX_DEG, yaw))
    pitch = max(-CAMERA_MAX_DEG, min(CAMERA_MAX_DEG, pitch))
    action = Action(**{name: True for name in pressed}, hotbar=hotbar, yaw=yaw, pitch=pitch)
    return action.quantized() if config.quantize else action


def pygame_held_keys(config: ControlsConfig = CONTROL_PRESETS["default"]) -> set[str]:
    """Names of the bound keys pygame reports held now (pygame must be initialised)."""
    import pygame

    state = pygame.key.get_pressed()
    names = set()
    for key in config.key_bindings.keys() | config.key_camera.keys():
        if state[pygame.key.key_code(key)]:
            names.add(key)
    return names


def pygame_held_mouse_buttons() -> set[int]:
    """Held mouse buttons in pygame numbering (1 left, 2 middle, 3 right)."""
    import pygame

    return {i + 1 for i, down in enumerate(pygame.mouse.get_pressed(3)) if down}
