import numpy as np

from simulator.eval.metrics import psnr, sharpness, ssim


def test_metrics_on_known_frames():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + 10, 0, 255).astype(np.uint8)
    assert psnr(a, a).shape == (2,) and np.all(psnr(a, a) >= 99)
    assert 27 < psnr(a, b)[0] < 29  # mse <= 100 -> >= 28.1 dB
    assert np.allclose(ssim(a, a), 1.0) and np.all(ssim(a, b) < 1.0)
    flat = np.full((16, 16, 3), 128, np.uint8)
    assert sharpness(flat) == 0 and sharpness(a[0]) > 10
