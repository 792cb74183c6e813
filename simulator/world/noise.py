"""Deterministic 2D value noise for terrain, compiled with numba.

Everything is integer hashing (uint64, wrapping) plus float64 arithmetic without fastmath, so
the same seed gives the same terrain on every machine. Each noise field gets its own
`channel`, so fields derived from one world seed are independent.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53


@nb.njit(cache=True)
def mix64(h: np.uint64) -> np.uint64:
    """splitmix64 finaliser."""
    h = (h ^ (h >> _S30)) * _M1
    h = (h ^ (h >> _S27)) * _M2
    return h ^ (h >> _S31)


@nb.njit(cache=True)
def hash3(seed: np.int64, channel: np.int64, x: np.int64, z: np.int64) -> np.uint64:
    """A 64-bit hash of (seed, channel, x, z); negative coordinates are fine."""
    h = mix64(np.uint64(seed) + _GOLD * np.uint64(channel + 1))
    h = mix64(h ^ (np.uint64(x) * _M1))
    return mix64(h ^ (np.uint64(z) * _M2))


@nb.njit(cache=True)
def hash_unit(seed: np.int64, channel: np.int64, x: np.int64, z: np.int64) -> float:
    """Uniform in [0, 1) from (seed, channel, x, z)."""
    return float(hash3(seed, channel, x, z) >> _S11) * _INV53


@nb.njit(cache=True)
def _smooth(t: float) -> float:
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)  # quintic fade: C2-continuous


@nb.njit(cache=True)
def value_noise(seed: np.int64, channel: np.int64, x: float, z: float) -> float:
    """Smooth value noise in [0, 1) with one lattice cell per unit of (x, z)."""
    x0 = np.int64(np.floor(x))
    z0 = np.int64(np.floor(z))
    fx = _smooth(x - x0)
    fz = _smooth(z - z0)
    a = hash_unit(seed, channel, x0, z0)
    b = hash_unit(seed, channel, x0 + 1, z0)
    c = hash_unit(seed, channel, x0, z0 + 1)
    d = hash_unit(seed, channel, x0 + 1, z0 + 1)
    top = a + (b - a) * fx
    bottom = c + (d - c) * fx
    return top + (bottom - top) * fz


@nb.njit(cache=True)
def fbm(seed: np.int64, channel: np.int64, x: float, z: float, scale: float, octaves: np.int64) -> float:
    """Fractal sum of value noise, feature size `scale` blocks, normalised to [0, 1)."""
    total = 0.0
    norm = 0.0
    amp = 1.0
    freq = 1.0 / scale
    for o in range(octaves):
        # each octave its own channel and offset, so octaves don't line up at the origin
        total += amp * value_noise(seed, channel * 16 + o, x * freq + 17.31 * o, z * freq - 9.73 * o)
        norm += amp
        amp *= 0.5
        freq *= 2.0
    return total / norm
