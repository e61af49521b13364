"""Differentiable augmentation (DiffAugment; Zhao et al. 2020).

Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training", section 3:
the same family of random transformations T is applied to every image the discriminator
sees, real and generated, in both the D and the G update (`D(T(x))`, `D(T(G(z)))`, eqs. 3-4),
and T is differentiable so that the generator's gradient flows through it. The policies
follow the authors' official implementation (`DiffAugment_pytorch.py`), applied in the
order named:

* 'color': brightness (add U(-0.5, 0.5)), saturation (scale each pixel's deviation from its
  mean over channels by U(0, 2); the identity for 1-channel images), contrast (scale the
  deviation from the image's mean over all pixels and channels by U(0.5, 1.5)).
* 'translation': shift by integers in [-s, s] along each axis, s = round(size / 8), filling
  with zeros.
* 'cutout': zero a square of round(size / 2) pixels on a side, centred at a random pixel and
  clipped at the borders.

Every image of the batch gets its own random parameters. The official policy for unconditional
GANs is 'color,translation,cutout' (`DEFAULT_POLICY`).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

DEFAULT_POLICY = 'color,translation,cutout'
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def _uniform(key: jax.Array, x: jax.Array, low: float, high: float) -> jax.Array:
  """Per-image U(low, high), shaped `[B, 1, 1, 1]` to broadcast over x."""
  return jax.random.uniform(key, (x.shape[0], 1, 1, 1), x.dtype, low, high)


def _color(x: jax.Array, key: jax.Array) -> jax.Array:
  kb, ks, kc = jax.random.split(key, 3)
  x = x + _uniform(kb, x, -0.5, 0.5)
  mean = jnp.mean(x, axis=3, keepdims=True)
  x = (x - mean) * _uniform(ks, x, 0.0, 2.0) + mean
  mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  return (x - mean) * _uniform(kc, x, 0.5, 1.5) + mean


def _max_shift(size: int) -> int:
  return int(size * TRANSLATION_RATIO + 0.5)


def _cutout_size(size: int) -> int:
  return int(size * CUTOUT_RATIO + 0.5)


def translate(images: jax.Array, shifts: jax.Array) -> jax.Array:
  """Shifts each image by whole pixels, filling the uncovered border with zeros.

  `out[b, i, j] = images[b, i - dy, j - dx]` where that pixel exists, else 0: `np.roll` by
  (dy, dx) over (H, W) with zeros instead of wrap-around. Differentiable in `images`
  (a padded dynamic slice per image).

  Args:
    images: float `[B, H, W, C]`.
    shifts: int `[B, 2]`, (dy, dx) per image, each in [-H, H] and [-W, W] respectively.

  Returns:
    float `[B, H, W, C]`, same dtype as `images`.
  """
  _, h, w, c = images.shape
  padded = jnp.pad(images, ((0, 0), (h, h), (w, w), (0, 0)))
  shifts = jnp.asarray(shifts, jnp.int32)

  def one(img, shift):
    return jax.lax.dynamic_slice(img, (h - shift[0], w - shift[1], 0), (h, w, c))

  return jax.vmap(one)(padded, shifts)


def _translation(x: jax.Array, key: jax.Array) -> jax.Array:
  _, h, w, _ = x.shape
  sh, sw = _max_shift(h), _max_shift(w)
  ky, kx = jax.random.split(key)
  dy = jax.random.randint(ky, (x.shape[0],), -sh, sh + 1)
  dx = jax.random.randint(kx, (x.shape[0],), -sw, sw + 1)
  return translate(x, jnp.stack([dy, dx], axis=1))


def cutout(images: jax.Array, centers: jax.Array, size: tuple[int, int]) -> jax.Array:
  """Zeroes a `size` rectangle of each image, clipped at the borders.

  The rectangle of image b covers rows `[cy - size[0] // 2, cy - size[0] // 2 + size[0])`
  and columns likewise, intersected with the image (as in the official DiffAugment).

  Args:
    images: float `[B, H, W, C]`.
    centers: int `[B, 2]`, (cy, cx) per image; any integers (rectangles off the image
      remove less, or nothing).
    size: (rows, columns) of the rectangle.

  Returns:
    float `[B, H, W, C]`, same dtype: `images` times a {0, 1} mask shared by the channels.
  """
  _, h, w, _ = images.shape
  centers = jnp.asarray(centers, jnp.int32)
  top = centers[:, 0:1] - size[0] // 2
  left = centers[:, 1:2] - size[1] // 2
  rows = jnp.arange(h)[None, :]
  cols = jnp.arange(w)[None, :]
  in_rows = (rows >= top) & (rows < top + size[0])  # [B, H]
  in_cols = (cols >= left) & (cols < left + size[1])  # [B, W]
  keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
  return images * keep[..., None].astype(images.dtype)


def _cutout(x: jax.Array, key: jax.Array) -> jax.Array:
  _, h, w, _ = x.shape
  size = (_cutout_size(h), _cutout_size(w))
  ky, kx = jax.random.split(key)
  # Centres in [0, H + 1 - size % 2), as in the official code (the square may be clipped).
  cy = jax.random.randint(ky, (x.shape[0],), 0, h + 1 - size[0] % 2)
  cx = jax.random.randint(kx, (x.shape[0],), 0, w + 1 - size[1] % 2)
  return cutout(x, jnp.stack([cy, cx], axis=1), size)


AUGMENTATIONS: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
  'color': _color,
  'translation': _translation,
  'cutout': _cutout,
}


def parse_policy(policy: str) -> tuple[str, ...]:
  """Splits a comma-separated policy into its names, checking each.

  Args:
    policy: e.g. 'color,translation,cutout'; '' (or only commas and spaces) is no
      augmentation.

  Returns:
    The names in order, e.g. ('color', 'translation', 'cutout'); () for ''.

  Raises:
    ValueError: for an unknown name, listing the valid ones.
  """
  names = tuple(p.strip() for p in policy.split(',') if p.strip())
  for name in names:
    if name not in AUGMENTATIONS:
      raise ValueError(
        f'DiffAugment policy {policy!r} has unknown augmentation {name!r}; use a '
        f'comma-separated subset of {sorted(AUGMENTATIONS)} (e.g. {DEFAULT_POLICY!r}) or "".'
      )
  return names


def diff_augment(images: jax.Array, key: jax.Array, policy: str = DEFAULT_POLICY) -> jax.Array:
  """Applies DiffAugment (Zhao et al. 2020) with per-image random parameters.

  Differentiable in `images` and traceable under `jax.jit` (the policy is static). Use
  independent keys for the real and the generated batch, and augment D's input in both the
  D and the G update (Zhao et al. 2020, eqs. 3-4).

  Args:
    images: float `[B, H, W, C]`, nominally in [-1, 1].
    key: PRNG key; the same key, images and policy give the same output.
    policy: comma-separated names from 'color', 'translation', 'cutout', applied in that
      order; '' returns `images` unchanged.

  Returns:
    Augmented images, same shape and dtype. Color can leave [-1, 1] (values are not clipped,
    as in the official code); translation and cutout fill with 0.

  Raises:
    ValueError: for an unknown policy name, or images that are not `[B, H, W, C]`.
  """
  names = parse_policy(policy)
  if not names:
    return images
  if images.ndim != 4:
    raise ValueError(f'diff_augment needs images [B, H, W, C], got shape {images.shape}.')
  for name, k in zip(names, jax.random.split(key, len(names))):
    images = AUGMENTATIONS[name](images, k)
  return images
