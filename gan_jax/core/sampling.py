"""Sampling from a trained generator and writing image grids.

A class-conditional generator (`gan.num_classes = K > 0`) samples given classes:
`sample(gan, state, z, labels)`; `per_class_inputs` gives the latents and labels of a grid
with one row per class, the same latent in each column (so a column shows one "style" across
the classes).

The BatchNorm statistics a generator is sampled with come from `sampling_batch_stats`: the
raw generator's own running averages, and for the EMA generator what a run's policy
`eval.ema_batch_stats` says ('raw': the raw generator's, or 'standing': the EMA weights' own,
`standing_batch_stats`).
"""

from __future__ import annotations

import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from gan_jax.core.state import GAN, GANState

PyTree = Any


def sample(
  gan: GAN,
  state: GANState,
  z: jax.Array,
  labels: jax.Array | None = None,
  *,
  use_ema: bool = True,
  batch_stats: PyTree | None = None,
) -> jax.Array:
  """Generates images from latents with G in inference mode (BatchNorm running averages).

  Args:
    gan: static G/D definitions.
    state: training state; its `ema_params` are used when `use_ema`, else `g_params`.
    z: float32 `[N, latent_dim]`.
    labels: int `[N]` classes in [0, num_classes) for a class-conditional GAN (required
      there); None for an unconditional one.
    use_ema: sample from the EMA generator (Yazici et al. 2019).
    batch_stats: G's BatchNorm statistics to use instead of `state.g_batch_stats` (the raw
      generator's running averages), e.g. the EMA generator's standing statistics from
      `standing_batch_stats`; `sampling_batch_stats` gives those a run's policy asks for.

  Returns:
    float32 `[N, H, W, C]` in [-1, 1].

  Raises:
    ValueError: labels missing for a conditional GAN, given to an unconditional one, not
      `[N]`, or outside [0, num_classes) (checked here when they are concrete values).
  """
  params = state.ema_params if use_ema else state.g_params
  if labels is not None:
    labels = check_class_labels(gan, labels, z.shape[0])  # symbolic under jax.export
  stats = state.g_batch_stats if batch_stats is None else batch_stats
  images, _ = gan.generate(params, stats, z, labels, train=False)
  return images


STANDING_SALT = 0x57A4D  # Folded into the seed: standing-statistics latents differ from others.


def standing_batch_stats(
  gan: GAN,
  params: PyTree,
  batch_stats: PyTree,
  *,
  num_batches: int = 16,
  batch_size: int = 256,
  seed: int = 0,
) -> PyTree:
  """Standing statistics of a generator's BatchNorms ("standing statistics" of Brock et al.
  2019, "Large Scale GAN Training for High Fidelity Natural Image Synthesis", BigGAN).

  A BatchNorm's running averages belong to the weights they were collected with. The EMA
  generator's weights are an average over many steps, while `GANState.g_batch_stats` follow
  the raw generator's last ~10 steps, so sampling the EMA weights with them mismatches. This
  runs G with `params` in training mode on `num_batches` batches of N(0, I) latents and
  averages each BatchNorm's per-batch mean and (biased) variance over the batches: the
  statistics these very weights produce.

  Args:
    gan: static G/D definitions.
    params: generator parameters, usually `GANState.ema_params`.
    batch_stats: the generator's current BatchNorm statistics (structure only); a generator
      without BatchNorm (empty pytree) gets it back unchanged.
    num_batches: forward passes, >= 1 (default 16).
    batch_size: latents per pass, >= 2 (default 256; BatchNorm in training mode needs > 1).
    seed: seeds the latents (folded with `STANDING_SALT`). A conditional generator gets
      balanced classes: sample i of the passes is class i % num_classes.

  Returns:
    A pytree like `batch_stats` (float32 'mean' and 'var' per BatchNorm).

  Raises:
    ValueError: num_batches < 1 or batch_size < 2.
  """
  if num_batches < 1 or batch_size < 2:
    raise ValueError(
      f'standing statistics need num_batches >= 1 and batch_size >= 2, got {num_batches} '
      f'and {batch_size}.'
    )
  if not jax.tree.leaves(batch_stats):
    return batch_stats
  key = jax.random.fold_in(jax.random.PRNGKey(seed), STANDING_SALT)
  k = gan.num_classes

  @jax.jit
  def one(params, batch_stats, i):
    z = jax.random.normal(jax.random.fold_in(key, i), (batch_size, gan.latent_dim))
    labels = (jnp.arange(batch_size, dtype=jnp.int32) + i * batch_size) % k if k else None
    return gan.batch_statistics(params, batch_stats, z, labels)

  total = None
  for i in range(num_batches):
    stats = one(params, batch_stats, i)
    total = stats if total is None else jax.tree.map(jnp.add, total, stats)
  return jax.tree.map(lambda x: x / num_batches, total)


EMA_STATS_POLICIES = ('raw', 'standing')  # `eval.ema_batch_stats`: the EMA G's BatchNorm statistics


def sampling_batch_stats(
  gan: GAN,
  state: GANState,
  *,
  use_ema: bool = True,
  ema_stats: str = 'raw',
  seed: int = 0,
) -> PyTree:
  """The BatchNorm statistics to sample `state`'s generator with: the one place that decides.

  The raw generator (`use_ema=False`) always gets its own running averages,
  `state.g_batch_stats`. The EMA generator gets what the policy `ema_stats` (a run's
  `eval.ema_batch_stats`) says:

  - 'raw': the raw generator's running averages too (`state.g_batch_stats`; what every
    sampler did before the policy existed, and still the default);
  - 'standing': the EMA weights' own standing statistics, `standing_batch_stats(gan,
    state.ema_params, state.g_batch_stats, seed=seed)` with its defaults (16 x 256 latents;
    Brock et al. 2019).

  A generator without BatchNorm has no statistics (an empty pytree) and gets them back
  unchanged under either policy. Every sampler of a run's generator (the evaluator, the
  training grids, `gan-jax sample` / `eval` / `edit` / `export`) takes its statistics from
  here, so they all sample the same generator.

  Args:
    gan: static G/D definitions.
    state: the training state (its `ema_params` and `g_batch_stats` are read).
    use_ema: the EMA generator (else the raw one, `g_params`).
    ema_stats: 'raw' or 'standing' (`EMA_STATS_POLICIES`).
    seed: seeds the standing statistics' latents (callers pass the run's `seed`, the
      evaluator its own).

  Returns:
    A pytree like `state.g_batch_stats` ('mean' and 'var' float32 per BatchNorm), to pass as
    `sample(..., batch_stats=...)` or to `GAN.generate`.

  Raises:
    ValueError: `ema_stats` is not one of `EMA_STATS_POLICIES`.
  """
  if ema_stats not in EMA_STATS_POLICIES:
    raise ValueError(
      f'ema_stats={ema_stats!r} is not a BatchNorm statistics policy: choose one of '
      f'{list(EMA_STATS_POLICIES)}.'
    )
  if not use_ema or ema_stats == 'raw':
    return state.g_batch_stats
  return standing_batch_stats(gan, state.ema_params, state.g_batch_stats, seed=seed)


def check_class_labels(gan: GAN, labels: Any, num: int) -> jax.Array:
  """Labels for `num` samples of a conditional GAN, as int32 `[num]`.

  `num` may be a symbolic dimension (a batch-polymorphic `jax.export`); then only the
  shape and dtype are checked.

  Raises:
    ValueError: the GAN is unconditional, or the labels are not `[num]` integers in
      [0, num_classes) (values are checked unless traced).
  """
  if not gan.conditional:
    raise ValueError('labels were given, but this GAN is unconditional (model.num_classes=0).')
  labels = jnp.asarray(labels)
  if labels.shape != (num,) or not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(
      f'labels must be int [{num}] (one per latent), got {labels.dtype} {labels.shape}.'
    )
  if not isinstance(labels, jax.core.Tracer) and labels.size:
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= gan.num_classes:
      bad = lo if lo < 0 else hi
      raise ValueError(
        f'label {bad} is out of range: this GAN has {gan.num_classes} classes, 0 to '
        f'{gan.num_classes - 1}.'
      )
  return labels.astype(jnp.int32)


def per_class_labels(num_classes: int, per_class: int, classes: Any = None) -> jax.Array:
  """Labels of a grid with one row per class: `[c0] * per_class + [c1] * per_class + ...`.

  Args:
    num_classes: K.
    per_class: images per class (the grid's columns), >= 1.
    classes: the classes, one row each (default: all, 0 to K - 1).

  Returns:
    int32 `[len(classes) * per_class]`.
  """
  classes = jnp.arange(num_classes) if classes is None else jnp.asarray(classes)
  return jnp.repeat(classes.astype(jnp.int32), per_class)


def per_class_inputs(
  gan: GAN, key: jax.Array, per_class: int, classes: Any = None
) -> tuple[jax.Array, jax.Array]:
  """Latents and labels of a grid with one row per class and one latent per column.

  Draws `per_class` latents from `key` and gives every class the same ones, so that the
  images of a column differ in their class only.

  Args:
    gan: a conditional GAN.
    key: PRNG key of the latents.
    per_class: images per class, >= 1.
    classes: the classes (default: all).

  Returns:
    (z float32 `[R * per_class, latent_dim]`, labels int32 `[R * per_class]`), R classes;
    row r of the grid (`save_grid(..., ncol=per_class)`) is class `classes[r]`.

  Raises:
    ValueError: per_class < 1.
  """
  if per_class < 1:
    raise ValueError(f'per_class={per_class} must be >= 1.')
  labels = per_class_labels(gan.num_classes, per_class, classes)
  z = gan.sample_latents(key, per_class)
  return jnp.tile(z, (len(labels) // per_class, 1)), labels


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


# Bounds of what `gan-jax sample` / `edit` write, checked before anything is generated.
MAX_SCALE = 64  # pixel upscaling of a grid
MAX_GRID_BYTES = 1 << 30  # 1 GiB of uint8 pixels in one grid picture


def grid_bytes(num: int, image_shape: tuple[int, int, int], ncol: int | None, scale: int) -> int:
  """Bytes of the uint8 picture `save_grid` makes of `num` images of `image_shape`
  (H, W, C), `ncol` per row (default ceil(sqrt(num))), upscaled `scale` times."""
  h, w, c = image_shape
  ncol = ncol or math.ceil(math.sqrt(num))
  nrow = math.ceil(num / ncol)
  pad = 2
  return (nrow * (h + pad) + pad) * scale * (ncol * (w + pad) + pad) * scale * c


def check_scale(scale: int) -> None:
  """Raises ValueError unless the pixel upscaling `scale` is in [1, MAX_SCALE]."""
  if not 1 <= scale <= MAX_SCALE:
    raise ValueError(f'--scale={scale} must be an integer from 1 to {MAX_SCALE}.')


def check_grid(num: int, image_shape: tuple[int, int, int], ncol: int | None, scale: int) -> None:
  """Refuses a grid too large to build in memory, before any image is generated.

  Raises:
    ValueError: scale outside [1, MAX_SCALE], or the picture over MAX_GRID_BYTES (one line
      naming the limit and what to lower).
  """
  check_scale(scale)
  size = grid_bytes(num, image_shape, ncol, scale)
  if size > MAX_GRID_BYTES:
    raise ValueError(
      f'a grid of {num} images of {image_shape[0]}x{image_shape[1]} at scale {scale} would '
      f'take {size / 2**30:.1f} GiB, over the {MAX_GRID_BYTES / 2**30:g} GiB limit: lower '
      '--num or --scale.'
    )


def check_image_path(path: str) -> str:
  """`path` if Pillow can write a picture there (by its extension), else ValueError.

  Raises:
    ValueError: `path` is a folder, or has no extension Pillow writes (.png, .jpg, .webp,
      ...).
  """
  if os.path.isdir(path):
    raise ValueError(f'--out {path!r} is a folder; name an image file, e.g. {path}/grid.png.')
  ext = os.path.splitext(path)[1].lower()
  fmt = Image.registered_extensions().get(ext)
  if fmt is None or fmt not in Image.SAVE:
    raise ValueError(
      f'--out {path!r}: {ext or "no extension"} is not an image format gan-jax can write; '
      'use .png (lossless), .jpg or .webp.'
    )
  return path


def sample_in_chunks(
  gan: GAN,
  state: GANState,
  z: jax.Array,
  labels: jax.Array | None = None,
  *,
  use_ema: bool = True,
  chunk: int = 1024,
  batch_stats: PyTree | None = None,
) -> np.ndarray:
  """`sample`, `chunk` latents at a time, gathered on the host: device memory stays bounded
  by one chunk whatever the number of latents. float32 `[N, H, W, C]` in [-1, 1]; the same
  images as `sample` (one call when N <= chunk), with the same `batch_stats`.

  Raises:
    ValueError: as `sample`, or chunk < 1.
  """
  if chunk < 1:
    raise ValueError(f'chunk={chunk} must be >= 1.')
  n = z.shape[0]
  parts = []
  for lo in range(0, n, chunk):
    part_labels = None if labels is None else labels[lo : lo + chunk]
    images = sample(
      gan, state, z[lo : lo + chunk], part_labels, use_ema=use_ema, batch_stats=batch_stats
    )
    parts.append(np.asarray(jax.device_get(images)))
  return np.concatenate(parts) if len(parts) > 1 else parts[0]


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
