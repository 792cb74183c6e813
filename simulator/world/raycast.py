"""First-person voxel ray casting (Amanatides-Woo DDA), compiled with numba.

One ray per pixel walks the grid cell by cell through the loaded view of the world
(`VoxelStore.view`, uint8 [X, H, Z] indexed [x, y, z]). At the first opaque texel it shades
the face (per-face light, 8x8 texture), blends distance fog toward the sky and stops. Water
is not a wall: the ray goes on through it, losing light and picking up blue with each block
of water it crosses. See-through texels (glass, gaps in leaves) let the ray go on too.

Rows are rendered in parallel (`prange`); every pixel is computed on its own from the same
inputs in the same order, so frames are bit-identical whatever the thread count. No fastmath.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from simulator.world import blocks as B

# light per face: x faces, top, bottom, z faces (Minecraft-like fixed shading)
_SHADE_X, _SHADE_TOP, _SHADE_BOTTOM, _SHADE_Z = 0.78, 1.0, 0.5, 0.64
_SKY_HORIZON = (0.74, 0.85, 1.0)
_SKY_ZENITH = (0.32, 0.52, 0.94)
_SUN_DIR = (0.3413, 0.6428, -0.6857)  # unit vector, ~40 degrees above the horizon
_SUN_COS = 0.9986  # angular radius of the disc, ~3 degrees
_WATER_COLOUR = (0.12, 0.32, 0.62)
_WATER_ABSORB = 0.22  # per block of water crossed
_WATER_SURFACE = 0.35  # share of the sky colour reflected where a ray enters water from air
_GLASS_TINT = 0.92


@nb.njit(cache=True)
def camera_basis(yaw_deg: float, pitch_deg: float) -> tuple:
    """(forward, right, up) unit vectors; yaw 0 looks along -z, +yaw turns right, +pitch looks up."""
    yaw = math.radians(yaw_deg)
    pitch = math.radians(pitch_deg)
    cp = math.cos(pitch)
    fwd = (math.sin(yaw) * cp, math.sin(pitch), -math.cos(yaw) * cp)
    right = (math.cos(yaw), 0.0, math.sin(yaw))
    up = (right[1] * fwd[2] - right[2] * fwd[1], right[2] * fwd[0] - right[0] * fwd[2],
          right[0] * fwd[1] - right[1] * fwd[0])
    return fwd, right, up


@nb.njit(cache=True)
def sky(dx: float, dy: float, dz: float) -> tuple:
    """Sky colour in a unit direction: gradient from horizon to zenith, a sun disc with a glow."""
    s = min(max(dy, 0.0), 1.0)
    s = math.sqrt(s)
    r = _SKY_HORIZON[0] + (_SKY_ZENITH[0] - _SKY_HORIZON[0]) * s
    g = _SKY_HORIZON[1] + (_SKY_ZENITH[1] - _SKY_HORIZON[1]) * s
    b = _SKY_HORIZON[2] + (_SKY_ZENITH[2] - _SKY_HORIZON[2]) * s
    c = dx * _SUN_DIR[0] + dy * _SUN_DIR[1] + dz * _SUN_DIR[2]
    if c > _SUN_COS:
        return 1.0, 0.98, 0.82
    if c > 0.0:
        glow = 0.35 * c ** 24
        r += glow
        g += glow * 0.9
        b += glow * 0.6
    return min(r, 1.0), min(g, 1.0), min(b, 1.0)


@nb.njit(cache=True)
def _texel(atlas: np.ndarray, block: int, axis: int, step: int, hx: float, hy: float, hz: float) -> tuple:
    """RGBA of the texel hit on the face crossed along `axis` (0 x, 1 y, 2 z) moving `step`."""
    if axis == 1:
        face = B.FACE_TOP if step < 0 else B.FACE_BOTTOM
        u = hx - math.floor(hx)
        v = hz - math.floor(hz)
    else:
        face = B.FACE_SIDE
        u = (hz - math.floor(hz)) if axis == 0 else (hx - math.floor(hx))
        v = 1.0 - (hy - math.floor(hy))  # row 0 is the top of a side face
    col = min(int(u * B.TEXTURE_SIZE), B.TEXTURE_SIZE - 1)
    row = min(int(v * B.TEXTURE_SIZE), B.TEXTURE_SIZE - 1)
    return atlas[block, face, row, col, 0], atlas[block, face, row, col, 1], atlas[block, face, row, col, 2], \
        atlas[block, face, row, col, 3]


@nb.njit(cache=True)
def trace(view: np.ndarray, top: int, px: float, py: float, pz: float, dx: float, dy: float, dz: float,
          max_dist: float, fog_start: float, atlas: np.ndarray) -> tuple:
    """Colour (r, g, b) in [0, 1] seen along one unit ray from (px, py, pz) in view coordinates."""
    nx, ny, nz = view.shape
    cx, cy, cz = int(math.floor(px)), int(math.floor(py)), int(math.floor(pz))
    sx = 1 if dx > 0 else -1
    sy = 1 if dy > 0 else -1
    sz = 1 if dz > 0 else -1
    inf = 1e30
    tdx = abs(1.0 / dx) if dx != 0.0 else inf
    tdy = abs(1.0 / dy) if dy != 0.0 else inf
    tdz = abs(1.0 / dz) if dz != 0.0 else inf
    tmx = ((cx + 1 - px) if sx > 0 else (px - cx)) * tdx if dx != 0.0 else inf
    tmy = ((cy + 1 - py) if sy > 0 else (py - cy)) * tdy if dy != 0.0 else inf
    tmz = ((cz + 1 - pz) if sz > 0 else (pz - cz)) * tdz if dz != 0.0 else inf
    sr, sg, sb = sky(dx, dy, dz)
    acc_r, acc_g, acc_b = 0.0, 0.0, 0.0  # light gathered in front of the surface (water)
    trans = 1.0  # share of the surface colour that still reaches the eye
    trans_r, trans_g, trans_b = 1.0, 1.0, 1.0  # colour filter of glass
    inside = 0 <= cx < nx and 0 <= cy < ny and 0 <= cz < nz
    in_water = inside and view[cx, cy, cz] == B.WATER
    t_enter = 0.0
    t = 0.0
    while True:
        if tmx < tmy and tmx < tmz:
            axis, t = 0, tmx
            cx += sx
            tmx += tdx
        elif tmy < tmz:
            axis, t = 1, tmy
            cy += sy
            tmy += tdy
        else:
            axis, t = 2, tmz
            cz += sz
            tmz += tdz
        if t > max_dist or cx < 0 or cx >= nx or cz < 0 or cz >= nz or cy < 0 or (cy > top and dy >= 0.0):
            break
        block = view[cx, cy, cz] if cy < ny else B.AIR
        if block == B.WATER:
            if not in_water:
                in_water = True
                t_enter = t
                if dy < 0.0:  # entering from above: the surface mirrors some sky
                    acc_r += trans * _WATER_SURFACE * sr
                    acc_g += trans * _WATER_SURFACE * sg
                    acc_b += trans * _WATER_SURFACE * sb
                    trans *= 1.0 - _WATER_SURFACE
            continue
        if in_water:  # leaving water: it absorbed and scattered along [t_enter, t]
            a = 1.0 - math.exp(-_WATER_ABSORB * (t - t_enter))
            acc_r += trans * a * _WATER_COLOUR[0]
            acc_g += trans * a * _WATER_COLOUR[1]
            acc_b += trans * a * _WATER_COLOUR[2]
            trans *= 1.0 - a
            in_water = False
        if block == B.AIR:
            continue
        hx, hy, hz = px + dx * t, py + dy * t, pz + dz * t
        r, g, b, alpha = _texel(atlas, block, axis, -1 if (axis == 0 and sx < 0) or (axis == 1 and sy < 0)
                                or (axis == 2 and sz < 0) else 1, hx, hy, hz)
        if alpha < 0.5:
            if block == B.GLASS:
                trans_r *= _GLASS_TINT
                trans_g *= _GLASS_TINT
            continue
        shade = _SHADE_X if axis == 0 else (_SHADE_Z if axis == 2 else (_SHADE_TOP if sy < 0 else _SHADE_BOTTOM))
        fog = min(max((t - fog_start) / (max_dist - fog_start), 0.0), 1.0)
        fog = fog * fog
        r = r * shade * (1.0 - fog) + sr * fog
        g = g * shade * (1.0 - fog) + sg * fog
        b = b * shade * (1.0 - fog) + sb * fog
        return acc_r + trans * trans_r * r, acc_g + trans * trans_g * g, acc_b + trans * trans_b * b
    if in_water:  # the ray ended under water: water all the way
        a = 1.0 - math.exp(-_WATER_ABSORB * (min(t, max_dist) - t_enter))
        acc_r += trans * a * _WATER_COLOUR[0]
        acc_g += trans * a * _WATER_COLOUR[1]
        acc_b += trans * a * _WATER_COLOUR[2]
        trans *= 1.0 - a
    return acc_r + trans * trans_r * sr, acc_g + trans * trans_g * sg, acc_b + trans * trans_b * sb


@nb.njit(cache=True, parallel=True)
def render(view: np.ndarray, top: int, px: float, py: float, pz: float, yaw: float, pitch: float,
           width: int, height: int, fov_deg: float, max_dist: float, fog_start: float,
           atlas: np.ndarray) -> np.ndarray:
    """uint8 [height, width, 3] seen from (px, py, pz) in view coordinates; vertical field of view."""
    fwd, right, up = camera_basis(yaw, pitch)
    half = math.tan(math.radians(fov_deg) * 0.5)
    aspect = width / height
    out = np.empty((height, width, 3), np.uint8)
    for i in nb.prange(height):
        sy_ = (1.0 - (i + 0.5) * 2.0 / height) * half
        for j in range(width):
            sx_ = ((j + 0.5) * 2.0 / width - 1.0) * half * aspect
            dx = fwd[0] + sx_ * right[0] + sy_ * up[0]
            dy = fwd[1] + sx_ * right[1] + sy_ * up[1]
            dz = fwd[2] + sx_ * right[2] + sy_ * up[2]
            n = math.sqrt(dx * dx + dy * dy + dz * dz)
            r, g, b = trace(view, top, px, py, pz, dx / n, dy / n, dz / n, max_dist, fog_start, atlas)
            out[i, j, 0] = np.uint8(min(r * 255.0 + 0.5, 255.0))
            out[i, j, 1] = np.uint8(min(g * 255.0 + 0.5, 255.0))
            out[i, j, 2] = np.uint8(min(b * 255.0 + 0.5, 255.0))
    return out


@nb.njit(cache=True)
def pick(view: np.ndarray, solid: np.ndarray, px: float, py: float, pz: float, dx: float, dy: float, dz: float,
         reach: float) -> tuple:
    """First solid block along a unit ray within `reach`: (hit, x, y, z, nx, ny, nz) in view
    coordinates, (nx, ny, nz) the normal of the face entered (where a placed block goes)."""
    nx_, ny_, nz_ = view.shape
    cx, cy, cz = int(math.floor(px)), int(math.floor(py)), int(math.floor(pz))
    sx = 1 if dx > 0 else -1
    sy = 1 if dy > 0 else -1
    sz = 1 if dz > 0 else -1
    inf = 1e30
    tdx = abs(1.0 / dx) if dx != 0.0 else inf
    tdy = abs(1.0 / dy) if dy != 0.0 else inf
    tdz = abs(1.0 / dz) if dz != 0.0 else inf
    tmx = ((cx + 1 - px) if sx > 0 else (px - cx)) * tdx if dx != 0.0 else inf
    tmy = ((cy + 1 - py) if sy > 0 else (py - cy)) * tdy if dy != 0.0 else inf
    tmz = ((cz + 1 - pz) if sz > 0 else (pz - cz)) * tdz if dz != 0.0 else inf
    while True:
        if tmx < tmy and tmx < tmz:
            t = tmx
            cx += sx
            tmx += tdx
            n = (-sx, 0, 0)
        elif tmy < tmz:
            t = tmy
            cy += sy
            tmy += tdy
            n = (0, -sy, 0)
        else:
            t = tmz
            cz += sz
            tmz += tdz
            n = (0, 0, -sz)
        if t > reach or cx < 0 or cx >= nx_ or cz < 0 or cz >= nz_ or cy < 0 or cy >= ny_:
            return False, 0, 0, 0, 0, 0, 0
        if solid[view[cx, cy, cz]]:
            return True, cx, cy, cz, n[0], n[1], n[2]
