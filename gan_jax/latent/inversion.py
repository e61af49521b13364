"""GAN inversion (`gan_jax.latent`, section 2 of its docstring): the latent z with G(z) ~ x for
real images x, by Adam from several random starts, in one jitted `lax.scan`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gan_jax.latent.generator import ArrayLike, generator_params, generator_stats, run_g
from gan_jax.core.state import GAN, GANState

FeatureFn = Callable[[jax.Array], jax.Array]

LATENT_REGS = (None, 'norm', 'sphere')


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
    images = run_g(gan, params, stats, z, y)
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
  images = run_g(gan, params, stats, z_best, labels)
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
  batch_stats: Any = None,
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
    batch_stats: G's BatchNorm statistics (None: `state.g_batch_stats`; see
      `gan_jax.latent.generator.generate`).

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
  params, stats = generator_params(state, use_ema), generator_stats(state, batch_stats)
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
