"""Frame-quality metrics shared by every evaluation: PSNR, SSIM, sharpness.

All take uint8 RGB frames `[..., H, W, 3]` (numpy arrays or tensors) and return one float per
frame as a float64 numpy array of the leading shape.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _as_float(frames) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float64 [N, 3, H, W] in 0..255, and the leading shape."""
    t = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames)
    if t.shape[-1] != 3:
        raise ValueError(f"expected RGB frames [..., H, W, 3], got shape {tuple(t.shape)}")
    lead = t.shape[:-3]
    return t.reshape(-1, *t.shape[-3:]).permute(0, 3, 1, 2).to(torch.float64), lead  # [N, 3, H, W]


def psnr(a, b) -> np.ndarray:
    """Peak signal-to-noise ratio in dB per frame (capped at 100 dB for identical frames)."""
    x, lead = _as_float(a)
    y, _ = _as_float(b)
    mse = ((x - y) ** 2).mean(dim=(1, 2, 3))
    out = 10 * torch.log10(255.0**2 / mse.clamp_min(255.0**2 * 1e-10))
    return out.numpy().reshape(lead)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size, dtype=torch.float64) - size // 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]  # [1, 1, size, size]


def ssim(a, b) -> np.ndarray:
    """Structural similarity per frame (Wang et al. 2004: 11x11 Gaussian, sigma 1.5), mean over RGB."""
    x, lead = _as_float(a)
    y, _ = _as_float(b)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    size = min(11, x.shape[-1], x.shape[-2])
    w = _gaussian_window(size).repeat(3, 1, 1, 1)  # [3, 1, k, k], one per channel

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, w, groups=3)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return s.mean(dim=(1, 2, 3)).numpy().reshape(lead)


def edge_map(x: torch.Tensor) -> torch.Tensor:
    """|Laplacian| of the grey image of RGB [N, 3, H, W] (any float scale and dtype; differentiable)
    -> [N, 1, H-2, W-2]. Its mean over a frame is `sharpness`; the tokenizer's edge-energy loss
    averages it per region."""
    grey = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    lap = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=x.dtype, device=x.device)
    return F.conv2d(grey, lap[None, None]).abs()


def sharpness(frames) -> np.ndarray:
    """Mean absolute Laplacian of the grey image (0..255 scale): higher is crisper."""
    x, lead = _as_float(frames)
    return edge_map(x).mean(dim=(1, 2, 3)).numpy().reshape(lead)


def down_up(frames, factor: int) -> np.ndarray:
    """Blur uint8 frames [..., H, W, 3] by averaging factor x factor blocks and scaling back up (bilinear):
    the blur of a model that draws at 1/factor of the resolution. Same shape and dtype out."""
    x, lead = _as_float(frames)
    H, W = x.shape[-2:]
    y = F.interpolate(F.avg_pool2d(x, factor), size=(H, W), mode="bilinear", align_corners=False)  # [N, 3, H, W]
    return y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).reshape(*lead, H, W, 3).numpy()


def frechet_distance(features_a, features_b) -> float:
    """Frechet distance between Gaussians fitted to two feature sets `[N, D]` (as in FID):
    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2). Zero for identical sets.

    The matrix square root goes through symmetric eigendecompositions (no scipy needed);
    tiny negative eigenvalues from rounding are clipped to zero."""
    a = torch.as_tensor(np.asarray(features_a), dtype=torch.float64)
    b = torch.as_tensor(np.asarray(features_b), dtype=torch.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected two feature sets [N, D] with equal D, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError(f"need at least 2 samples per set for a covariance, got {a.shape[0]} and {b.shape[0]}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)  # [D, D]

    def sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
        vals, vecs = torch.linalg.eigh((m + m.T) / 2)
        return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T

    root_a = sqrtm_psd(cov_a)
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    return float(((mu_a - mu_b) ** 2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * cross)
