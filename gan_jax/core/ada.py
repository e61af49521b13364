"""Adaptive discriminator augmentation (ADA; Karras et al. 2020).

Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data" (NeurIPS):
every image D sees, real and generated, in the D and the G updates, goes through one
differentiable augmentation pipeline whose transforms are each applied with probability p
(section 2.2: non-leaking as long as p < ~0.8), and p is adjusted during training from D's
overfitting heuristic r_t = E[sign(D(real))] (section 3, eq. 1's r_t): every `interval`
steps p moves by `sign(r_t - target) * images / (kimg * 1000)` toward the target (0.6),
clipped to [0, 1], so that p can go from 0 to 1 in `kimg` thousand images.

The pipeline follows the authors' `training/augment.py` (stylegan2-ada-pytorch,
`AugmentPipe`), with its parameter distributions, in its order; each transform has its own
PRNG key (drawn by name), so turning one on does not change the others' draws:

* blit (exact pixel moves): `xflip` (mirror left-right, half of the time when drawn),
  `rotate90` (k * 90 degrees, k uniform in 0..3), `xint` (integer translation, uniform in
  +-0.125 of the size per axis, rounded), filling with reflection (`numpy.pad(mode='reflect')`).
* geom (one composed affine matrix per image, bilinear sampling with reflection beyond the
  border): `scale` (isotropic, 2^N(0, 0.2^2)), `rotate` (uniform angle, before and after
  the anisotropic scaling, each with probability 1 - sqrt(1 - p), so that P(any) = p),
  `aniso` (2^N(0, 0.2^2) along x, its inverse along y), `xfrac` (N(0, 0.125^2) of the size).
* color (one 4x4 colour matrix per image, on values in [-1, 1]): `brightness` (adds
  N(0, 0.2^2)), `contrast` (times 2^N(0, 0.5^2)), `lumaflip` (Householder reflection of the
  RGB vector along the luma axis (1, 1, 1)/sqrt(3), half of the time), `hue` (rotation about
  the luma axis by U(-pi, pi)), `saturation` (chroma times 2^N(0, 1)).
* `noise` (additive Gaussian noise, sigma = |N(0, 0.1^2)|) and `cutout` (a zeroed square of
  half the size at a uniform centre).

Differences from the authors' code, on purpose: the blit transforms are exact pixel moves
applied before, not folded into, the geometric matrix; the geometric warp samples bilinearly
at the image's own resolution (the authors oversample 2x with a sym6 wavelet filter against
aliasing), so it blurs a little; the image-space filtering transform ('filter') is not
implemented. On 1-channel images the colour matrix acts through its mean row, as in the
authors' code: brightness and contrast as on RGB, luma flip negates the image (x -> -x),
and hue and saturation, the identity on gray, are skipped.

`transforms` names a preset of the authors' `train.py` ('blit', 'geom', 'color', 'noise',
'cutout', 'bg', 'bgc'; 'bgc' is their default) or single transforms, comma-separated
(e.g. 'bgc,cutout' or 'xflip,xint').

ADA's state (`GANState.extras`, only when ADA is on): 'ada_p' (p, float32 scalar in [0, 1]),
'ada_sign_sum' and 'ada_sign_count' (the sum of sign(D(real)) over D's real outputs since
the last adjustment, and how many outputs). Checkpointed with the state, so a resumed run
continues with the same p.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

# Every transform, in the pipeline's order.
BLIT = ('xflip', 'rotate90', 'xint')
GEOM = ('scale', 'rotate', 'aniso', 'xfrac')
COLOR = ('brightness', 'contrast', 'lumaflip', 'hue', 'saturation')
TRANSFORMS = (*BLIT, *GEOM, *COLOR, 'noise', 'cutout')
# The presets of stylegan2-ada-pytorch's train.py (`augpipe_specs`) that need no 'filter'.
PRESETS: dict[str, tuple[str, ...]] = {
  'blit': BLIT,
  'geom': GEOM,
  'color': COLOR,
  'noise': ('noise',),
  'cutout': ('cutout',),
  'bg': (*BLIT, *GEOM),
  'bgc': (*BLIT, *GEOM, *COLOR),
}
DEFAULT_TRANSFORMS = 'bgc'
MODES = ('', 'ada', 'fixed')  # train.augment: off, adaptive p, constant p = train.ada_p_init

# AugmentPipe's defaults (stylegan2-ada-pytorch training/augment.py).
XINT_MAX = 0.125  # integer translation range, relative to the size
SCALE_STD = 0.2  # log2 std of isotropic scaling
ROTATE_MAX = 1.0  # rotation range, 1 = full circle
ANISO_STD = 0.2  # log2 std of anisotropic scaling
XFRAC_STD = 0.125  # std of fractional translation, relative to the size
BRIGHTNESS_STD = 0.2
CONTRAST_STD = 0.5  # log2 std
HUE_MAX = 1.0  # 1 = full circle
SATURATION_STD = 1.0  # log2 std
NOISE_STD = 0.1
CUTOUT_SIZE = 0.5  # relative to the size

STATE_KEYS = ('ada_p', 'ada_sign_count', 'ada_sign_sum')
_LUMA = np.full(3, 1 / math.sqrt(3), np.float32)  # the luma axis v


def parse_transforms(spec: str) -> tuple[str, ...]:
  """The transforms a `transforms` string names, in the pipeline's order.

  Args:
    spec: comma-separated preset names (`PRESETS`, e.g. 'bgc') and transform names
      (`TRANSFORMS`, e.g. 'xflip'); their union is applied.

  Returns:
    The transforms, each once, in `TRANSFORMS` order.

  Raises:
    ValueError: an unknown name or an empty spec, listing the valid ones.
  """
  names = [s.strip() for s in spec.split(',') if s.strip()]
  chosen = set()
  for name in names:
    if name not in PRESETS and name not in TRANSFORMS:
      raise ValueError(
        f'ADA transforms {spec!r}: unknown name {name!r}; use presets from '
        f'{sorted(PRESETS)} or transforms from {list(TRANSFORMS)}, comma-separated'
      )
    chosen.update(PRESETS.get(name, (name,)))
  if not chosen:
    raise ValueError(f"ADA transforms {spec!r} names none; e.g. 'bgc' (the paper's default)")
  return tuple(t for t in TRANSFORMS if t in chosen)


# ---------------------------------------------------------------------------------------------
# Deterministic building blocks (public, so that tests can check them against numpy).


def flip_x(images: Array, flags: Array) -> Array:
  """Mirrors the images whose flag is set left-right (`numpy.flip(img, axis=1)` per image).

  Args:
    images: float `[B, H, W, C]`.
    flags: bool `[B]`.

  Returns:
    float `[B, H, W, C]`, exact (a selection of pixels).
  """
  return jnp.where(flags[:, None, None, None], images[:, :, ::-1, :], images)


def rotate90(images: Array, k: Array) -> Array:
  """Rotates image b by `k[b]` quarter turns, as `numpy.rot90(img, k[b])` over (H, W).

  Args:
    images: float `[B, H, W, C]` with H == W.
    k: int `[B]` in 0..3.

  Returns:
    float `[B, H, W, C]`, exact.

  Raises:
    ValueError: for non-square images.
  """
  if images.shape[1] != images.shape[2]:
    raise ValueError(f'rotate90 needs square images, got {images.shape[1:3]}.')
  out = images
  for i in (1, 2, 3):
    out = jnp.where((k == i)[:, None, None, None], jnp.rot90(images, i, axes=(1, 2)), out)
  return out


def translate_reflect(images: Array, shifts: Array) -> Array:
  """Shifts each image by whole pixels, filling the uncovered border by reflection.

  `out[b, i, j] = R[b, i - dy, j - dx]` where R is the image extended by reflection about
  its edge pixels (`numpy.pad(mode='reflect')`, 'd c b | a b c d | c b a').

  Args:
    images: float `[B, H, W, C]`.
    shifts: int `[B, 2]`, (dy, dx) per image, |dy| <= H - 1 and |dx| <= W - 1.

  Returns:
    float `[B, H, W, C]`, exact; differentiable in `images`.
  """
  _, h, w, c = images.shape
  padded = jnp.pad(images, ((0, 0), (h - 1, h - 1), (w - 1, w - 1), (0, 0)), mode='reflect')
  shifts = jnp.asarray(shifts, jnp.int32)

  def one(img, shift):
    return jax.lax.dynamic_slice(img, (h - 1 - shift[0], w - 1 - shift[1], 0), (h, w, c))

  return jax.vmap(one)(padded, shifts)


def translation_matrix(tx: Array, ty: Array) -> Array:
  """float32 `[B, 3, 3]` homogeneous 2D translations by (tx, ty) pixels."""
  o, z = jnp.ones_like(tx), jnp.zeros_like(tx)
  return jnp.stack(
    [jnp.stack([o, z, tx], -1), jnp.stack([z, o, ty], -1), jnp.stack([z, z, o], -1)], -2
  )


def scale_matrix(sx: Array, sy: Array) -> Array:
  """float32 `[B, 3, 3]` homogeneous 2D scalings by (sx, sy)."""
  z, o = jnp.zeros_like(sx), jnp.ones_like(sx)
  return jnp.stack(
    [jnp.stack([sx, z, z], -1), jnp.stack([z, sy, z], -1), jnp.stack([z, z, o], -1)], -2
  )


def rotation_matrix(theta: Array) -> Array:
  """float32 `[B, 3, 3]` homogeneous 2D rotations [[cos, -sin], [sin, cos]] on (x, y).

  As the inverse map of `warp`, theta = pi / 2 turns an image as `numpy.rot90(img, 1)`.
  """
  c, s = jnp.cos(theta), jnp.sin(theta)
  z, o = jnp.zeros_like(theta), jnp.ones_like(theta)
  return jnp.stack(
    [jnp.stack([c, -s, z], -1), jnp.stack([s, c, z], -1), jnp.stack([z, z, o], -1)], -2
  )


def warp(images: Array, inverse: Array) -> Array:
  """Applies one affine map per image, by bilinear sampling with reflection beyond the border.

  Pixel (row i, column j) of the output is the input sampled at `inverse[b] @ (x, y, 1)`,
  with x = j - (W - 1) / 2 and y = i - (H - 1) / 2 (coordinates from the image centre, in
  pixels; the result is shifted back by the centre). Outside the image the input is extended
  by reflection about its edge pixels (scipy's 'mirror', `numpy.pad(mode='reflect')`).

  Args:
    images: float32 `[B, H, W, C]`, H, W >= 2.
    inverse: float32 `[B, 3, 3]`, output pixel -> input pixel (last row (0, 0, 1)).

  Returns:
    float32 `[B, H, W, C]`; differentiable in `images`. The identity matrix gives `images`
    exactly (integer coordinates take one pixel with weight 1).
  """
  _, h, w, _ = images.shape
  cy, cx = (h - 1) / 2, (w - 1) / 2
  rows, cols = jnp.meshgrid(
    jnp.arange(h, dtype=jnp.float32) - cy, jnp.arange(w, dtype=jnp.float32) - cx, indexing='ij'
  )
  points = jnp.stack([cols.ravel(), rows.ravel(), jnp.ones(h * w, jnp.float32)])  # [3, HW]
  src = jnp.einsum('bij,jn->bin', inverse, points)  # [B, 3, HW]
  src_y = (src[:, 1] + cy).reshape(-1, h, w)
  src_x = (src[:, 0] + cx).reshape(-1, h, w)

  def one_channel(img, sy, sx):  # [H, W]
    return jax.scipy.ndimage.map_coordinates(img, [sy, sx], order=1, mode='mirror')

  per_channel = jax.vmap(one_channel, in_axes=(2, None, None), out_axes=2)
  return jax.vmap(per_channel)(images, src_y, src_x)


def color_matrix_apply(images: Array, matrix: Array) -> Array:
  """Applies one 4x4 homogeneous colour matrix per image: `rgb' = M[:3, :3] rgb + M[:3, 3]`.

  On 1-channel images the mean of M's first three rows acts, as in the authors' code:
  `x' = x * sum(m[:3]) + m[3]`.

  Args:
    images: float32 `[B, H, W, C]`, C in (1, 3).
    matrix: float32 `[B, 4, 4]`.

  Returns:
    float32 `[B, H, W, C]`.

  Raises:
    ValueError: for C not 1 or 3.
  """
  c = images.shape[-1]
  if c == 3:
    return jnp.einsum('bij,bhwj->bhwi', matrix[:, :3, :3], images) + matrix[:, None, None, :3, 3]
  if c == 1:
    m = jnp.mean(matrix[:, :3, :], axis=1)  # [B, 4]
    return images * jnp.sum(m[:, :3], axis=1)[:, None, None, None] + m[:, 3, None, None, None]
  raise ValueError(f'ADA colour transforms need 1 or 3 channels, got {c}.')


def cutout(images: Array, centers: Array, size: Array) -> Array:
  """Zeroes a square of each image, as the authors' cutout.

  Pixel (i, j) is zeroed when |(j + 0.5) / W - cx| < s / 2 and |(i + 0.5) / H - cy| < s / 2.

  Args:
    images: float `[B, H, W, C]`.
    centers: float `[B, 2]`, (cy, cx) relative to the size, in [0, 1].
    size: float `[B]`, the side relative to the size (0: nothing is cut).

  Returns:
    float `[B, H, W, C]`: `images` times a {0, 1} mask shared by the channels.
  """
  _, h, w, _ = images.shape
  ys = (jnp.arange(h) + 0.5) / h
  xs = (jnp.arange(w) + 0.5) / w
  keep_y = jnp.abs(ys[None, :] - centers[:, 0:1]) >= size[:, None] / 2  # [B, H]
  keep_x = jnp.abs(xs[None, :] - centers[:, 1:2]) >= size[:, None] / 2  # [B, W]
  keep = keep_y[:, :, None] | keep_x[:, None, :]
  return images * keep[..., None].astype(images.dtype)


# ---------------------------------------------------------------------------------------------
# The random pipeline.


class _Draws:
  """Per-transform keys and gates: transform t is applied to image b when U < p."""

  def __init__(self, key: Array, batch: int, p: Array):
    keys = jax.random.split(key, len(TRANSFORMS))
    self.keys = dict(zip(TRANSFORMS, keys))
    self.batch, self.p = batch, p

  def gate(self, name: str, prob: Array | None = None) -> Array:
    """bool `[B]`: which images get transform `name` (probability `prob`, default p)."""
    k = jax.random.fold_in(self.keys[name], 0)
    return jax.random.uniform(k, (self.batch,)) < (self.p if prob is None else prob)

  def key(self, name: str, i: int = 1) -> Array:
    return jax.random.fold_in(self.keys[name], i)


def _blit(x: Array, on: tuple[str, ...], d: _Draws) -> Array:
  b, h, w, _ = x.shape
  if 'xflip' in on:
    flip = jax.random.bernoulli(d.key('xflip'), 0.5, (b,))
    x = flip_x(x, flip & d.gate('xflip'))
  if 'rotate90' in on:
    k = jax.random.randint(d.key('rotate90'), (b,), 0, 4)
    x = rotate90(x, jnp.where(d.gate('rotate90'), k, 0))
  if 'xint' in on:
    t = jax.random.uniform(d.key('xint'), (b, 2), minval=-XINT_MAX, maxval=XINT_MAX)
    shifts = jnp.round(t * jnp.array([h, w], jnp.float32)).astype(jnp.int32)
    x = translate_reflect(x, jnp.where(d.gate('xint')[:, None], shifts, 0))
  return x


def _geom(x: Array, on: tuple[str, ...], d: _Draws) -> Array:
  b, h, w, _ = x.shape
  inverse = jnp.broadcast_to(jnp.eye(3, dtype=jnp.float32), (b, 3, 3))
  applied = jnp.zeros((b,), bool)

  def lognormal(name, std):
    g = d.gate(name)
    s = jnp.exp2(jax.random.normal(d.key(name), (b,)) * std)
    return jnp.where(g, s, 1.0), g

  if 'scale' in on:
    s, g = lognormal('scale', SCALE_STD)
    inverse, applied = inverse @ scale_matrix(1 / s, 1 / s), applied | g
  p_rot = 1 - jnp.sqrt(jnp.clip(1 - d.p, 0.0, 1.0))  # P(pre or post rotation) = p

  def rotation(i):  # i = 0 before the anisotropic scaling, 1 after
    g = jax.random.uniform(d.key('rotate', 10 + i), (b,)) < p_rot
    theta = jax.random.uniform(d.key('rotate', 20 + i), (b,), minval=-1.0, maxval=1.0)
    return rotation_matrix(jnp.where(g, theta * np.pi * ROTATE_MAX, 0.0)), g

  if 'rotate' in on:
    r, g = rotation(0)
    inverse, applied = inverse @ r, applied | g
  if 'aniso' in on:
    s, g = lognormal('aniso', ANISO_STD)
    inverse, applied = inverse @ scale_matrix(1 / s, s), applied | g
  if 'rotate' in on:
    r, g = rotation(1)
    inverse, applied = inverse @ r, applied | g
  if 'xfrac' in on:
    g = d.gate('xfrac')
    t = jax.random.normal(d.key('xfrac'), (b, 2)) * XFRAC_STD
    t = jnp.where(g[:, None], t, 0.0)
    inverse, applied = inverse @ translation_matrix(-t[:, 0] * w, -t[:, 1] * h), applied | g
  return jnp.where(applied[:, None, None, None], warp(x, inverse), x)


def _color(x: Array, on: tuple[str, ...], d: _Draws) -> Array:
  b, c = x.shape[0], x.shape[-1]
  eye = jnp.eye(4, dtype=jnp.float32)
  m = jnp.broadcast_to(eye, (b, 4, 4))
  applied = jnp.zeros((b,), bool)
  v = jnp.asarray(np.append(_LUMA, 0.0).astype(np.float32))
  vv = jnp.outer(v, v)
  if 'brightness' in on:
    g = d.gate('brightness')
    bright = jnp.where(g, jax.random.normal(d.key('brightness'), (b,)) * BRIGHTNESS_STD, 0.0)
    m, applied = _translate3d(bright) @ m, applied | g
  if 'contrast' in on:
    g = d.gate('contrast')
    con = jnp.where(g, jnp.exp2(jax.random.normal(d.key('contrast'), (b,)) * CONTRAST_STD), 1.0)
    m, applied = _scale3d(con) @ m, applied | g
  if 'lumaflip' in on:
    g = d.gate('lumaflip')
    i = jnp.where(g, jax.random.bernoulli(d.key('lumaflip'), 0.5, (b,)), False).astype(jnp.float32)
    m, applied = (eye[None] - 2 * vv[None] * i[:, None, None]) @ m, applied | g
  if c == 3 and 'hue' in on:
    g = d.gate('hue')
    theta = jax.random.uniform(d.key('hue'), (b,), minval=-1.0, maxval=1.0) * np.pi * HUE_MAX
    m, applied = _rotate_about_luma(jnp.where(g, theta, 0.0)) @ m, applied | g
  if c == 3 and 'saturation' in on:
    g = d.gate('saturation')
    sat = jnp.where(g, jnp.exp2(jax.random.normal(d.key('saturation'), (b,)) * SATURATION_STD), 1.0)
    m, applied = (vv[None] + (eye - vv)[None] * sat[:, None, None]) @ m, applied | g
  return jnp.where(applied[:, None, None, None], color_matrix_apply(x, m), x)


def _translate3d(t: Array) -> Array:
  """float32 `[B, 4, 4]`: adds t to each of R, G, B (the authors' translate3d(t, t, t))."""
  return (
    jnp.eye(4, dtype=jnp.float32)
    + jnp.zeros((4, 4), jnp.float32).at[:3, 3].set(1.0) * t[:, None, None]
  )


def _scale3d(c: Array) -> Array:
  """float32 `[B, 4, 4]`: multiplies R, G, B by c (the authors' scale3d(c, c, c))."""
  ones = jnp.ones_like(c)
  return jnp.eye(4, dtype=jnp.float32) * jnp.stack([c, c, c, ones], -1)[:, None, :]


def _rotate_about_luma(theta: Array) -> Array:
  """float32 `[B, 4, 4]`: rotations by theta about the luma axis (Rodrigues' formula)."""
  vx = vy = vz = float(_LUMA[0])
  s, c = jnp.sin(theta), jnp.cos(theta)
  cc = 1 - c
  z, o = jnp.zeros_like(theta), jnp.ones_like(theta)
  rows = [
    [vx * vx * cc + c, vx * vy * cc - vz * s, vx * vz * cc + vy * s, z],
    [vy * vx * cc + vz * s, vy * vy * cc + c, vy * vz * cc - vx * s, z],
    [vz * vx * cc - vy * s, vz * vy * cc + vx * s, vz * vz * cc + c, z],
    [z, z, z, o],
  ]
  return jnp.stack([jnp.stack(r, -1) for r in rows], -2)


def _noise_and_cutout(x: Array, on: tuple[str, ...], d: _Draws) -> Array:
  b = x.shape[0]
  if 'noise' in on:
    sigma = jnp.abs(jax.random.normal(d.key('noise'), (b,))) * NOISE_STD
    sigma = jnp.where(d.gate('noise'), sigma, 0.0)
    x = x + jax.random.normal(d.key('noise', 2), x.shape, x.dtype) * sigma[:, None, None, None]
  if 'cutout' in on:
    size = jnp.where(d.gate('cutout'), CUTOUT_SIZE, 0.0)
    x = cutout(x, jax.random.uniform(d.key('cutout'), (b, 2)), size)
  return x


def augment(images: Array, key: Array, p: Array, transforms: str = DEFAULT_TRANSFORMS) -> Array:
  """The ADA pipeline (Karras et al. 2020): each transform applied per image with probability p.

  Differentiable in `images` and traceable under `jax.jit` (`transforms` is static, `p` may
  be traced). Use independent keys for the real and the generated batch.

  Args:
    images: float32 `[B, H, W, C]`, nominally in [-1, 1]; H == W if 'rotate90' is on; C in
      (1, 3) if a colour transform is on.
    key: PRNG key; the same key, images, p and transforms give the same output.
    p: float32 scalar in [0, 1], the augmentation probability. 0 returns `images` exactly.
    transforms: what to apply (`parse_transforms`), e.g. 'bgc'.

  Returns:
    float32 `[B, H, W, C]`. Colour and noise can leave [-1, 1] (not clipped, as in the
    authors' code).

  Raises:
    ValueError: an unknown transform, images not `[B, H, W, C]`, non-square images with
      'rotate90', or a channel count other than 1 or 3 with colour transforms.
  """
  on = parse_transforms(transforms)
  if images.ndim != 4:
    raise ValueError(f'ADA needs images [B, H, W, C], got shape {images.shape}.')
  d = _Draws(key, images.shape[0], jnp.asarray(p, jnp.float32))
  x = images
  if any(t in on for t in BLIT):
    x = _blit(x, on, d)
  if any(t in on for t in GEOM):
    x = _geom(x, on, d)
  if any(t in on for t in COLOR):
    x = _color(x, on, d)
  return _noise_and_cutout(x, on, d)


# ---------------------------------------------------------------------------------------------
# The adaptive p (its state lives in GANState.extras).


def initial_state(train_config) -> dict[str, Array]:
  """ADA's `GANState.extras` entries at step 0: {'ada_p': `train.ada_p_init`, 'ada_sign_sum':
  0, 'ada_sign_count': 0} (float32 scalars) when `train.augment == 'ada'`, else {}."""
  if train_config.get('augment', '') != 'ada':
    return {}
  return {
    'ada_p': jnp.asarray(train_config.get('ada_p_init', 0.0), jnp.float32),
    'ada_sign_sum': jnp.zeros((), jnp.float32),
    'ada_sign_count': jnp.zeros((), jnp.float32),
  }


def probability(
  mode: str, p_init: float, extras: dict[str, Array], scheduled: Array | None = None
) -> Array | None:
  """The p of this step: `extras['ada_p']` for mode 'ada'; for 'fixed' `scheduled` (float32
  scalar, `train.schedules`' `ada_p` at this step, `gan_jax.core.schedules.Schedules.
  augment_probability`) when given, else the constant `p_init`; None when augmentation is
  off ('')."""
  if mode == 'ada':
    return extras['ada_p']
  if mode == 'fixed':
    return jnp.float32(p_init) if scheduled is None else scheduled
  return None


def count_signs(extras: dict[str, Array], real_logits: Array) -> dict[str, Array]:
  """Adds sum(sign(D(real))) and the number of outputs to ADA's running sums.

  Args:
    extras: `GANState.extras` with ADA's entries.
    real_logits: float32 `[B]`, D's raw outputs on the (augmented) real batch.

  Returns:
    The new extras (other entries unchanged).
  """
  signs = jnp.sign(jax.lax.stop_gradient(real_logits)).astype(jnp.float32)
  return {
    **extras,
    'ada_sign_sum': extras['ada_sign_sum'] + jnp.sum(signs),
    'ada_sign_count': extras['ada_sign_count'] + jnp.float32(signs.size),
  }


def adjust(
  extras: dict[str, Array],
  step: Array,
  *,
  target: float,
  kimg: float,
  interval: int,
  images_per_step: int,
) -> tuple[dict[str, Array], dict[str, Array]]:
  """ADA's p update at the end of a step (Karras et al. 2020, section 3).

  After every `interval`-th completed step (`(step + 1) % interval == 0`):
  r_t = ada_sign_sum / ada_sign_count (E[sign(D(real))] over the D updates since the last
  adjustment), `p <- clip(p + sign(r_t - target) * images_per_step * interval /
  (kimg * 1000), 0, 1)`, and the sums restart from 0. Between adjustments only the sums grow.

  Args:
    extras: `GANState.extras` with ADA's entries, this step's signs counted.
    step: int32 scalar, the state's step before this step (steps completed before it).
    target: the target of r_t (0.6 in the paper).
    kimg: thousands of images for p to move by 1 (500 in the paper).
    interval: steps between adjustments (4 in the paper).
    images_per_step: real images D saw this step (batch size * n_critic).

  Returns:
    (new extras, metrics {'ada_p': p after this step, 'ada_rt': E[sign(D(real))] over the
    D updates since the last adjustment, this step's included (r_t on an adjustment step)}).
  """
  count = jnp.maximum(extras['ada_sign_count'], 1.0)
  r_t = extras['ada_sign_sum'] / count
  delta = jnp.sign(r_t - target) * (images_per_step * interval / (kimg * 1000))
  now = (step + 1) % interval == 0
  zero = jnp.zeros((), jnp.float32)
  new = {
    **extras,
    'ada_p': jnp.where(now, jnp.clip(extras['ada_p'] + delta, 0.0, 1.0), extras['ada_p']),
    'ada_sign_sum': jnp.where(now, zero, extras['ada_sign_sum']),
    'ada_sign_count': jnp.where(now, zero, extras['ada_sign_count']),
  }
  return new, {'ada_p': new['ada_p'], 'ada_rt': r_t}
