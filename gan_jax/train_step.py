"""The GAN train step as a pure function, and its data-parallel jit over a device mesh.

`make_train_step(gan, ...)` returns `train_step(state, batch) -> (state, metrics)`: `n_critic`
discriminator updates, then one generator update (Goodfellow et al. 2014, Algorithm 1).
`jit_train_step` compiles it once for a mesh with a 'data' axis: the batch is sharded along
its batch dimension, the state is replicated and donated. Under `jax.jit` with sharded
inputs XLA inserts the gradient all-reduce and synchronises BatchNorm statistics over the
global batch, so the result equals the single-device step up to float32 reduction order.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from gan_jax.losses import GANLoss
from gan_jax.sharding import batch_sharding, replicated
from gan_jax.state import GAN, GANState

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]
TrainStep = Callable[[GANState, Batch], tuple[GANState, Metrics]]

METRIC_NAMES = ('d_loss', 'g_loss', 'd_real', 'd_fake', 'd_grad_norm', 'g_grad_norm')


def make_train_step(
  gan: GAN, loss: GANLoss, *, n_critic: int = 1, ema_decay: float = 0.0, mesh: Mesh | None = None
) -> TrainStep:
  """Builds the (unjitted) train step.

  Each step draws its noise from `fold_in(state.rng, state.step)`, so a step's result depends
  only on the state and the batch: same config + same seed = same bits.

  Args:
    gan: static G/D definitions and optimizers (from `gan_jax.state.create_state`).
    loss: the adversarial loss pair (`gan_jax.losses.get_loss`).
    n_critic: discriminator updates per generator update (1 for DCGAN, 5 for WGAN), >= 1.
    ema_decay: decay of the generator EMA in [0, 1); 0 keeps `ema_params == g_params`.
    mesh: the mesh the step will run on (`jit_train_step`'s). When given, the latent batch
      is sharded over 'data' like the real batch, so each device generates only its share
      of the fakes; without it XLA may compute G on the full batch on every device.

  Returns:
    `train_step(state, batch) -> (new_state, metrics)` where `batch['image']` is float32
    `[n_critic, B, H, W, C]` in [-1, 1] (one real batch per D update; `[B, H, W, C]` is
    accepted when n_critic == 1) and metrics are float32 scalars:
    d_loss (mean over the n_critic D updates), g_loss, d_real = mean D(x) and
    d_fake = mean D(G(z)) as probabilities in [0, 1] (last D update), d_grad_norm,
    g_grad_norm (global L2 norms of the last D gradient and of the G gradient).

  Raises:
    ValueError: if n_critic < 1 or ema_decay is outside [0, 1).
  """
  if n_critic < 1:
    raise ValueError(f'train.n_critic={n_critic} must be >= 1.')
  if not 0.0 <= ema_decay < 1.0:
    raise ValueError(f'train.ema_decay={ema_decay} must be in [0, 1); 0 disables the EMA.')

  def d_loss_fn(d_params, d_stats, real, fake):
    real_logits, d_stats = gan.discriminate(d_params, d_stats, real, train=True)
    fake_logits, d_stats = gan.discriminate(d_params, d_stats, fake, train=True)
    return loss.d(real_logits, fake_logits), (d_stats, real_logits, fake_logits)

  def g_loss_fn(g_params, g_stats, d_params, d_stats, z):
    fake, g_stats = gan.generate(g_params, g_stats, z, train=True)
    # D's statistics from this pass are discarded: the G step does not change D.
    fake_logits, _ = gan.discriminate(d_params, d_stats, fake, train=True)
    return loss.g(fake_logits), g_stats

  def latents(key: jax.Array, batch_size: int) -> jax.Array:
    z = gan.sample_latents(key, batch_size)
    if mesh is not None:  # threefry is partitionable: same values, generated in shards
      z = jax.lax.with_sharding_constraint(z, batch_sharding(mesh, batch_axis=0))
    return z

  def train_step(state: GANState, batch: Batch) -> tuple[GANState, Metrics]:
    images = batch['image']
    if images.ndim == 4 and n_critic == 1:
      images = images[None]
    if images.ndim != 5 or images.shape[0] != n_critic:
      raise ValueError(
        f"batch['image'] must be [n_critic={n_critic}, B, H, W, C], got {images.shape}."
      )
    batch_size = images.shape[1]
    rng = jax.random.fold_in(state.rng, state.step)
    keys = jax.random.split(rng, n_critic + 1)

    d_params, d_stats, d_opt_state = state.d_params, state.d_batch_stats, state.d_opt_state
    d_losses = []
    for i in range(n_critic):
      z = latents(keys[i], batch_size)
      fake, _ = gan.generate(state.g_params, state.g_batch_stats, z, train=True)
      fake = jax.lax.stop_gradient(fake)
      (d_loss, (d_stats, real_logits, fake_logits)), d_grads = jax.value_and_grad(
        d_loss_fn, has_aux=True
      )(d_params, d_stats, images[i], fake)
      updates, d_opt_state = gan.d_tx.update(d_grads, d_opt_state, d_params)
      d_params = optax.apply_updates(d_params, updates)
      d_losses.append(d_loss)

    z = latents(keys[n_critic], batch_size)
    (g_loss, g_stats), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
      state.g_params, state.g_batch_stats, d_params, d_stats, z
    )
    updates, g_opt_state = gan.g_tx.update(g_grads, state.g_opt_state, state.g_params)
    g_params = optax.apply_updates(state.g_params, updates)
    if ema_decay > 0:
      ema_params = optax.incremental_update(g_params, state.ema_params, 1.0 - ema_decay)
    else:
      ema_params = g_params

    new_state = state.replace(
      step=state.step + 1,
      g_params=g_params,
      g_batch_stats=g_stats,
      d_params=d_params,
      d_batch_stats=d_stats,
      g_opt_state=g_opt_state,
      d_opt_state=d_opt_state,
      ema_params=ema_params,
    )
    metrics = {
      'd_loss': jnp.mean(jnp.stack(d_losses)),
      'g_loss': g_loss,
      'd_real': jnp.mean(jax.nn.sigmoid(real_logits)),
      'd_fake': jnp.mean(jax.nn.sigmoid(fake_logits)),
      'd_grad_norm': optax.tree.norm(d_grads),
      'g_grad_norm': optax.tree.norm(g_grads),
    }
    return new_state, metrics

  return train_step


def jit_train_step(train_step: TrainStep, mesh: Mesh, *, donate: bool = True) -> TrainStep:
  """Compiles `train_step` data-parallel over `mesh`.

  Args:
    train_step: from `make_train_step`.
    mesh: a mesh with a 'data' axis (`make_mesh()`).
    donate: donate the input state's buffers to the output (the caller must not reuse the
      state it passed in).

  Returns:
    The jitted step. Inputs: a replicated `GANState` and a batch whose arrays are sharded
    along axis 1 (`batch_sharding(mesh)`); outputs: the replicated new state and replicated
    scalar metrics.
  """
  rep = replicated(mesh)
  return jax.jit(
    train_step,
    in_shardings=(rep, batch_sharding(mesh)),
    out_shardings=(rep, rep),
    donate_argnums=(0,) if donate else (),
  )
