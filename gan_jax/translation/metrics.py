"""PSNR and SSIM of translated images, computed by dm-pix (DeepMind's JAX image library).

Both take images float `[N, H, W, C]` in [-1, 1], map them to [0, 1] (x + 1) / 2 (dynamic
range 1, dm-pix's convention), score each image against its target and average over images:

* PSNR (dB) = 10 log10(1 / MSE) per image (`dm_pix.psnr`), averaged over the N images (the
  mean of per-image PSNR, as image-restoration papers report it, not the PSNR of the pooled
  MSE). A pair of identical images has PSNR = inf.
* SSIM (Wang et al. 2004) per image (`dm_pix.ssim`: 11x11 Gaussian window, sigma 1.5, k1 =
  0.01, k2 = 0.03, 'valid' filtering, averaged over positions and channels), averaged over
  the N images; in [-1, 1], 1 for identical images.
"""

from __future__ import annotations

from typing import Any

import dm_pix
import jax.numpy as jnp
import numpy as np


def _prepare(images: Any, targets: Any) -> tuple[jnp.ndarray, jnp.ndarray]:
  a, b = np.asarray(images, np.float32), np.asarray(targets, np.float32)
  if a.ndim != 4 or a.shape != b.shape:
    raise ValueError(
      f'PSNR/SSIM need images and targets of one shape [N, H, W, C], got {a.shape} and {b.shape}.'
    )
  return jnp.asarray((a + 1.0) / 2.0), jnp.asarray((b + 1.0) / 2.0)


def psnr_per_image(images: Any, targets: Any) -> np.ndarray:
  """float64 `[N]`: PSNR in dB of each image against its target (both in [-1, 1])."""
  a, b = _prepare(images, targets)
  return np.asarray(dm_pix.psnr(a, b), np.float64)


def ssim_per_image(images: Any, targets: Any) -> np.ndarray:
  """float64 `[N]`: SSIM of each image against its target (both in [-1, 1])."""
  a, b = _prepare(images, targets)
  return np.asarray(dm_pix.ssim(a, b, max_val=1.0), np.float64)


def image_quality(images: Any, targets: Any) -> dict[str, float]:
  """{'psnr': mean PSNR (dB), 'ssim': mean SSIM} of `images` against `targets`, both float
  `[N, H, W, C]` in [-1, 1].

  Raises:
    ValueError: if the shapes differ or are not 4-D.
  """
  return {
    'psnr': float(np.mean(psnr_per_image(images, targets))),
    'ssim': float(np.mean(ssim_per_image(images, targets))),
  }
