"""Adversarial losses on discriminator logits.

Every function takes raw discriminator outputs (logits, float32 `[B]` or `[B, 1]`, any
real value) and returns a float32 scalar. The sigmoid lives here, not in the discriminator:
`D(x) = sigmoid(logit)`, and every log-probability is written with `softplus` so that
logits of +-100 (or +-1e4) give finite values and finite gradients:

    log D(x)       = log sigmoid(l)     = -softplus(-l)
    log(1 - D(x))  = log sigmoid(-l)    = -softplus(l)

Reference: Goodfellow et al. 2014, "Generative Adversarial Nets", eq. 1 (the value function
V(D, G)) and section 3 (the non-saturating generator objective).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


def _flat(logits: Array, name: str) -> Array:
  logits = jnp.asarray(logits)
  if logits.ndim == 2 and logits.shape[-1] == 1:
    logits = logits[:, 0]
  if logits.ndim != 1:
    raise ValueError(
      f'{name} must have shape [B] or [B, 1] (one logit per image), got {logits.shape}.'
    )
  return logits.astype(jnp.float32)


def d_minimax_loss(real_logits: Array, fake_logits: Array) -> Array:
  """Discriminator loss of the minimax GAN (Goodfellow et al. 2014, eq. 1).

  `L_D = -E_x[log D(x)] - E_z[log(1 - D(G(z)))]`, i.e. binary cross-entropy with label 1
  for real and 0 for generated images, computed as
  `mean(softplus(-real_logits)) + mean(softplus(fake_logits))`.
  The same discriminator loss serves both the minimax and the non-saturating GAN.

  Args:
    real_logits: D's logits on real images, float `[B]` or `[B, 1]`.
    fake_logits: D's logits on generated images, float `[B']` or `[B', 1]`.

  Returns:
    float32 scalar in [0, inf); log(4) ~= 1.386 when D outputs 0.5 everywhere.

  Raises:
    ValueError: if a logits array is not `[B]` or `[B, 1]`.
  """
  real_logits = _flat(real_logits, 'real_logits')
  fake_logits = _flat(fake_logits, 'fake_logits')
  return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def g_minimax_loss(fake_logits: Array) -> Array:
  """Generator loss of the original (saturating) minimax GAN (Goodfellow et al. 2014, eq. 1).

  `L_G = E_z[log(1 - D(G(z)))] = -mean(softplus(fake_logits))`. It saturates (vanishing
  gradient) when D confidently rejects the samples; kept for ablations.

  Args:
    fake_logits: D's logits on generated images, float `[B]` or `[B, 1]`.

  Returns:
    float32 scalar in (-inf, 0]; -log(2) ~= -0.693 when D outputs 0.5.

  Raises:
    ValueError: if `fake_logits` is not `[B]` or `[B, 1]`.
  """
  return -jnp.mean(jax.nn.softplus(_flat(fake_logits, 'fake_logits')))


def g_nonsaturating_loss(fake_logits: Array) -> Array:
  """Non-saturating generator loss (Goodfellow et al. 2014, section 3).

  `L_G = -E_z[log D(G(z))] = mean(softplus(-fake_logits))`: the same fixed point as the
  minimax game but strong gradients early in training, when D rejects the samples.

  Args:
    fake_logits: D's logits on generated images, float `[B]` or `[B, 1]`.

  Returns:
    float32 scalar in [0, inf); log(2) ~= 0.693 when D outputs 0.5.

  Raises:
    ValueError: if `fake_logits` is not `[B]` or `[B, 1]`.
  """
  return jnp.mean(jax.nn.softplus(-_flat(fake_logits, 'fake_logits')))


class GANLoss(NamedTuple):
  """A discriminator loss `d(real_logits, fake_logits)` and a generator loss `g(fake_logits)`."""

  d: Callable[[Array, Array], Array]
  g: Callable[[Array], Array]


LOSSES: dict[str, GANLoss] = {
  'non_saturating': GANLoss(d=d_minimax_loss, g=g_nonsaturating_loss),
  'minimax': GANLoss(d=d_minimax_loss, g=g_minimax_loss),
}


def get_loss(name: str) -> GANLoss:
  """Returns the (D loss, G loss) pair registered under `name`.

  Args:
    name: one of `LOSSES`: 'non_saturating' (default in the configs) or 'minimax'.

  Raises:
    ValueError: for an unknown name, listing the valid ones.
  """
  if name not in LOSSES:
    raise ValueError(f'train.loss={name!r} is not a known loss; choose one of {sorted(LOSSES)}.')
  return LOSSES[name]
