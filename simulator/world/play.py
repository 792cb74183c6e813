"""`patchworld world --seed S`: play the real voxel engine in a window, or render it to an mp4.

Window: WASD move, space jump, shift sneak, ctrl sprint, mouse look (Esc releases the mouse,
a click grabs it again), left click break, right click place, 1-9 / wheel pick the block.
The bindings are client/controls.py, the same table the dreamed-world client uses.

Headless: `--frames N --out FILE.mp4 [--actions FILE.jsonl]` renders N ticks (the actions of
the file, or a scripted walk) without opening a window.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from simulator.actions import HOTBAR_SLOTS, Action, load_actions
from simulator.cli import parse_resolution
from simulator.world.bench import walk
from simulator.world.engine import World, WorldConfig

TICK_RATE = 20  # Hz, one action and one frame per tick
WINDOW_PX = 768  # the window's longer side; frames are upscaled by an integer factor to about this


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="world seed")
    parser.add_argument("--resolution", type=parse_resolution, default=(256, 256), help="render size HEIGHTxWIDTH")
    parser.add_argument("--fov", type=float, default=70.0, help="vertical field of view, degrees")
    parser.add_argument("--parallel", action="store_true", help="render on numba's threads (idle machines)")
    parser.add_argument("--frames", type=int, help="headless: number of ticks to render")
    parser.add_argument("--out", type=Path, help="headless: output video (.mp4)")
    parser.add_argument("--actions", type=Path, help="headless: actions, one JSON object per line")


def render_video(world: World, actions: list[Action], out: Path) -> None:
    """Step through `actions` and write every frame to `out` at 20 frames/s."""
    import imageio.v2 as imageio
    from tqdm import tqdm

    out.parent.mkdir(parents=True, exist_ok=True)
    # macro_block_size=1 keeps the exact size; libx264 needs even sides, so odd ones are padded by ffmpeg
    with imageio.get_writer(out, fps=TICK_RATE, codec="libx264", quality=8, macro_block_size=1,
                            ffmpeg_params=["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]) as writer:
        writer.append_data(world.reset())
        for action in tqdm(actions[1:], desc=f"rendering {out.name}", unit="frame"):
            writer.append_data(world.step(action))


def play_window(world: World) -> None:
    import pygame

    from client.controls import CONTROL_PRESETS, action_from_input, hotbar_for_key, pygame_held_keys, \
        pygame_held_mouse_buttons
    from simulator.world.hud import Hud

    controls = CONTROL_PRESETS["default"]
    width, height = world.config.width, world.config.height
    scale = max(1, WINDOW_PX // max(width, height))
    pygame.init()
    screen = pygame.display.set_mode((width * scale, height * scale))
    pygame.display.set_caption(f"patchworld — real engine, seed {world.seed}")
    hud, clock = Hud(), pygame.time.Clock()

    def grab(on: bool) -> None:
        pygame.event.set_grab(on)
        pygame.mouse.set_visible(not on)
        pygame.mouse.get_rel()  # drop the motion accumulated while released

    world.reset()
    grabbed, running, fps, last = True, True, 0.0, time.perf_counter()
    grab(True)
    while running:
        hotbar, dx, dy = None, 0, 0
        for event in pygame.event.get():
            if event.type == pygame.QUIT:
                running = False
            elif event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE:
                grabbed = False
                grab(False)
            elif event.type == pygame.KEYDOWN:
                hotbar = hotbar_for_key(pygame.key.name(event.key), controls) if hotbar is None else hotbar
            elif event.type == pygame.MOUSEBUTTONDOWN and not grabbed:
                grabbed = True  # this click only grabs the mouse
                grab(True)
            elif event.type == pygame.MOUSEWHEEL and grabbed:
                hotbar = (world.player.slot - event.y) % HOTBAR_SLOTS
            elif event.type == pygame.MOUSEMOTION and grabbed:
                dx, dy = dx + event.rel[0], dy + event.rel[1]
        buttons = pygame_held_mouse_buttons() if grabbed else set()
        action = action_from_input(pygame_held_keys(controls), buttons, (dx, dy), hotbar, controls)
        frame = world.step(action)
        surface = pygame.surfarray.make_surface(frame.swapaxes(0, 1))  # [W, H, 3] as pygame wants
        screen.blit(pygame.transform.scale(surface, screen.get_size()), (0, 0))
        now = time.perf_counter()
        fps = 0.9 * fps + 0.1 / max(now - last, 1e-6)
        last = now
        status = world.caption() + ("" if grabbed else "  [mouse released: click to grab]")
        hud.draw(screen, world.player.slot, fps, status)
        pygame.display.flip()
        clock.tick(TICK_RATE)
    pygame.quit()


def main(args: argparse.Namespace) -> int:
    height, width = args.resolution
    world = World(args.seed, WorldConfig(width=width, height=height, fov_deg=args.fov, parallel=args.parallel))
    if args.out is None and args.frames is None and args.actions is None:
        play_window(world)
        return 0
    if args.out is None:
        raise SystemExit("headless rendering needs --out FILE.mp4")
    if args.actions is not None:
        actions = load_actions(args.actions)
        frames = args.frames or len(actions)
        if frames > len(actions):
            raise SystemExit(f"--frames {frames} but {args.actions} holds only {len(actions)} actions")
        actions = actions[:frames]
    else:
        actions = [Action()] + [walk(t) for t in range((args.frames or 200) - 1)]
    render_video(world, actions, args.out)
    print(f"wrote {args.out}: {len(actions)} frames at {width}x{height}, seed {args.seed}")
    return 0
