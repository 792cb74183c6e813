"""First-person voxel ray casting (Amanatides-Woo DDA), compiled with numba.

One ray per pixel walks the grid cell by cell through the loaded view of the world
(`VoxelStore.view`, uint8 [X, H, Z] indexed [x, y, z]). At the first opaque texel it shades
the face (per-face light, 8x8 texture), blends distance fog toward the sky and stops. Water
is not a wall: the ray goes on through it, losing light and picking up blue with each block
of water it crosses. See-through texels (glass, gaps in leaves) let the ray go on too.

Rows can be rendered in parallel (`render_parallel`, prange); every pixel is computed on its own
from the same inputs in the same order, so frames are bit-identical whatever the thread count.
No fastmath. Threads pay off only for big frames on an idle machine: a 64x64 frame is ~4 ms of
work, and on a loaded 2-core box a barrier per frame costs more than it saves.
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
_INF = 1e30
MACRO = 4  # columns per macro cell edge: empty-space skipping granularity


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
def _visit(atlas: np.ndarray, block: int, axis: int, step: int, t: float, px: float, py: float, pz: float,
           dx: float, dy: float, dz: float, sr: float, sg: float, sb: float, max_dist: float, fog_start: float,
           acc_r: float, acc_g: float, acc_b: float, trans: float, tint: float, in_water: bool,
           t_enter: float) -> tuple:
    """The ray enters a cell holding `block` at distance t through a face crossed along `axis`.

    State carried along the ray: acc_* = light gathered in front of the surface (water),
    trans = share of what lies behind that still reaches the eye, tint = glass filter on red and
    green, in_water/t_enter = inside water since t_enter. Returns (done, state...); when done,
    acc_* is the final colour."""
    if block == B.WATER:
        if not in_water:
            in_water = True
            t_enter = t
            if dy < 0.0 and axis == 1:  # entering through the top: the surface mirrors some sky
                acc_r += trans * _WATER_SURFACE * sr
                acc_g += trans * _WATER_SURFACE * sg
                acc_b += trans * _WATER_SURFACE * sb
                trans *= 1.0 - _WATER_SURFACE
        return False, acc_r, acc_g, acc_b, trans, tint, in_water, t_enter
    if in_water:  # leaving water: it absorbed and scattered along [t_enter, t]
        a = 1.0 - math.exp(-_WATER_ABSORB * (t - t_enter))
        acc_r += trans * a * _WATER_COLOUR[0]
        acc_g += trans * a * _WATER_COLOUR[1]
        acc_b += trans * a * _WATER_COLOUR[2]
        trans *= 1.0 - a
        in_water = False
    if block == B.AIR:
        return False, acc_r, acc_g, acc_b, trans, tint, in_water, t_enter
    r, g, b, alpha = _texel(atlas, block, axis, step, px + dx * t, py + dy * t, pz + dz * t)
    if alpha < 0.5:
        if block == B.GLASS:
            tint *= _GLASS_TINT
        return False, acc_r, acc_g, acc_b, trans, tint, in_water, t_enter
    shade = _SHADE_X if axis == 0 else (_SHADE_Z if axis == 2 else (_SHADE_TOP if step < 0 else _SHADE_BOTTOM))
    fog = min(max((t - fog_start) / (max_dist - fog_start), 0.0), 1.0)
    fog = fog * fog
    r = r * shade * (1.0 - fog) + sr * fog
    g = g * shade * (1.0 - fog) + sg * fog
    b = b * shade * (1.0 - fog) + sb * fog
    return True, acc_r + trans * tint * r, acc_g + trans * tint * g, acc_b + trans * b, trans, tint, in_water, \
        t_enter


@nb.njit(cache=True)
def _sky_behind(t: float, sr: float, sg: float, sb: float, acc_r: float, acc_g: float, acc_b: float,
                trans: float, tint: float, in_water: bool, t_enter: float) -> tuple:
    """Final colour of a ray that ends at distance t without an opaque hit."""
    if in_water:  # water all the way to the end of the ray
        a = 1.0 - math.exp(-_WATER_ABSORB * (t - t_enter))
        acc_r += trans * a * _WATER_COLOUR[0]
        acc_g += trans * a * _WATER_COLOUR[1]
        acc_b += trans * a * _WATER_COLOUR[2]
        trans *= 1.0 - a
    return acc_r + trans * tint * sr, acc_g + trans * tint * sg, acc_b + trans * sb


@nb.njit(cache=True)
def trace_reference(view: np.ndarray, top: int, px: float, py: float, pz: float, dx: float, dy: float, dz: float,
                    max_dist: float, fog_start: float, atlas: np.ndarray) -> tuple:
    """Colour (r, g, b) in [0, 1] along one unit ray from (px, py, pz): plain 3D DDA, one cell per step.
    The reference that `trace` (which skips empty columns) is tested against."""
    nx, ny, nz = view.shape
    cx, cy, cz = int(math.floor(px)), int(math.floor(py)), int(math.floor(pz))
    sx = 1 if dx > 0 else -1
    sy = 1 if dy > 0 else -1
    sz = 1 if dz > 0 else -1
    tdx = abs(1.0 / dx) if dx != 0.0 else _INF
    tdy = abs(1.0 / dy) if dy != 0.0 else _INF
    tdz = abs(1.0 / dz) if dz != 0.0 else _INF
    tmx = (cx + (sx > 0) - px) / dx if dx != 0.0 else _INF
    tmy = (cy + (sy > 0) - py) / dy if dy != 0.0 else _INF
    tmz = (cz + (sz > 0) - pz) / dz if dz != 0.0 else _INF
    sr, sg, sb = sky(dx, dy, dz)
    acc_r, acc_g, acc_b, trans, tint, t_enter = 0.0, 0.0, 0.0, 1.0, 1.0, 0.0
    in_water = 0 <= cx < nx and 0 <= cy < ny and 0 <= cz < nz and view[cx, cy, cz] == B.WATER
    t = 0.0
    while True:
        if tmx < tmy and tmx < tmz:
            axis, t, step = 0, tmx, sx
            cx += sx
            tmx += tdx
        elif tmy < tmz:
            axis, t, step = 1, tmy, sy
            cy += sy
            tmy += tdy
        else:
            axis, t, step = 2, tmz, sz
            cz += sz
            tmz += tdz
        if t > max_dist or cx < 0 or cx >= nx or cz < 0 or cz >= nz or cy < 0 or (cy > top and dy >= 0.0):
            break
        block = view[cx, cy, cz] if cy < ny else B.AIR
        done, acc_r, acc_g, acc_b, trans, tint, in_water, t_enter = _visit(
            atlas, block, axis, step, t, px, py, pz, dx, dy, dz, sr, sg, sb, max_dist, fog_start,
            acc_r, acc_g, acc_b, trans, tint, in_water, t_enter)
        if done:
            return acc_r, acc_g, acc_b
    return _sky_behind(min(t, max_dist), sr, sg, sb, acc_r, acc_g, acc_b, trans, tint, in_water, t_enter)


@nb.njit(cache=True)
def trace(view: np.ndarray, top: int, heights: np.ndarray, macro: np.ndarray, px: float, py: float, pz: float,
          dx: float, dy: float, dz: float, max_dist: float, fog_start: float, atlas: np.ndarray) -> tuple:
    """Colour (r, g, b) in [0, 1] along one unit ray: the same walk as `trace_reference`, but over
    columns (2D DDA in x, z) and, inside a column, over the y cells the ray crosses there.

    A column whose cells along the ray all lie at or above its height (heights[x, z] = 1 + the
    highest non-air y) is crossed in one step, and a whole MACRO x MACRO group of such columns
    (macro[x // MACRO, z // MACRO] = their highest height) in one step too: most of a frame is
    air, and this is where the time went."""
    nx, ny, nz = view.shape
    sx = 1 if dx > 0 else -1
    sy = 1 if dy > 0 else -1
    sz = 1 if dz > 0 else -1
    sr, sg, sb = sky(dx, dy, dz)
    acc_r, acc_g, acc_b, trans, tint, t_enter = 0.0, 0.0, 0.0, 1.0, 1.0, 0.0
    cx, cy0, cz = int(math.floor(px)), int(math.floor(py)), int(math.floor(pz))
    in_water = 0 <= cx < nx and 0 <= cy0 < ny and 0 <= cz < nz and view[cx, cy0, cz] == B.WATER
    t_in, axis_in = 0.0, -1  # where the ray entered the current column, across which axis
    while True:
        if cx < 0 or cx >= nx or cz < 0 or cz >= nz or t_in > max_dist:
            break
        tmx = (cx + (sx > 0) - px) / dx if dx != 0.0 else _INF
        tmz = (cz + (sz > 0) - pz) / dz if dz != 0.0 else _INF
        t_out = min(tmx, tmz, max_dist)
        y_low = py + dy * (t_out if dy < 0.0 else t_in)  # lowest point of the ray in this column
        if y_low >= heights[cx, cz]:
            if y_low >= top + 1 and dy >= 0.0:
                break  # above everything and rising: sky
            mx, mz = cx // MACRO, cz // MACRO
            t_mx = ((mx + (sx > 0)) * MACRO - px) / dx if dx != 0.0 else _INF
            t_mz = ((mz + (sz > 0)) * MACRO - pz) / dz if dz != 0.0 else _INF
            t_mout = min(t_mx, t_mz)
            if py + dy * (t_mout if dy < 0.0 else t_in) >= macro[mx, mz]:
                # the whole macro cell is below the ray: jump to the column where the ray leaves it
                t_in = t_mout
                if t_mx < t_mz:
                    axis_in = 0
                    cx = (mx + 1) * MACRO if sx > 0 else mx * MACRO - 1
                    cz = min(max(int(math.floor(pz + dz * t_in)), mz * MACRO), mz * MACRO + MACRO - 1)
                else:
                    axis_in = 2
                    cz = (mz + 1) * MACRO if sz > 0 else mz * MACRO - 1
                    cx = min(max(int(math.floor(px + dx * t_in)), mx * MACRO), mx * MACRO + MACRO - 1)
                continue
        else:
            # walk the y cells the ray crosses inside this column, from where it entered
            cy = min(max(int(math.floor(py + dy * t_in)), -1), ny) if axis_in >= 0 else cy0
            t, axis, step = t_in, axis_in, (sx if axis_in == 0 else sz)
            while True:
                if cy < 0 or (cy > top and dy >= 0.0):
                    return _sky_behind(t, sr, sg, sb, acc_r, acc_g, acc_b, trans, tint, in_water, t_enter)
                if axis >= 0:
                    block = view[cx, cy, cz] if cy < ny else B.AIR
                    done, acc_r, acc_g, acc_b, trans, tint, in_water, t_enter = _visit(
                        atlas, block, axis, step, t, px, py, pz, dx, dy, dz, sr, sg, sb, max_dist, fog_start,
                        acc_r, acc_g, acc_b, trans, tint, in_water, t_enter)
                    if done:
                        return acc_r, acc_g, acc_b
                t_next = (cy + (sy > 0) - py) / dy if dy != 0.0 else _INF
                if t_next >= t_out:
                    break
                t, axis, step = t_next, 1, sy
                cy += sy
        # next column
        t_in = t_out
        if t_out >= max_dist:
            break
        if tmx < tmz:
            cx += sx
            axis_in = 0
        else:
            cz += sz
            axis_in = 2
    return _sky_behind(min(t_in, max_dist), sr, sg, sb, acc_r, acc_g, acc_b, trans, tint, in_water, t_enter)


@nb.njit(cache=True)
def _render_row(out: np.ndarray, i: int, view: np.ndarray, top: int, heights: np.ndarray, macro: np.ndarray,
                px: float, py: float, pz: float, yaw: float, pitch: float, fov_deg: float, max_dist: float,
                fog_start: float, atlas: np.ndarray, reference: bool) -> None:
    """Row i of the frame `out` uint8 [H, W, 3]; each pixel depends only on the inputs, never on
    another pixel, so rows can be rendered in any order or in parallel with identical results."""
    height, width, _ = out.shape
    fwd, right, up = camera_basis(yaw, pitch)
    half = math.tan(math.radians(fov_deg) * 0.5)
    aspect = width / height
    sy_ = (1.0 - (i + 0.5) * 2.0 / height) * half
    for j in range(width):
        sx_ = ((j + 0.5) * 2.0 / width - 1.0) * half * aspect
        dx = fwd[0] + sx_ * right[0] + sy_ * up[0]
        dy = fwd[1] + sx_ * right[1] + sy_ * up[1]
        dz = fwd[2] + sx_ * right[2] + sy_ * up[2]
        n = math.sqrt(dx * dx + dy * dy + dz * dz)
        dx, dy, dz = dx / n, dy / n, dz / n
        if reference:
            r, g, b = trace_reference(view, top, px, py, pz, dx, dy, dz, max_dist, fog_start, atlas)
        else:
            r, g, b = trace(view, top, heights, macro, px, py, pz, dx, dy, dz, max_dist, fog_start, atlas)
        out[i, j, 0] = np.uint8(min(r * 255.0 + 0.5, 255.0))
        out[i, j, 1] = np.uint8(min(g * 255.0 + 0.5, 255.0))
        out[i, j, 2] = np.uint8(min(b * 255.0 + 0.5, 255.0))


@nb.njit(cache=True)
def render_serial(out: np.ndarray, view: np.ndarray, top: int, heights: np.ndarray, macro: np.ndarray,
                  px: float, py: float, pz: float, yaw: float, pitch: float, fov_deg: float, max_dist: float,
                  fog_start: float, atlas: np.ndarray, reference: bool) -> None:
    """Fill `out` uint8 [H, W, 3] with the view from (px, py, pz) (view coordinates); vertical fov."""
    for i in range(out.shape[0]):
        _render_row(out, i, view, top, heights, macro, px, py, pz, yaw, pitch, fov_deg, max_dist, fog_start, atlas,
                    reference)


@nb.njit(cache=True, parallel=True)
def render_parallel(out: np.ndarray, view: np.ndarray, top: int, heights: np.ndarray, macro: np.ndarray,
                    px: float, py: float, pz: float, yaw: float, pitch: float, fov_deg: float, max_dist: float,
                    fog_start: float, atlas: np.ndarray, reference: bool) -> None:
    """`render_serial` with rows spread over numba's threads; bit-identical output."""
    for i in nb.prange(out.shape[0]):
        _render_row(out, i, view, top, heights, macro, px, py, pz, yaw, pitch, fov_deg, max_dist, fog_start, atlas,
                    reference)


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
