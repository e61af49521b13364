"""Latent-space tools: interpolation, GAN inversion and attribute directions (InterFaceGAN).

Everything here works on a trained `gan_jax.state.GAN` / `GANState` pair (e.g. from
`gan_jax.checkpoint.load_run`) with G in inference mode: BatchNorm uses its running
averages, so G maps every latent independently of the others in its batch, and the EMA
generator (`state.ema_params`) is used unless `use_ema=False`. Images are float32
`[..., H, W, C]` in [-1, 1] of any size (28x28x1 MNIST, 64x64x3 CelebA, ...); latents are
float32 `[..., d]` with d = `gan.latent_dim`. For a class-conditional G, the functions that
run G take an optional `labels` (int32 `[N]`) that they pass on to `GAN.generate` only when
given, so unconditional generators need nothing.

1. **Interpolation** (`lerp`, `slerp`, `interpolation_grid`, `save_interpolation_grid`).
   Under z ~ N(0, I) with large d almost all mass lies near the sphere |z| = sqrt(d), and
   the midpoint of a straight line between two samples is atypically short (|z| ~ sqrt(d/2)
   for orthogonal endpoints), so White 2016 ("Sampling Generative Networks") interpolates on
   the great circle instead: Shoemake's (1985) slerp.
2. **GAN inversion** (`invert`): find z with G(z) ~ x for real images x by gradient descent
   (Adam) on a pixel MSE plus an optional classifier-feature ("perceptual") distance, from
   several random starts per image, all optimised at once in one jitted `lax.scan`.
3. **Attribute directions** (`sample_attributes`, `fit_direction`, `fit_attribute_direction`,
   `fit_direction_from_images`, `orthogonalize`, `edit`): InterFaceGAN (Shen et al. 2020,
   "Interpreting the Latent Space of GANs for Semantic Face Editing"): label latents by an
   attribute of their images, fit a separating hyperplane in z, and move along its unit
   normal n: z' = z + alpha n (their eq. 3). Conditional manipulation (their eq. 5)
   projects the other attributes' normals out of n (`orthogonalize`).

CelebA (TFDS `celeb_a`, 40 binary attributes). Train a 64x64 DCGAN on it (model 'dcgan',
`data.image_size=64`, `data.channels=3`), then fit a direction either

* from real labelled images: `images, labels = load_celeba_attribute('Smiling', 'test[:2000]',
  data_dir=...)` (central 140x140 crop, resized to 64x64, `celeba_crop_resize`), then
  `fit_direction_from_images(gan, state, images, labels, key=...)`, which inverts every image
  (`invert`) and fits the hyperplane on the inverted latents; or
* from a classifier you supply: any jittable `attribute_fn(images [B, 64, 64, 3]) -> [B]`
  (a probability, a logit or a 0/1 decision) given to `fit_attribute_direction`, which
  samples latents, labels their images with it and fits the hyperplane (InterFaceGAN's own
  recipe). `class_attribute(classifier, k)` wraps any logits network.

Save the result with `save_direction(path, direction)` and use it from the command line with
`gan-jax edit --workdir RUN --image face.png --direction path.npz`. Every path here is shape
generic (tested at 28x28x1 and 64x64x3).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import zipfile
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gan_jax.state import GAN, GANState

__all__ = [
  'Inversion',
  'class_attribute',
  'celeba_crop_resize',
  'edit',
  'fit_attribute_direction',
  'fit_direction',
  'fit_direction_from_images',
  'generate',
  'ink_mass',
  'interpolation_grid',
  'invert',
  'lenet_feature_fn',
  'lerp',
  'load_celeba_attribute',
  'load_direction',
  'orthogonalize',
  'perceptual_distance',
  'sample_attributes',
  'save_direction',
  'save_interpolation_grid',
  'slerp',
]

ArrayLike = Any
AttributeFn = Callable[[jax.Array], jax.Array]
FeatureFn = Callable[[jax.Array], jax.Array]

METHODS = ('svm', 'logistic', 'mean_diff')
LATENT_REGS = (None, 'norm', 'sphere')


# ------------------------------------------------------------------------------------------
# Running G.


def _params(state: GANState, use_ema: bool):
  return state.ema_params if use_ema else state.g_params


def _run_g(gan: GAN, params, stats, z: jax.Array, labels: jax.Array | None) -> jax.Array:
  """G in inference mode; `labels` reach `GAN.generate` only when given."""
  extra = {} if labels is None else {'labels': labels}
  images, _ = gan.generate(params, stats, z, train=False, **extra)
  return images


@functools.partial(jax.jit, static_argnames=('gan',))
def _generate(gan: GAN, params, stats, z, labels):
  return _run_g(gan, params, stats, z, labels)


def generate(
  gan: GAN,
  state: GANState,
  z: ArrayLike,
  *,
  use_ema: bool = True,
  labels: ArrayLike | None = None,
) -> jax.Array:
  """G(z) in inference mode (BatchNorm running averages), jitted.

  Args:
    gan: the static G/D definitions.
    state: the run's state.
    z: float32 `[N, d]` latents, d = `gan.latent_dim`.
    use_ema: use the EMA generator (`state.ema_params`; equal to `g_params` when the run
      has no EMA).
    labels: int32 `[N]` class labels, only for a class-conditional G (passed to
      `GAN.generate` only when given).

  Returns:
    float32 `[N, H, W, C]` in [-1, 1].

  Raises:
    ValueError: if z is not `[N, gan.latent_dim]`.
  """
  z = _check_latents(gan, z)
  labels = None if labels is None else jnp.asarray(labels)
  return _generate(gan, _params(state, use_ema), state.g_batch_stats, z, labels)


def _check_latents(gan: GAN, z: ArrayLike) -> jax.Array:
  z = jnp.asarray(z, jnp.float32)
  if z.ndim != 2 or z.shape[1] != gan.latent_dim:
    raise ValueError(f'latents must be [N, {gan.latent_dim}], got shape {tuple(z.shape)}.')
  return z


# ------------------------------------------------------------------------------------------
# 1. Interpolation.


@jax.jit
def lerp(z0: ArrayLike, z1: ArrayLike, t: ArrayLike) -> jax.Array:
  """Linear interpolation (1 - t) z0 + t z1.

  Args:
    z0: float `[..., d]` start latents.
    z1: float `[..., d]` end latents (broadcastable against z0).
    t: float scalar or array broadcastable against the batch shape `[...]` of z0 / z1, e.g.
      `[T]` with z0, z1 `[R, 1, d]` gives an `[R, T, d]` grid. t = 0 gives z0, t = 1 z1;
      values outside [0, 1] extrapolate.

  Returns:
    float32 `[broadcast(..., t.shape), d]`.
  """
  z0 = jnp.asarray(z0, jnp.float32)
  z1 = jnp.asarray(z1, jnp.float32)
  t = jnp.asarray(t, jnp.float32)[..., None]
  return z0 + t * (z1 - z0)


@functools.partial(jax.jit, static_argnames=('eps',))
def slerp(z0: ArrayLike, z1: ArrayLike, t: ArrayLike, eps: float = 1e-7) -> jax.Array:
  """Spherical linear interpolation (Shoemake 1985; White 2016, "Sampling Generative Networks").

  For endpoints of equal norm r this is Shoemake's slerp,
  `z(t) = [sin((1 - t) w) z0 + sin(t w) z1] / sin(w)` with w = angle(z0, z1): the shorter
  great-circle arc, at constant norm r and constant angular speed. That formula has no
  limit for antiparallel endpoints (w = pi) of unequal norms, so this function computes the
  equivalent, numerically stable form

      z(t) = ((1 - t) |z0| + t |z1|) (cos(t w) u + sin(t w) v),

  with u = z0 / |z0| and v the unit vector orthogonal to u in the plane of z0 and z1: the
  direction moves along the great circle and the norm linearly (identical to Shoemake for
  equal norms, and to `lerp` for parallel endpoints). Special cases:

  * (nearly) parallel endpoints, sin(w) <= eps: w ~ 0 and z(t) = lerp(z0, z1, t);
  * antiparallel endpoints: the great circle is not unique; v is taken orthogonal to u from
    the coordinate axis least aligned with u (deterministic), so the path still keeps its
    norm instead of passing through the origin as `lerp` would;
  * a zero endpoint (|z0| or |z1| <= eps): there is no angle; `lerp` is returned.

  Args:
    z0: float `[..., d]` start latents.
    z1: float `[..., d]` end latents (broadcastable against z0).
    t: float scalar or array broadcastable against the batch shape `[...]` (see `lerp`).
    eps: tolerance of the special cases above.

  Returns:
    float32 `[broadcast(..., t.shape), d]`; z(0) = z0 and z(1) = z1.
  """
  z0 = jnp.asarray(z0, jnp.float32)
  z1 = jnp.asarray(z1, jnp.float32)
  z0, z1 = jnp.broadcast_arrays(z0, z1)
  t = jnp.asarray(t, jnp.float32)[..., None]
  r0 = jnp.linalg.norm(z0, axis=-1, keepdims=True)
  r1 = jnp.linalg.norm(z1, axis=-1, keepdims=True)
  degenerate = (r0 <= eps) | (r1 <= eps)
  u = z0 / jnp.where(degenerate, 1.0, r0)
  w = z1 / jnp.where(degenerate, 1.0, r1)
  cos = jnp.clip(jnp.sum(u * w, axis=-1, keepdims=True), -1.0, 1.0)
  perp = w - cos * u
  sin = jnp.linalg.norm(perp, axis=-1, keepdims=True)
  omega = jnp.arctan2(sin, cos)
  # Fallback v for (anti)parallel endpoints: the axis least aligned with u, made orthogonal.
  axis = jax.nn.one_hot(jnp.argmin(jnp.abs(u), axis=-1), u.shape[-1], dtype=u.dtype)
  v_fb = axis - jnp.sum(axis * u, axis=-1, keepdims=True) * u
  v_fb = v_fb / jnp.maximum(jnp.linalg.norm(v_fb, axis=-1, keepdims=True), eps)
  v = jnp.where(sin > eps, perp / jnp.where(sin > eps, sin, 1.0), v_fb)
  omega = jnp.where(sin > eps, omega, jnp.where(cos > 0, 0.0, jnp.pi))
  radius = (1.0 - t) * r0 + t * r1
  out = radius * (jnp.cos(t * omega) * u + jnp.sin(t * omega) * v)
  return jnp.where(degenerate, lerp(z0, z1, t[..., 0]), out)


def _pairs(gan: GAN, z_pairs_or_keys: Any, rows: int) -> tuple[jax.Array, jax.Array]:
  """(z0 [R, d], z1 [R, d]) from pairs of latents, one PRNG key, or R PRNG keys."""
  if isinstance(z_pairs_or_keys, (tuple, list)) and len(z_pairs_or_keys) == 2:
    z0, z1 = (_check_latents(gan, z) for z in z_pairs_or_keys)
    if z0.shape != z1.shape:
      raise ValueError(f'z0 and z1 differ in shape: {z0.shape} vs {z1.shape}.')
    return z0, z1
  x = z_pairs_or_keys
  if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    key_dims = 0  # typed keys: shape [] or [R]
  else:
    x, key_dims = jnp.asarray(x), 1  # raw uint32 keys: shape [2] or [R, 2]
  if x.dtype == jnp.uint32 or key_dims == 0:
    batch = x.shape[: x.ndim - key_dims]
    if (key_dims and x.shape[-1:] != (2,)) or len(batch) > 1:
      raise ValueError(f'PRNG keys must be one key or [R] keys, got shape {x.shape}.')
    if not batch:  # one key: `rows` pairs
      z = gan.sample_latents(x, 2 * rows).reshape(rows, 2, gan.latent_dim)
    else:  # one pair per key
      z = jax.vmap(lambda k: gan.sample_latents(k, 2))(x)
    return z[:, 0], z[:, 1]
  if x.ndim == 3 and x.shape[1] == 2 and x.shape[2] == gan.latent_dim:
    x = x.astype(jnp.float32)
    return x[:, 0], x[:, 1]
  raise ValueError(
    'z_pairs_or_keys must be a PRNG key, [R] PRNG keys, a pair (z0, z1) of [R, d] latents or '
    f'an [R, 2, d] array with d = {gan.latent_dim}; got {type(z_pairs_or_keys).__name__} of '
    f'shape {tuple(np.shape(z_pairs_or_keys))}.'
  )


def interpolation_grid(
  gan: GAN,
  state: GANState,
  z_pairs_or_keys: Any,
  steps: int = 8,
  method: str = 'slerp',
  *,
  rows: int = 8,
  use_ema: bool = True,
  labels: ArrayLike | None = None,
) -> jax.Array:
  """Images along interpolation paths between pairs of latents.

  Args:
    gan: the static G/D definitions.
    state: the run's state.
    z_pairs_or_keys: the endpoints: a pair `(z0, z1)` of float `[R, d]` arrays, a float
      `[R, 2, d]` array, R PRNG keys (typed `[R]` or raw uint32 `[R, 2]`; key r draws the
      pair of row r), or one PRNG key (typed, or raw uint32 `[2]`) from which `rows` pairs
      z0, z1 ~ N(0, I) are drawn.
    steps: T >= 2 points per path, t = linspace(0, 1, T) (both endpoints included).
    method: 'slerp' (default, White 2016) or 'lerp'.
    rows: number of pairs drawn when `z_pairs_or_keys` is one key.
    use_ema: use the EMA generator.
    labels: int32 `[R]` class labels of a class-conditional G (one per path).

  Returns:
    float32 `[R, T, H, W, C]` in [-1, 1]; `[:, 0]` is G(z0) and `[:, -1]` is G(z1).

  Raises:
    ValueError: for an unknown method, steps < 2, or endpoints of the wrong shape.
  """
  if method not in ('slerp', 'lerp'):
    raise ValueError(f"method={method!r} must be 'slerp' or 'lerp'.")
  if steps < 2:
    raise ValueError(f'steps={steps} must be >= 2 (both endpoints are included).')
  z0, z1 = _pairs(gan, z_pairs_or_keys, rows)
  t = jnp.linspace(0.0, 1.0, steps)
  path = (slerp if method == 'slerp' else lerp)(z0[:, None], z1[:, None], t)  # [R, T, d]
  r = path.shape[0]
  flat_labels = None if labels is None else jnp.repeat(jnp.asarray(labels), steps)
  images = generate(gan, state, path.reshape(r * steps, -1), use_ema=use_ema, labels=flat_labels)
  return images.reshape((r, steps) + images.shape[1:])


def save_interpolation_grid(path: str, images: ArrayLike, scale: int = 2) -> str:
  """Writes an `interpolation_grid` result as a PNG: one path per row, t left to right.

  Args:
    path: PNG file to write (folders are created).
    images: float `[R, T, H, W, C]` in [-1, 1].
    scale: nearest-neighbour upscaling of the picture.

  Returns:
    the path written.

  Raises:
    ValueError: if images is not 5-D with 1 or 3 channels.
  """
  from gan_jax.sampling import save_grid  # pylint: disable=g-import-not-at-top

  images = np.asarray(images)
  if images.ndim != 5:
    raise ValueError(f'images must be [R, T, H, W, C], got shape {images.shape}.')
  r, t = images.shape[:2]
  return save_grid(path, images.reshape((r * t,) + images.shape[2:]), ncol=t, scale=scale)


# ------------------------------------------------------------------------------------------
# 2. GAN inversion.


def perceptual_distance(f_x: jax.Array, f_y: jax.Array, eps: float = 1e-8) -> jax.Array:
  """Squared distance of unit-normalised features, averaged over features.

  The feature part of LPIPS (Zhang et al. 2018, eq. 1) for one layer and without learned
  weights: `mean_k (f_x / |f_x| - f_y / |f_y|)_k^2`. Normalising makes it independent of
  the features' scale; it lies in [0, 4 / K].

  Args:
    f_x: float `[B, K]` features (e.g. LeNet's penultimate activations).
    f_y: float `[B, K]` features.
    eps: guards the norm of an all-zero feature vector.

  Returns:
    float32 `[B]`.
  """
  nx = f_x / (jnp.linalg.norm(f_x, axis=-1, keepdims=True) + eps)
  ny = f_y / (jnp.linalg.norm(f_y, axis=-1, keepdims=True) + eps)
  return jnp.mean(jnp.square(nx - ny), axis=-1)


@functools.cache
def lenet_feature_fn(dataset: str) -> FeatureFn:
  """The pinned LeNet's features for `invert(feature_fn=...)` (cached: one function per
  dataset, so repeated inversions reuse one compilation).

  Args:
    dataset: 'mnist' or 'fashion_mnist'.

  Returns:
    `f(images float32 [B, 28, 28, 1] in [-1, 1]) -> features float32 [B, 128]`.

  Raises:
    ValueError: no pinned LeNet for the dataset (see `gan_jax.metrics.lenet.load_lenet`).
  """
  from gan_jax.metrics.lenet import load_lenet  # pylint: disable=g-import-not-at-top

  net = load_lenet(dataset)

  def features(images: jax.Array) -> jax.Array:
    return net.apply(images)[0]

  return features


@dataclasses.dataclass(frozen=True)
class Inversion:
  """The result of `invert` for N images and R restarts.

  Attributes:
    z: float32 `[N, d]`, the best latent of each image (lowest `loss` over restarts and
      over the iterates of the optimisation).
    images: float32 `[N, H, W, C]` in [-1, 1], G(z): the reconstructions.
    mse: float32 `[N]`, pixel MSE of the reconstructions, mean over H, W, C of
      (G(z) - x)^2 with pixels in [-1, 1] (so in [0, 4]).
    loss: float32 `[N]`, the objective at z (pixel MSE + feature term + latent penalty).
    restart_loss: float32 `[N, R]`, the best objective reached by each restart.
    restart_mse: float32 `[N, R]`, the pixel MSE at each restart's best iterate.
  """

  z: np.ndarray
  images: np.ndarray
  mse: np.ndarray
  loss: np.ndarray
  restart_loss: np.ndarray
  restart_mse: np.ndarray


def _project_sphere(z: jax.Array) -> jax.Array:
  d = z.shape[-1]
  return z * (math.sqrt(d) / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12))


@functools.partial(
  jax.jit, static_argnames=('gan', 'feature_fn', 'steps', 'lr', 'latent_reg', 'restarts')
)
def _invert_chunk(
  gan: GAN,
  params,
  stats,
  targets: jax.Array,
  z_init: jax.Array,
  labels: jax.Array | None,
  feature_weight: jax.Array,
  latent_weight: jax.Array,
  *,
  feature_fn: FeatureFn | None,
  steps: int,
  lr: float,
  latent_reg: str | None,
  restarts: int,
):
  """Optimises `z_init` [n * R, d] towards `targets` [n, H, W, C] (see `invert`)."""
  n = targets.shape[0]
  x = jnp.repeat(targets, restarts, axis=0)  # [n * R, H, W, C], image-major
  y = None if labels is None else jnp.repeat(labels, restarts, axis=0)
  f_x = None if feature_fn is None else jnp.repeat(feature_fn(targets), restarts, axis=0)
  d = z_init.shape[-1]

  def per_sample(z):
    images = _run_g(gan, params, stats, z, y)
    mse = jnp.mean(jnp.square(images - x), axis=(1, 2, 3))
    loss = mse
    if feature_fn is not None:
      loss = loss + feature_weight * perceptual_distance(feature_fn(images), f_x)
    if latent_reg == 'norm':
      loss = loss + latent_weight * jnp.square(jnp.sum(jnp.square(z), axis=-1) / d - 1.0)
    return loss, mse

  def total(z):
    loss, mse = per_sample(z)
    # Each sample's loss depends on its own z only (BatchNorm in inference mode), and Adam
    # is elementwise: minimising the sum is N * R independent optimisations.
    return jnp.sum(loss), (loss, mse)

  tx = optax.adam(lr)
  z = _project_sphere(z_init) if latent_reg == 'sphere' else z_init
  inf = jnp.full((z.shape[0],), jnp.inf, jnp.float32)

  def body(carry, _):
    z, opt_state, best_z, best_loss, best_mse = carry
    (_, (loss, mse)), grad = jax.value_and_grad(total, has_aux=True)(z)
    better = loss < best_loss
    best_z = jnp.where(better[:, None], z, best_z)
    best_loss = jnp.where(better, loss, best_loss)
    best_mse = jnp.where(better, mse, best_mse)
    updates, opt_state = tx.update(grad, opt_state, z)
    z = optax.apply_updates(z, updates)
    if latent_reg == 'sphere':
      z = _project_sphere(z)
    return (z, opt_state, best_z, best_loss, best_mse), None

  carry = (z, tx.init(z), z, inf, inf)
  (z, _, best_z, best_loss, best_mse), _ = jax.lax.scan(body, carry, None, length=steps)
  loss, mse = per_sample(z)  # the last iterate
  better = loss < best_loss
  best_z = jnp.where(better[:, None], z, best_z)
  best_loss = jnp.where(better, loss, best_loss)
  best_mse = jnp.where(better, mse, best_mse)
  restart_loss = best_loss.reshape(n, restarts)
  restart_mse = best_mse.reshape(n, restarts)
  pick = jnp.argmin(restart_loss, axis=1)
  z_best = best_z.reshape(n, restarts, d)[jnp.arange(n), pick]
  images = _run_g(gan, params, stats, z_best, labels)
  mse = jnp.mean(jnp.square(images - targets), axis=(1, 2, 3))
  return z_best, images, mse, restart_loss[jnp.arange(n), pick], restart_loss, restart_mse


def initial_latents(key: jax.Array, num_images: int, restarts: int, latent_dim: int) -> jax.Array:
  """The random starts of `invert`: start r of image i is N(0, I) drawn with
  `fold_in(fold_in(key, i), r)`, so it does not depend on N, R or the chunking (more
  restarts add starts and never change the first ones).

  Returns:
    float32 `[num_images, restarts, latent_dim]`.
  """

  def one(i, r):
    return jax.random.normal(
      jax.random.fold_in(jax.random.fold_in(key, i), r), (latent_dim,), jnp.float32
    )

  images, starts = jnp.arange(num_images), jnp.arange(restarts)
  return jax.vmap(lambda i: jax.vmap(lambda r: one(i, r))(starts))(images)


def invert(
  gan: GAN,
  state: GANState,
  images: ArrayLike,
  *,
  key: jax.Array,
  steps: int = 300,
  restarts: int = 4,
  lr: float = 0.1,
  feature_fn: FeatureFn | None = None,
  feature_weight: float = 1.0,
  latent_reg: str | None = 'norm',
  latent_weight: float = 0.01,
  batch_size: int = 64,
  use_ema: bool = True,
  labels: ArrayLike | None = None,
  per_layer: bool = False,
) -> Inversion:
  """GAN inversion by optimisation: z* = argmin_z L(G(z), x) for each real image x.

  The objective per image is

      L(z) = mean_pixels (G(z) - x)^2
             + feature_weight * perceptual_distance(feature_fn(G(z)), feature_fn(x))
             + latent_weight * (|z|^2 / d - 1)^2            (latent_reg='norm')

  minimised with Adam (Kingma & Ba 2015) for `steps` steps from `restarts` random starts
  z ~ N(0, I) per image (`initial_latents`); every (image, restart) pair is optimised at
  once, `batch_size` images (x R restarts) per jitted call of one `lax.scan`. The result
  keeps, per image, the iterate with the lowest objective over all restarts and steps, so
  more restarts (same key) or more steps never give a higher objective.

  Latent regularisation: a GAN is trained on z ~ N(0, I), whose samples concentrate near the
  sphere |z| = sqrt(d); an unconstrained optimum may drift far from it, where G is
  untrained and edits fitted on prior samples (`fit_attribute_direction`) transfer badly.
  `latent_reg='norm'` (default) adds the soft penalty (|z|^2/d - 1)^2, which is zero on that
  sphere and leaves the direction of z free; 'sphere' projects z onto |z| = sqrt(d) after
  every Adam step (projected gradient, as in PULSE, Menon et al. 2020), a hard constraint;
  None does neither (lowest pixel error, least typical latents).

  Per-layer latents ("z per layer", Abdal et al. 2019's W+ for StyleGAN) need a generator
  that takes a latent per layer; gan_jax's MLP, DCGAN and SNGAN generators take one z, so
  only the single-z form applies and `per_layer=True` raises (the hook for such models).

  Args:
    gan: the static G/D definitions.
    state: the run's state; G runs in inference mode (BatchNorm running averages).
    images: float32 `[N, H, W, C]` in [-1, 1], with (H, W, C) = `gan.image_shape`.
    key: PRNG key of the random starts.
    steps: Adam steps per start, >= 1.
    restarts: R >= 1 random starts per image.
    lr: Adam learning rate.
    feature_fn: optional jittable `f(images [B, H, W, C]) -> [B, K]` features for the
      perceptual term, e.g. `lenet_feature_fn('mnist')`; None: pixel MSE only.
    feature_weight: weight of the perceptual term (ignored without `feature_fn`).
    latent_reg: None, 'norm' or 'sphere' (see above).
    latent_weight: weight of the 'norm' penalty.
    batch_size: images per jitted call (the last chunk is padded, so one compilation).
    use_ema: invert the EMA generator.
    labels: int32 `[N]` class labels of a class-conditional G (held fixed).
    per_layer: per-layer latents; not supported by gan_jax's generators (raises).

  Returns:
    an `Inversion` of numpy arrays (z, reconstructions, pixel MSE, objectives).

  Raises:
    ValueError: images of the wrong shape or not float, steps / restarts / batch_size < 1,
      an unknown latent_reg, or per_layer=True.
  """
  if per_layer:
    raise ValueError(
      'per-layer latents need a generator with one latent input per layer (e.g. StyleGAN '
      'W+); the MLP, DCGAN and SNGAN generators of gan_jax take one z, so invert in z.'
    )
  if latent_reg not in LATENT_REGS:
    raise ValueError(f'latent_reg={latent_reg!r} must be one of {LATENT_REGS}.')
  for name, value in (('steps', steps), ('restarts', restarts), ('batch_size', batch_size)):
    if int(value) < 1:
      raise ValueError(f'{name}={value!r} must be >= 1.')
  x = _check_images(gan, images)
  n = x.shape[0]
  y = None if labels is None else jnp.asarray(labels, jnp.int32)
  z0 = initial_latents(key, n, restarts, gan.latent_dim).reshape(n * restarts, -1)
  params, stats = _params(state, use_ema), state.g_batch_stats
  chunk = min(batch_size, n)
  outs = []
  for lo in range(0, n, chunk):
    hi = min(lo + chunk, n)
    pad = chunk - (hi - lo)
    idx = np.concatenate([np.arange(lo, hi), np.full(pad, lo)]).astype(np.int32)
    zi = z0.reshape(n, restarts, -1)[idx].reshape(chunk * restarts, -1)
    out = _invert_chunk(
      gan,
      params,
      stats,
      x[idx],
      zi,
      None if y is None else y[idx],
      jnp.float32(feature_weight),
      jnp.float32(latent_weight),
      feature_fn=feature_fn,
      steps=int(steps),
      lr=float(lr),
      latent_reg=latent_reg,
      restarts=int(restarts),
    )
    outs.append([np.asarray(a)[: hi - lo] for a in out])
  z, recon, mse, loss, restart_loss, restart_mse = (np.concatenate(a) for a in zip(*outs))
  return Inversion(z, recon, mse, loss, restart_loss, restart_mse)


def _check_images(gan: GAN, images: ArrayLike) -> jax.Array:
  shape = tuple(np.shape(images))
  if len(shape) != 4 or shape[1:] != tuple(gan.image_shape) or shape[0] < 1:
    raise ValueError(
      f'images must be [N, {", ".join(map(str, gan.image_shape))}] (this generator\'s '
      f'shape), got {shape}.'
    )
  if not np.issubdtype(np.asarray(images).dtype, np.floating):
    raise ValueError(
      f'images must be float in [-1, 1], got dtype {np.asarray(images).dtype}; '
      'scale uint8 images as x / 127.5 - 1.'
    )
  return jnp.asarray(images, jnp.float32)


# ------------------------------------------------------------------------------------------
# 3. Attributes and their directions (InterFaceGAN).


def ink_mass(images: jax.Array) -> jax.Array:
  """Stroke thickness as the mean ink: mean over pixels of (x + 1) / 2.

  Args:
    images: float `[B, H, W, C]` in [-1, 1] (-1 = black background of MNIST).

  Returns:
    float32 `[B]` in [0, 1] (mean brightness for RGB images).
  """
  return jnp.mean((jnp.asarray(images, jnp.float32) + 1.0) / 2.0, axis=(1, 2, 3))


def _logits_of(classifier: Any) -> Callable[[jax.Array], jax.Array]:
  apply = getattr(classifier, 'apply', None)
  if apply is not None:  # a gan_jax.metrics.features.FeatureNet: (features, logits)
    return lambda images: apply(images)[1]
  return classifier


def class_attribute(classifier: Any, k: int, kind: str = 'prob') -> AttributeFn:
  """An attribute function: a classifier's belief that an image is of class k.

  Args:
    classifier: a `FeatureNet` (e.g. `gan_jax.metrics.lenet.load_lenet('mnist')`, whose
      `apply` returns (features, logits)) or any jittable `f(images) -> logits [B, K]`.
    k: the class, 0 <= k < K.
    kind: 'prob' (softmax probability of k, in [0, 1]), 'log_odds' (logit_k - logsumexp of
      the other logits, real) or 'decision' (1.0 where argmax is k, else 0.0: a binary
      attribute).

  Returns:
    `attribute(images float32 [B, H, W, C] in [-1, 1]) -> float32 [B]`, jittable.

  Raises:
    ValueError: unknown kind or a negative k (k >= K raises when first called).
  """
  if kind not in ('prob', 'log_odds', 'decision'):
    raise ValueError(f"kind={kind!r} must be 'prob', 'log_odds' or 'decision'.")
  if k < 0:
    raise ValueError(f'class k={k} must be >= 0.')
  logits_fn = _logits_of(classifier)

  def attribute(images: jax.Array) -> jax.Array:
    logits = jnp.asarray(logits_fn(images), jnp.float32)
    if k >= logits.shape[-1]:
      raise ValueError(f'class k={k} but the classifier has {logits.shape[-1]} classes.')
    if kind == 'prob':
      return jax.nn.softmax(logits, axis=-1)[:, k]
    if kind == 'decision':
      return (jnp.argmax(logits, axis=-1) == k).astype(jnp.float32)
    others = jnp.delete(logits, k, axis=-1, assume_unique_indices=True)
    return logits[:, k] - jax.nn.logsumexp(others, axis=-1)

  return attribute


@functools.partial(jax.jit, static_argnames=('gan', 'attribute_fn'))
def _attributes_of(gan: GAN, params, stats, z, labels, attribute_fn):
  images = _run_g(gan, params, stats, z, labels)
  return jnp.asarray(attribute_fn(images), jnp.float32)


def sample_attributes(
  gan: GAN,
  state: GANState,
  attribute_fn: AttributeFn,
  key: jax.Array,
  num: int,
  *,
  batch_size: int = 500,
  use_ema: bool = True,
  labels: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """Draws z ~ N(0, I) and labels each by an attribute of G(z) (InterFaceGAN's data).

  Args:
    gan: the static G/D definitions.
    state: the run's state.
    attribute_fn: jittable `f(images float32 [B, H, W, C] in [-1, 1]) -> [B]` (binary 0/1
      or continuous), e.g. `ink_mass` or `class_attribute(net, 3)`. Pass the same function
      object again to reuse its compilation.
    key: PRNG key of the latents.
    num: number of latents, >= 2.
    batch_size: latents per jitted call (the last batch is padded).
    use_ema: use the EMA generator.
    labels: int32 `[num]` class labels of a class-conditional G.

  Returns:
    (z float32 `[num, d]`, values float32 `[num]`), numpy arrays.
  """
  if num < 2:
    raise ValueError(f'num={num} must be >= 2.')
  z = np.asarray(gan.sample_latents(key, num))
  y = None if labels is None else np.asarray(labels, np.int32)
  params, stats = _params(state, use_ema), state.g_batch_stats
  chunk = min(batch_size, num)
  values = []
  for lo in range(0, num, chunk):
    hi = min(lo + chunk, num)
    idx = np.concatenate([np.arange(lo, hi), np.full(chunk - (hi - lo), lo)])
    v = _attributes_of(
      gan, params, stats, z[idx], None if y is None else y[idx], attribute_fn=attribute_fn
    )
    values.append(np.asarray(v)[: hi - lo])
  return z, np.concatenate(values)


def binary_labels(values: ArrayLike, fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
  """Turns attribute values into the two classes a hyperplane separates.

  Binary values (booleans, or only 0 and 1, or only -1 and 1) are used as they are. For
  continuous values InterFaceGAN keeps only the clearest examples: here the `fraction` of
  samples with the highest values (positive) and the `fraction` with the lowest (negative).

  Args:
    values: `[n]` attribute values.
    fraction: 0 < fraction <= 0.5, for continuous values.

  Returns:
    (indices int64 `[m]` of the samples used, labels bool `[m]`, True = positive).

  Raises:
    ValueError: fraction out of range, non-finite values, or a class without samples.
  """
  v = np.asarray(values)
  if v.ndim != 1:
    raise ValueError(f'attribute values must be [n], got shape {v.shape}.')
  if not np.all(np.isfinite(v.astype(np.float64))):
    raise ValueError('attribute values must be finite.')
  uniq = set(np.unique(v).tolist())
  if v.dtype == bool or uniq <= {0, 1} or uniq <= {-1, 1}:
    idx, lab = np.arange(v.shape[0]), v > 0
  else:
    if not 0 < fraction <= 0.5:
      raise ValueError(f'fraction={fraction} must be in (0, 0.5].')
    m = max(1, int(round(fraction * v.shape[0])))
    order = np.argsort(v, kind='stable')
    idx = np.concatenate([order[:m], order[-m:]])
    lab = np.concatenate([np.zeros(m, bool), np.ones(m, bool)])
  if lab.all() or not lab.any():
    raise ValueError(
      f'the attribute has only {"positive" if lab.all() else "negative"} samples among '
      f'{v.shape[0]}; sample more latents or choose another attribute.'
    )
  return idx, lab


def _fit_linear(x: np.ndarray, y: np.ndarray, loss: str, c: float) -> np.ndarray:
  """Weights w (and bias) of an L2-regularised linear classifier, by L-BFGS (scipy).

  Objective (class-balanced sample weights s_i = n / (2 n_class)):
    logistic:  1/2 |w|^2 + C sum_i s_i log(1 + exp(-y_i (w.x_i + b)))
    svm:       1/2 |w|^2 + C sum_i s_i max(0, 1 - y_i (w.x_i + b))^2   (LinearSVC's default
               squared hinge)
  with y_i in {-1, +1}. Returns w `[d]` (float64).
  """
  from scipy import optimize  # pylint: disable=g-import-not-at-top

  n, d = x.shape
  s = np.where(y > 0, 1.0, -1.0)
  n_pos = np.sum(s > 0)
  weight = np.where(s > 0, n / (2.0 * n_pos), n / (2.0 * (n - n_pos)))

  def objective(theta):
    w, b = theta[:d], theta[d]
    margin = s * (x @ w + b)
    if loss == 'logistic':
      value = np.sum(weight * np.logaddexp(0.0, -margin))
      dmargin = -weight / (1.0 + np.exp(np.clip(margin, -50, 50)))
    else:
      slack = np.maximum(0.0, 1.0 - margin)
      value = np.sum(weight * slack**2)
      dmargin = -2.0 * weight * slack
    g = dmargin * s
    grad = np.concatenate([c * (x.T @ g) + w, [c * np.sum(g)]])
    return 0.5 * w @ w + c * value, grad

  res = optimize.minimize(
    objective, np.zeros(d + 1), jac=True, method='L-BFGS-B', options={'maxiter': 1000}
  )
  return res.x[:d]


def fit_direction(
  z: ArrayLike,
  values: ArrayLike,
  method: str = 'svm',
  *,
  fraction: float = 0.2,
  c: float = 1.0,
) -> np.ndarray:
  """The unit normal of a hyperplane in z that separates an attribute (InterFaceGAN).

  Shen et al. 2020 (sec. 2.2-2.3) assume that for a binary attribute there is a hyperplane
  with unit normal n in the latent space such that the attribute changes across it, and
  that moving z along n changes the attribute (`edit`). The normal is fitted on latents
  labelled by the attribute (`binary_labels`):

  * 'svm': a linear SVM, as in the paper: scikit-learn's `LinearSVC(C=c,
    class_weight='balanced')` when scikit-learn is installed, else the same objective (L2
    regularisation, squared hinge loss, a bias) minimised with scipy's L-BFGS;
  * 'logistic': L2-regularised logistic regression (scipy L-BFGS);
  * 'mean_diff': the difference of the two classes' mean latents (for z ~ N(0, I) and a
    linear attribute this is the optimal direction up to sampling noise, with no solver).

  Classes are weighted to equal total weight, so a rare attribute (a class of 10) still
  decides the normal.

  Args:
    z: float `[n, d]` latents.
    values: `[n]` attribute values (binary, or continuous: see `binary_labels`).
    method: 'svm', 'logistic' or 'mean_diff'.
    fraction: for continuous values, the top and bottom fraction of samples used.
    c: inverse regularisation strength of 'svm' and 'logistic'.

  Returns:
    float32 `[d]`, unit norm, pointing towards the positive (higher-valued) side.

  Raises:
    ValueError: unknown method, mismatched shapes, a class without samples, or a
      degenerate (zero) normal.
  """
  if method not in METHODS:
    raise ValueError(f'method={method!r} must be one of {", ".join(METHODS)}.')
  x = np.asarray(z, np.float64)
  if x.ndim != 2 or x.shape[0] != np.shape(values)[0]:
    raise ValueError(
      f'z must be [n, d] and values [n], got shapes {x.shape} and {np.shape(values)}.'
    )
  idx, lab = binary_labels(values, fraction)
  x = x[idx]
  if method == 'mean_diff':
    w = x[lab].mean(0) - x[~lab].mean(0)
  elif method == 'svm' and _sklearn_svc() is not None:
    svc = _sklearn_svc()(C=c, class_weight='balanced', dual='auto', max_iter=10000)
    svc.fit(x, lab.astype(np.int64))
    w = np.asarray(svc.coef_, np.float64).reshape(-1)
  else:
    w = _fit_linear(x, lab, 'logistic' if method == 'logistic' else 'svm', c)
  norm = np.linalg.norm(w)
  if not np.isfinite(norm) or norm < 1e-12:
    raise ValueError('the fitted normal is zero: the attribute does not depend on z linearly.')
  return (w / norm).astype(np.float32)


def _sklearn_svc():
  try:
    from sklearn.svm import LinearSVC  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return LinearSVC


def fit_attribute_direction(
  gan: GAN,
  state: GANState,
  attribute_fn: AttributeFn,
  key: jax.Array,
  *,
  num_latents: int = 5000,
  method: str = 'svm',
  fraction: float = 0.2,
  c: float = 1.0,
  batch_size: int = 500,
  use_ema: bool = True,
  labels: ArrayLike | None = None,
) -> np.ndarray:
  """InterFaceGAN end to end: `sample_attributes`, then `fit_direction`.

  Args:
    gan, state: the run.
    attribute_fn: jittable `f(images [B, H, W, C]) -> [B]` (see `sample_attributes`).
    key: PRNG key of the latents.
    num_latents: latents sampled (InterFaceGAN used 500k for StyleGAN faces; a few
      thousand suffice for an MNIST DCGAN's 100-d z).
    method, fraction, c: as in `fit_direction`.
    batch_size, use_ema, labels: as in `sample_attributes`.

  Returns:
    float32 `[d]` unit normal, pointing towards higher attribute values.
  """
  z, values = sample_attributes(
    gan,
    state,
    attribute_fn,
    key,
    num_latents,
    batch_size=batch_size,
    use_ema=use_ema,
    labels=labels,
  )
  return fit_direction(z, values, method, fraction=fraction, c=c)


def fit_direction_from_images(
  gan: GAN,
  state: GANState,
  images: ArrayLike,
  labels: ArrayLike,
  *,
  key: jax.Array,
  method: str = 'svm',
  fraction: float = 0.2,
  c: float = 1.0,
  **invert_kwargs: Any,
) -> np.ndarray:
  """An attribute direction from real labelled images: invert them, fit on their latents.

  For attributes that no classifier at hand recognises but a dataset labels (CelebA's 40
  binary attributes, `load_celeba_attribute`): every image is inverted (`invert`) and the
  hyperplane is fitted on the inverted latents with the dataset's labels.

  Args:
    gan, state: the run.
    images: float32 `[N, H, W, C]` in [-1, 1].
    labels: `[N]` attribute values (binary, or continuous: see `binary_labels`).
    key: PRNG key of the inversion's random starts.
    method, fraction, c: as in `fit_direction`.
    **invert_kwargs: passed to `invert` (steps, restarts, lr, feature_fn, ...).

  Returns:
    float32 `[d]` unit normal, pointing towards the positive label.
  """
  inv = invert(gan, state, images, key=key, **invert_kwargs)
  return fit_direction(inv.z, np.asarray(labels), method, fraction=fraction, c=c)


@jax.jit
def edit(z: ArrayLike, direction: ArrayLike, strength: ArrayLike) -> jax.Array:
  """Moves latents along a direction: z + strength * direction (Shen et al. 2020, eq. 3).

  Args:
    z: float `[..., d]` latents.
    direction: float `[d]`, usually a unit normal from `fit_direction`.
    strength: scalar or array broadcastable against the batch shape `[...]` (e.g. `[S]`
      with z `[N, 1, d]` gives `[N, S, d]`); in units of |direction|.

  Returns:
    float32 `[broadcast(..., strength.shape), d]`.
  """
  z = jnp.asarray(z, jnp.float32)
  direction = jnp.asarray(direction, jnp.float32)
  return z + jnp.asarray(strength, jnp.float32)[..., None] * direction


def orthogonalize(direction: ArrayLike, others: ArrayLike, eps: float = 1e-6) -> np.ndarray:
  """Conditional manipulation: removes from `direction` its component along other attributes.

  Shen et al. 2020, eq. 5, for one other attribute n2: n1 - (n1 . n2) n2. For several,
  the projection onto the orthogonal complement of span(others), found by least squares
  (`numpy.linalg.lstsq`, which also handles linearly dependent `others`): r = n - A c with
  c = argmin |A c - n|, A = others^T. Editing along r changes the first attribute while
  holding the others (to first order: their linear scores n_j . z do not move).

  Args:
    direction: float `[d]`.
    others: float `[k, d]` (or `[d]` for one) directions to hold; k = 0 is allowed.

  Returns:
    float32 `[d]`, unit norm, orthogonal to every row of `others`; `direction / |direction|`
    when it is already orthogonal to them.

  Raises:
    ValueError: mismatched shapes, or a direction that lies in span(others) (nothing left).
  """
  n = np.asarray(direction, np.float64)
  a = np.asarray(others, np.float64)
  if a.ndim == 1:
    a = a[None]
  if n.ndim != 1 or a.ndim != 2 or (a.shape[0] and a.shape[1] != n.shape[0]):
    raise ValueError(
      f'direction must be [d] and others [k, d], got {n.shape} and {np.shape(others)}.'
    )
  if a.shape[0]:
    coef, *_ = np.linalg.lstsq(a.T, n, rcond=None)
    r = n - a.T @ coef
  else:
    r = n
  norm = np.linalg.norm(r)
  if norm <= eps * max(np.linalg.norm(n), 1e-30):
    raise ValueError('the direction lies in the span of the others: nothing is left to edit.')
  return (r / norm).astype(np.float32)


def save_direction(path: str, direction: ArrayLike, **meta: Any) -> str:
  """Writes a direction (float32 `[d]`) and scalar metadata to an .npz file; returns path."""
  import os  # pylint: disable=g-import-not-at-top

  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f'{path}.tmp.npz'
  np.savez(tmp, direction=np.asarray(direction, np.float32), **meta)
  os.replace(tmp, path)
  return path


def load_direction(path: str) -> tuple[np.ndarray, dict[str, Any]]:
  """Reads `save_direction`'s file: (direction float32 `[d]`, metadata dict).

  Raises:
    FileNotFoundError: no such file. ValueError: the file is no .npz archive (garbled, cut
      short), holds no 1-D 'direction', or its direction is non-finite or zero (it would
      turn every edit into NaN or into no edit).
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: no such file.')
  try:
    f = np.load(path)
  except (EOFError, OSError, zipfile.BadZipFile) as e:
    raise ValueError(f'{path} is not a readable .npz file ({type(e).__name__}: {e}).') from None
  if not isinstance(f, np.lib.npyio.NpzFile):
    raise ValueError(f'{path} is a .npy array, not the .npz file save_direction writes.')
  try:
    with f:
      if 'direction' not in f or f['direction'].ndim != 1:
        raise ValueError(f'{path} holds no 1-D array named "direction".')
      meta = {k: f[k].item() for k in f.files if k != 'direction' and f[k].ndim == 0}
      direction = np.asarray(f['direction'], np.float32)
  except (EOFError, OSError, zipfile.BadZipFile) as e:
    raise ValueError(f'{path} is not a readable .npz file ({type(e).__name__}: {e}).') from None
  if not np.all(np.isfinite(direction)) or not np.any(direction):
    raise ValueError(f'{path}: the direction is non-finite or zero; fit it again.')
  return direction, meta


# ------------------------------------------------------------------------------------------
# CelebA.

CELEBA_CROP = 140  # central square crop of the 218x178 aligned faces before resizing


def celeba_crop_resize(images: ArrayLike, size: int = 64, crop: int = CELEBA_CROP) -> np.ndarray:
  """Central `crop` x `crop` square of aligned CelebA faces, resized to `size` x `size`.

  Args:
    images: uint8 (or float in [0, 255]) `[N, H, W, 3]`, e.g. CelebA's `[N, 218, 178, 3]`.
    size: output height and width.
    crop: side of the central square (clipped to min(H, W)).

  Returns:
    float32 `[N, size, size, 3]` in [-1, 1] (bilinear, antialiased: `jax.image.resize`).
  """
  x = np.asarray(images, np.float32)
  h, w = x.shape[1:3]
  s = min(crop, h, w)
  top, left = (h - s) // 2, (w - s) // 2
  x = x[:, top : top + s, left : left + s]
  x = jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), 'linear', antialias=True)
  return np.clip(np.asarray(x) / 127.5 - 1.0, -1.0, 1.0)


def load_celeba_attribute(
  attribute: str,
  split: str = 'test[:2000]',
  *,
  data_dir: str | None = None,
  size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
  """Real CelebA images and one of their 40 binary attributes (TFDS `celeb_a`).

  Args:
    attribute: a CelebA attribute name, e.g. 'Smiling', 'Eyeglasses', 'Male'.
    split: TFDS split (slicing allowed).
    data_dir: TFDS data dir holding a prepared `celeb_a` (None: TFDS_DATA_DIR / default).
    size: output size (`celeba_crop_resize`).

  Returns:
    (images float32 `[N, size, size, 3]` in [-1, 1], labels bool `[N]`), for
    `fit_direction_from_images`.

  Raises:
    ValueError: unknown attribute (the message lists the 40 names).
    tensorflow_datasets errors: celeb_a is not prepared in data_dir.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  from gan_jax.tfds_images import keep_tensorflow_on_cpu  # pylint: disable=g-import-not-at-top

  keep_tensorflow_on_cpu()
  builder = tfds.builder('celeb_a', data_dir=data_dir)
  names = sorted(builder.info.features['attributes'].keys())
  if attribute not in names:
    raise ValueError(f'unknown CelebA attribute {attribute!r}; choose from {", ".join(names)}.')
  ds = builder.as_dataset(split=split, shuffle_files=False)
  images, labels = [], []
  for ex in tfds.as_numpy(ds.batch(256)):
    images.append(celeba_crop_resize(ex['image'], size))
    labels.append(np.asarray(ex['attributes'][attribute], bool))
  return np.concatenate(images), np.concatenate(labels)


def attribute_names(dataset: str, image_shape: Sequence[int]) -> list[str]:
  """The attribute names `gan-jax edit --attribute` knows for a run: 'ink' always, and
  'class_0'..'class_9' when a pinned LeNet classifies its images (MNIST, Fashion-MNIST at
  28x28x1)."""
  from gan_jax.metrics import lenet  # pylint: disable=g-import-not-at-top

  names = ['ink']
  if dataset in lenet.WEIGHTS and tuple(image_shape) == lenet.IMAGE_SHAPE:
    names += [f'class_{k}' for k in range(lenet.NUM_CLASSES)]
  return names
