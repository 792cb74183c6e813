"""Camera following without the IDM: how far does the generated image turn when the engine's does?

Turning the camera moves the whole image: yaw shifts it sideways, pitch up and down. So the
image shift between consecutive frames, estimated the same way on the engine's frames and on the
generated frames driven by the same actions, says directly whether the model turns, how far and
which way, with no learned referee that a blurry frame could fool. Per tick we get the engine's
shift e and the model's g (pixels, per axis); per horizon band we report

- `slope`: least-squares slope of g on e (1 = turns as far as the engine, 0 = ignores the camera,
  negative = turns the wrong way), and `corr`, their Pearson correlation;
- `sign_agreement`: on the ticks where the engine turns by more than `turn_px` pixels, the share
  on which the model's image moved the same way by at least `agree_px` (a frozen or merely
  jittering image scores ~0, a random turn under 0.5);
- `px_per_degree`: the slope of each stream's shift on the commanded camera move (degrees), the
  engine's own calibration beside the model's.

The shift is found by phase correlation of the grey frames (numpy FFT, Hann window) with a
parabolic sub-pixel peak. The spectrum is whitened only partly (`whiten`): full whitening lets the
noise of a blurry frame's empty high frequencies pick the peak.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from simulator.actions import Action
from simulator.eval.fidelity import FD_BANDS
from simulator.eval.rollouts import Rollouts

AXES: tuple[str, ...] = ("yaw", "pitch")  # yaw moves the image along x, pitch along y


@dataclass
class ShiftConfig:
    max_shift: int = 24  # pixels: peaks further than this are not searched (20 degrees ~ 16 px at 64 px, 70 deg fov)
    whiten: float = 0.75  # cross-power spectrum divided by |.|^whiten: 1 = phase correlation, 0 = plain correlation
    sigma: float = 1.5  # pixels: both frames are Gaussian-blurred first, so a sharp and a blurry stream are read alike
    turn_px: float = 1.0  # sign agreement counts the ticks where the engine's image moves by more than this
    agree_px: float = 0.25  # ... and on them, the model's image must move the same way by at least this


def _taper(n: int, share: float = 0.25) -> np.ndarray:
    """A window flat in the middle with cosine ramps over `share` of each end (Tukey): a full Hann window
    would weight the centre so much that the correlation peak is pulled towards zero shift."""
    ramp = max(int(n * share), 1)
    w = np.ones(n)
    w[:ramp] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)
    w[n - ramp:] = w[:ramp][::-1]
    return w


def _grey(frames: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, 3] -> float64 [N, H, W] zero-mean grey, edges tapered (no wrap-around edge)."""
    g = frames.astype(np.float64) @ np.array([0.299, 0.587, 0.114])  # [N, H, W]
    g -= g.mean(axis=(1, 2), keepdims=True)
    H, W = g.shape[1:]
    return g * np.outer(_taper(H), _taper(W))


def _subpixel(c_minus: np.ndarray, c0: np.ndarray, c_plus: np.ndarray) -> np.ndarray:
    """Offset of a parabola's vertex through (-1, c_minus), (0, c0), (1, c_plus), clipped to +-0.5."""
    denom = c_minus - 2 * c0 + c_plus
    safe = np.where(np.abs(denom) > 1e-12, denom, -1.0)
    return np.clip(np.where(np.abs(denom) > 1e-12, 0.5 * (c_minus - c_plus) / safe, 0.0), -0.5, 0.5)


def image_shift(prev: np.ndarray, cur: np.ndarray, config: ShiftConfig = ShiftConfig()) -> np.ndarray:
    """How far the content moved from `prev` to `cur` (uint8 [N, H, W, 3] each): float64 [N, 2] = (dx, dy)
    pixels, +dx = to the right, +dy = down (so cur(x, y) ~ prev(x - dx, y - dy)). Identical frames give 0."""
    if prev.shape != cur.shape or prev.ndim != 4:
        raise ValueError(f"expected two frame stacks [N, H, W, 3] of one shape, got {prev.shape} and {cur.shape}")
    N, H, W = prev.shape[:3]
    cross = np.fft.fft2(_grey(cur)) * np.conj(np.fft.fft2(_grey(prev)))  # [N, H, W]
    f2 = np.fft.fftfreq(H)[:, None] ** 2 + np.fft.fftfreq(W)[None, :] ** 2  # [H, W] squared frequency, cycles / px
    lowpass = np.exp(-4 * np.pi**2 * config.sigma**2 * f2)  # both frames blurred: the Gaussian's transfer squared
    surface = np.fft.ifft2(cross / (np.abs(cross) ** config.whiten + 1e-9) * lowpass).real  # peaks at the shift
    window = np.outer(_taper(H), _taper(W))
    overlap = np.fft.ifft2(np.abs(np.fft.fft2(window)) ** 2).real  # [H, W]: how much of the window two shifts share
    surface = surface / np.maximum(overlap / overlap[0, 0], 0.05)  # else the shrinking overlap pulls the peak to 0
    m = min(config.max_shift, H // 2 - 1, W // 2 - 1)
    dy_range, dx_range = np.arange(-m, m + 1), np.arange(-m, m + 1)
    window = surface[:, dy_range % H][:, :, dx_range % W]  # [N, 2m + 1, 2m + 1], centred on zero shift
    flat = window.reshape(N, -1).argmax(axis=1)
    iy, ix = np.unravel_index(flat, window.shape[1:])
    rows = np.arange(N)
    py, px = dy_range[iy], dx_range[ix]
    fy = _subpixel(surface[rows, (py - 1) % H, px % W], surface[rows, py % H, px % W], surface[rows, (py + 1) % H, px % W])
    fx = _subpixel(surface[rows, py % H, (px - 1) % W], surface[rows, py % H, px % W], surface[rows, py % H, (px + 1) % W])
    out = np.stack([px + fx, py + fy], axis=1)
    same = (prev == cur).reshape(N, -1).all(axis=1)  # a frozen image has no peak worth reading: exactly 0
    out[same] = 0.0
    return out


def clip_shifts(clips: np.ndarray, config: ShiftConfig = ShiftConfig()) -> np.ndarray:
    """Shift of every transition of clips uint8 [E, T, H, W, 3] -> float64 [E, T - 1, 2] (dx, dy)."""
    E, T = clips.shape[:2]
    prev = clips[:, :-1].reshape(-1, *clips.shape[2:])  # [E * (T - 1), H, W, 3]
    cur = clips[:, 1:].reshape(-1, *clips.shape[2:])
    return image_shift(prev, cur, config).reshape(E, T - 1, 2)


def commanded(actions: list[Action]) -> np.ndarray:
    """(yaw, pitch) degrees of each action -> float64 [T, 2]."""
    return np.array([(a.yaw, a.pitch) for a in actions], np.float64).reshape(-1, 2)


def _fit(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Least-squares slope of y on x and Pearson correlation (NaN where either does not vary)."""
    nan = float("nan")
    if len(x) < 2 or np.ptp(x) == 0:
        return {"slope": nan, "corr": nan}
    xc, yc = x - x.mean(), y - y.mean()
    slope = float((xc * yc).sum() / (xc * xc).sum())
    corr = float((xc * yc).sum() / np.sqrt((xc * xc).sum() * (yc * yc).sum())) if np.ptp(y) > 0 else nan
    return {"slope": slope, "corr": corr}


def following(engine: np.ndarray, generated: np.ndarray, degrees: np.ndarray, config: ShiftConfig) -> dict:
    """Figures for one axis over a set of ticks: engine / generated shift (px) and commanded move (degrees), [N] each."""
    turning = np.abs(engine) > config.turn_px
    agree = generated[turning] * np.sign(engine[turning]) >= config.agree_px
    return {**_fit(engine, generated), "ticks": int(len(engine)), "turning_ticks": int(turning.sum()),
            "sign_agreement": float(agree.mean()) if turning.any() else float("nan"),
            "engine_px_per_degree": _fit(degrees, engine)["slope"],
            "generated_px_per_degree": _fit(degrees, generated)["slope"]}


def _band_figures(eng: np.ndarray, gen: np.ndarray, cmd: np.ndarray, config: ShiftConfig) -> dict:
    """Per horizon band and over all horizons, from shifts [E, horizon, 2] (px) and commanded moves (degrees)."""
    H = eng.shape[1]

    def figures(lo: int, hi: int) -> dict:
        sl = slice(lo - 1, hi)  # transition h drove frame h: index h - 1
        return {axis: following(eng[:, sl, i].ravel(), gen[:, sl, i].ravel(), cmd[:, sl, i].ravel(), config)
                for i, axis in enumerate(AXES)}

    bands = [{"band": [lo, min(hi, H)], **figures(lo, min(hi, H))} for lo, hi in FD_BANDS if lo <= H]
    return {"bands": bands, "all": {"band": [1, H], **figures(1, H)}}


def camera_following(rollouts: Rollouts, references: dict[str, np.ndarray] | None = None,
                     config: ShiftConfig = ShiftConfig()) -> dict:
    """Image-shift figures of the generated frames against the engine's, per horizon band and over all
    horizons; the same for copy-last (which never turns) and for each of `references` (name -> frames
    [E, horizon + 1, H, W, 3] aligned with `rollouts.true`, e.g. the true frames through the tokenizer:
    what a model that turns exactly right but draws through the tokenizer would score).

    Returns {"config", "methods": {name: {"bands": [{"band": [lo, hi], "yaw": {...}, "pitch": {...}}],
    "all": {...}}}, "shifts": {"engine", "model": [E][horizon][2] px, "commanded": [E][horizon][2] degrees}}."""
    eng, gen = clip_shifts(rollouts.true, config), clip_shifts(rollouts.generated, config)  # [E, horizon, 2]
    cmd = np.stack([commanded(acts) for acts in rollouts.actions])  # [E, horizon, 2] degrees
    methods = {"model": _band_figures(eng, gen, cmd, config),
               "copy-last": _band_figures(eng, np.zeros_like(eng), cmd, config)}
    for name, frames in (references or {}).items():
        methods[name] = _band_figures(eng, clip_shifts(frames, config), cmd, config)
    shifts = {"engine": eng, "model": gen, "commanded": cmd}  # kept for the scatter chart, as nested lists
    return {"config": asdict(config), "methods": methods, "shifts": {k: np.round(v, 3).tolist() for k, v in shifts.items()}}

