"""Sampling from a trained generator and writing image grids."""

from __future__ import annotations

import math
import os
from typing import Any

import jax
import numpy as np
from PIL import Image

from gan_jax.state import GAN, GANState


def sample(gan: GAN, state: GANState, z: jax.Array, *, use_ema: bool = True) -> jax.Array:
  """Generates images from latents with G in inference mode (BatchNorm running averages).

  Args:
    gan: static G/D definitions.
    state: training state; its `ema_params` are used when `use_ema`, else `g_params`.
    z: float32 `[N, latent_dim]`.
    use_ema: sample from the EMA generator (Yazici et al. 2019).

  Returns:
    float32 `[N, H, W, C]` in [-1, 1].
  """
  params = state.ema_params if use_ema else state.g_params
  images, _ = gan.generate(params, state.g_batch_stats, z, train=False)
  return images


def to_uint8(images: Any) -> np.ndarray:
  """Maps float images in [-1, 1] to uint8 [0, 255] (values outside are clipped)."""
  x = np.asarray(images, np.float32)
  return np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def make_grid(images: Any, ncol: int | None = None, pad: int = 2) -> np.ndarray:
  """Tiles images into one picture.

  Args:
    images: float `[N, H, W, C]` in [-1, 1] (C = 1 or 3).
    ncol: images per row (default: ceil(sqrt(N))).
    pad: pixels of black border between images.

  Returns:
    uint8 `[rows * (H + pad) + pad, ncol * (W + pad) + pad, C]`.

  Raises:
    ValueError: if `images` is not 4-D with 1 or 3 channels.
  """
  x = to_uint8(images)
  if x.ndim != 4 or x.shape[-1] not in (1, 3):
    raise ValueError(f'images must be [N, H, W, 1 or 3], got {x.shape}.')
  n, h, w, c = x.shape
  ncol = ncol or math.ceil(math.sqrt(n))
  nrow = math.ceil(n / ncol)
  grid = np.zeros((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), np.uint8)
  for i in range(n):
    r, q = divmod(i, ncol)
    grid[
      pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w
    ] = x[i]
  return grid


def save_grid(path: str, images: Any, ncol: int | None = None, scale: int = 1) -> str:
  """Writes `make_grid(images, ncol)` as a PNG (grayscale or RGB), upscaled by `scale`.

  Returns:
    the path written.
  """
  grid = make_grid(images, ncol)
  img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
  if scale > 1:
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  img.save(path)
  return path
