"""Training objectives of the tokenizer: reconstruction (L1 + image-gradient), KL, a local
edge-energy L1, and an optional patch discriminator (hinge GAN, with optional feature matching).

Why: L1/L2 alone are minimised by the conditional mean, which smears the 8x8 block textures into
fog (FINDINGS.md: reconstructions at 30% of true sharpness). An L1 on finite differences
penalises lost edges where they are, which measured no better than L1 alone. The edge-energy
term asks each region for the true frame's edge contrast wherever in the region it sits, and
traded PSNR for sharpness at a better rate than the discriminator (docs/training.md). Each is
optional and kept where it measurably helps.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from simulator.eval.metrics import edge_map


def image_gradients(x: Tensor) -> tuple[Tensor, Tensor]:
    """Finite differences of [B, 3, H, W]: (d/dx [B, 3, H, W-1], d/dy [B, 3, H-1, W])."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def gradient_l1(recon: Tensor, target: Tensor) -> Tensor:
    """Mean L1 between the image gradients of `recon` and `target` (both [B, 3, H, W])."""
    rx, ry = image_gradients(recon)
    tx, ty = image_gradients(target)
    return 0.5 * ((rx - tx).abs().mean() + (ry - ty).abs().mean())


def edge_energy_l1(recon: Tensor, target: Tensor, window: int = 8) -> Tensor:
    """L1 between the local edge energies of `recon` and `target` ([B, 3, H, W]): the mean absolute
    Laplacian of the grey image (`simulator.eval.metrics.edge_map`, whose mean over a frame is the
    evaluation's sharpness) over each window x window region. It asks for as much edge contrast as
    the true frame has in each region, not for the edges to sit on the true frame's pixels: a blur
    pays where it loses contrast, where L1 alone prefers it."""
    def energy(x: Tensor) -> Tensor:
        return F.avg_pool2d(edge_map(x.float()), window, ceil_mode=True)

    return (energy(recon) - energy(target)).abs().mean()


def kl_divergence(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) per latent element, averaged."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()


class PatchDiscriminator(nn.Module):
    """A small PatchGAN: [B, in_channels, H, W] in [-1, 1] -> logits [B, 1, H/8, W/8], one per ~22 px
    patch. in_channels 3 judges a frame; 6 a (previous frame, frame) pair, i.e. the frame in context."""

    def __init__(self, channels: int = 32, layers: int = 3, in_channels: int = 3):
        super().__init__()
        mods: list[nn.Module] = []
        c_in = in_channels
        for i in range(layers):
            c_out = channels * 2**i
            mods += [nn.utils.parametrizations.spectral_norm(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)),
                     nn.LeakyReLU(0.2)]
            c_in = c_out
        mods.append(nn.Conv2d(c_in, 1, 3, padding=1))
        self.net = nn.Sequential(*mods)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def features(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """The activations after each LeakyReLU, and the logits (what `forward` returns)."""
        feats = []
        for mod in self.net:
            x = mod(x)
            if isinstance(mod, nn.LeakyReLU):
                feats.append(x)
        return feats, x


def feature_matching_loss(fake_feats: list[Tensor], real_feats: list[Tensor]) -> Tensor:
    """pix2pixHD's feature matching: mean over the discriminator's layers of the L1 between its
    activations on the reconstruction and on the true frame (held fixed). Unlike the hinge verdict,
    it says where the reconstruction differs, in features the discriminator learned to tell apart."""
    return sum((f.float() - r.detach().float()).abs().mean() for f, r in zip(fake_feats, real_feats)) / len(fake_feats)


def hinge_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def hinge_g_loss(fake_logits: Tensor) -> Tensor:
    return -fake_logits.mean()


def reconstruction_loss(recon: Tensor, target: Tensor, gradient_weight: float) -> tuple[Tensor, dict[str, float]]:
    """L1 + gradient_weight * gradient L1, and its parts for logging."""
    l1 = (recon - target).abs().mean()
    grad = gradient_l1(recon, target) if gradient_weight > 0 else recon.new_zeros(())
    return l1 + gradient_weight * grad, {"l1": float(l1.detach()), "grad": float(grad.detach())}
