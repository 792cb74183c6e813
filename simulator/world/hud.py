"""The window-only HUD of `patchworld world`: crosshair, hotbar, frames/s and a status line.

Drawn on the pygame window surface after the frame is upscaled; never into frames.
"""

from __future__ import annotations

import numpy as np
import pygame

from simulator.world import blocks as B

SLOT_PX = 36  # hotbar slot size in window pixels
_WHITE = (255, 255, 255)
_BLACK = (0, 0, 0)


class Hud:
    def __init__(self) -> None:
        self.font = pygame.font.SysFont("monospace", 14)
        atlas = B.texture_atlas()
        self.icons = []
        for block in B.HOTBAR:
            face = B.FACE_TOP if block in (B.SNOW, B.SAND) else B.FACE_SIDE
            rgba = atlas[block, face]  # [8, 8, 4]
            rgb = np.where(rgba[:, :, 3:] > 0.5, rgba[:, :, :3], 0.35)  # see-through texels drawn grey
            surf = pygame.surfarray.make_surface((rgb * 255).astype(np.uint8).swapaxes(0, 1))  # [W, H, 3]
            self.icons.append(pygame.transform.scale(surf, (SLOT_PX - 8, SLOT_PX - 8)))

    def draw(self, screen: pygame.Surface, slot: int, fps: float, status: str) -> None:
        w, h = screen.get_size()
        cx, cy = w // 2, h // 2
        for dx, dy in ((1, 1), (0, 0)):  # shadow, then white
            colour = _BLACK if dx else _WHITE
            pygame.draw.line(screen, colour, (cx - 8 + dx, cy + dy), (cx + 8 + dx, cy + dy), 2)
            pygame.draw.line(screen, colour, (cx + dx, cy - 8 + dy), (cx + dx, cy + 8 + dy), 2)
        x0 = cx - len(self.icons) * SLOT_PX // 2
        y0 = h - SLOT_PX - 6
        for i, icon in enumerate(self.icons):
            rect = pygame.Rect(x0 + i * SLOT_PX, y0, SLOT_PX, SLOT_PX)
            pygame.draw.rect(screen, (40, 40, 40), rect)
            screen.blit(icon, (rect.x + 4, rect.y + 4))
            pygame.draw.rect(screen, _WHITE if i == slot else (90, 90, 90), rect, 3 if i == slot else 1)
        text = self.font.render(f"{fps:5.1f} fps  {status}", True, _WHITE, _BLACK)
        screen.blit(text, (6, 6))
