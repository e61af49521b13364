"""Running a trained G for the latent-space tools (`gan_jax.latent`): inference mode (BatchNorm
running averages, or the statistics a caller gives: `batch_stats`), the EMA generator unless
asked otherwise, labels only when given.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from gan_jax.core.state import GAN, GANState

ArrayLike = Any


def generator_params(state: GANState, use_ema: bool):
  """G's parameters: the EMA generator's (`state.ema_params`) if `use_ema`, else `g_params`."""
  return state.ema_params if use_ema else state.g_params


def generator_stats(state: GANState, batch_stats: Any = None):
  """G's BatchNorm statistics: `batch_stats` when given (e.g. the EMA generator's standing
  statistics from `gan_jax.core.sampling.sampling_batch_stats`), else `state.g_batch_stats`
  (the raw generator's running averages)."""
  return state.g_batch_stats if batch_stats is None else batch_stats


def run_g(gan: GAN, params, stats, z: jax.Array, labels: jax.Array | None) -> jax.Array:
  """G in inference mode; `labels` reach `GAN.generate` only when given."""
  extra = {} if labels is None else {'labels': labels}
  images, _ = gan.generate(params, stats, z, train=False, **extra)
  return images


@functools.partial(jax.jit, static_argnames=('gan',))
def _generate(gan: GAN, params, stats, z, labels):
  return run_g(gan, params, stats, z, labels)


def generate(
  gan: GAN,
  state: GANState,
  z: ArrayLike,
  *,
  use_ema: bool = True,
  labels: ArrayLike | None = None,
  batch_stats: Any = None,
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
    batch_stats: G's BatchNorm statistics instead of `state.g_batch_stats`, e.g. the ones
      a run's policy gives the EMA generator (`gan_jax.core.sampling.sampling_batch_stats`);
      None: `state.g_batch_stats`.

  Returns:
    float32 `[N, H, W, C]` in [-1, 1].

  Raises:
    ValueError: if z is not `[N, gan.latent_dim]`.
  """
  z = check_latents(gan, z)
  labels = None if labels is None else jnp.asarray(labels)
  params, stats = generator_params(state, use_ema), generator_stats(state, batch_stats)
  return _generate(gan, params, stats, z, labels)


def check_latents(gan: GAN, z: ArrayLike) -> jax.Array:
  """`z` as float32 `[N, d]`; raises ValueError unless it is `[N, gan.latent_dim]`."""
  z = jnp.asarray(z, jnp.float32)
  if z.ndim != 2 or z.shape[1] != gan.latent_dim:
    raise ValueError(f'latents must be [N, {gan.latent_dim}], got shape {tuple(z.shape)}.')
  return z
