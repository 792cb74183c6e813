"""The pygame window shared by the player and the spectator: a scaled frame and a HUD.

Frames carry no HUD (DESIGN.md): the client draws its own text over the scaled image.
"""

from __future__ import annotations

import collections
import statistics
import time
from dataclasses import dataclass

import numpy as np


@dataclass
class WindowConfig:
    scale: int = 8  # window pixels per frame pixel (64x64 -> 512x512)
    hud_font_px: int = 16
    hud_color: tuple[int, int, int] = (255, 255, 255)
    hud_shadow: tuple[int, int, int] = (0, 0, 0)


class RateMeter:
    """Events per second and recent latencies, over a sliding window."""

    def __init__(self, window_s: float = 1.0, latencies: int = 40) -> None:
        self.window_s = window_s
        self._times: collections.deque[float] = collections.deque()
        self.latencies_ms: collections.deque[float] = collections.deque(maxlen=latencies)

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._times.append(now)
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()

    @property
    def rate(self) -> float:
        return len(self._times) / self.window_s

    @property
    def latency_ms(self) -> float | None:
        return statistics.median(self.latencies_ms) if self.latencies_ms else None


class FrameWindow:
    def __init__(self, title: str, resolution: tuple[int, int], config: WindowConfig | None = None) -> None:
        import pygame

        self.config = config or WindowConfig()
        height, width = resolution
        self.size = (width * self.config.scale, height * self.config.scale)
        pygame.display.init()  # display and fonts only: no audio device is opened
        pygame.font.init()
        pygame.display.set_caption(title)
        self.screen = pygame.display.set_mode(self.size)
        self.font = pygame.font.Font(None, self.config.hud_font_px + 6)
        self.image: np.ndarray | None = None  # the last frame shown, unscaled uint8 [H, W, 3]

    def show(self, image: np.ndarray | None, hud: list[str]) -> None:
        """Draw `image` (or the last one) scaled to the window, the HUD lines over it, and flip."""
        import pygame

        if image is not None:
            self.image = image
        if self.image is not None:
            surface = pygame.surfarray.make_surface(self.image.swapaxes(0, 1))  # [H, W, 3] -> [W, H, 3]
            self.screen.blit(pygame.transform.scale(surface, self.size), (0, 0))
        else:
            self.screen.fill((0, 0, 0))
        y = 4
        for line in hud:
            for dx, color in ((1, self.config.hud_shadow), (0, self.config.hud_color)):
                self.screen.blit(self.font.render(line, True, color), (4 + dx, y + dx))
            y += self.config.hud_font_px + 2
        pygame.display.flip()

    def close(self) -> None:
        import pygame

        pygame.display.quit()
