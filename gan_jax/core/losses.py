"""Adversarial losses on discriminator outputs.

Every function takes raw discriminator outputs (logits or critic scores, float `[B]` or
`[B, 1]`, any real value) and returns a float32 scalar. Where a loss reads D's output as a
probability, the sigmoid lives here, not in the discriminator: `D(x) = sigmoid(logit)`, and
every log-probability is written with `softplus` so that logits of +-100 (or +-1e4) give
finite values and finite gradients:

    log D(x)       = log sigmoid(l)     = -softplus(-l)
    log(1 - D(x))  = log sigmoid(-l)    = -softplus(l)

Losses are registered in `LOSSES` as `GANLoss(d, g, g_needs_real)` pairs:

  * 'non_saturating', 'minimax': Goodfellow et al. 2014, eq. 1 and section 3.
  * 'wasserstein': Arjovsky et al. 2017 (WGAN), eq. 3; needs a Lipschitz critic.
  * 'hinge': Lim & Ye 2017; Miyato et al. 2018, eqs. 16-17.
  * 'least_squares': Mao et al. 2017 (LSGAN), eq. 2 with a=0, b=1, c=1.
  * 'relativistic_average': Jolicoeur-Martineau 2018 (RaSGAN), section 4.3.
  * 'rpgan': Jolicoeur-Martineau 2019 (relativistic pairing, RSGAN), the RpGAN objective
    of R3GAN (Huang et al. 2024).

`class_cross_entropy` is the auxiliary classification loss of AC-GAN (Odena et al. 2017),
added by the train step for `model.d_conditioning='acgan'`.

All discriminator losses are `d(real_logits, fake_logits)`; all generator losses are
`g(fake_logits, real_logits=None)`. Only the relativistic generator losses read
`real_logits` (their `GANLoss.g_needs_real` is True); the others accept and ignore it, so a
train step can call every G loss the same way.
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


def g_minimax_loss(fake_logits: Array, real_logits: Array | None = None) -> Array:
  """Generator loss of the original (saturating) minimax GAN (Goodfellow et al. 2014, eq. 1).

  `L_G = E_z[log(1 - D(G(z)))] = -mean(softplus(fake_logits))`. It saturates (vanishing
  gradient) when D confidently rejects the samples; kept for ablations.

  Args:
    fake_logits: D's logits on generated images, float `[B]` or `[B, 1]`.
    real_logits: ignored (the common G-loss signature; see the module docstring).

  Returns:
    float32 scalar in (-inf, 0]; -log(2) ~= -0.693 when D outputs 0.5.

  Raises:
    ValueError: if `fake_logits` is not `[B]` or `[B, 1]`.
  """
  del real_logits  # Unused: the common G-loss signature.
  return -jnp.mean(jax.nn.softplus(_flat(fake_logits, 'fake_logits')))


def g_nonsaturating_loss(fake_logits: Array, real_logits: Array | None = None) -> Array:
  """Non-saturating generator loss (Goodfellow et al. 2014, section 3).

  `L_G = -E_z[log D(G(z))] = mean(softplus(-fake_logits))`: the same fixed point as the
  minimax game but strong gradients early in training, when D rejects the samples.

  Args:
    fake_logits: D's logits on generated images, float `[B]` or `[B, 1]`.
    real_logits: ignored (the common G-loss signature; see the module docstring).

  Returns:
    float32 scalar in [0, inf); log(2) ~= 0.693 when D outputs 0.5.

  Raises:
    ValueError: if `fake_logits` is not `[B]` or `[B, 1]`.
  """
  del real_logits  # Unused: the common G-loss signature.
  return jnp.mean(jax.nn.softplus(-_flat(fake_logits, 'fake_logits')))


def d_wasserstein_loss(real_logits: Array, fake_logits: Array) -> Array:
  """Critic loss of the Wasserstein GAN (Arjovsky et al. 2017, eq. 3 and Algorithm 1).

  `L_D = E_z[f(G(z))] - E_x[f(x)] = mean(fake_logits) - mean(real_logits)`: the critic `f`
  maximises `E_x[f(x)] - E_z[f(G(z))]`, which estimates the Wasserstein-1 distance only if
  `f` is 1-Lipschitz. The loss is unbounded below without a Lipschitz constraint, so it must
  be paired with one: weight clipping (`gan_jax.core.regularizers.clip_weights`, the paper's), a
  gradient penalty (`gan_jax.core.regularizers.gradient_penalty`, Gulrajani et al. 2017) or
  spectral normalisation (Miyato et al. 2018). The critic outputs unbounded scores, not
  logits of a probability.

  Args:
    real_logits: critic scores on real images, float `[B]` or `[B, 1]`.
    fake_logits: critic scores on generated images, float `[B']` or `[B', 1]`.

  Returns:
    float32 scalar in (-inf, inf); minus the critic's Wasserstein-1 estimate.

  Raises:
    ValueError: if a scores array is not `[B]` or `[B, 1]`.
  """
  real_logits = _flat(real_logits, 'real_logits')
  fake_logits = _flat(fake_logits, 'fake_logits')
  return jnp.mean(fake_logits) - jnp.mean(real_logits)


def g_wasserstein_loss(fake_logits: Array, real_logits: Array | None = None) -> Array:
  """Generator loss of the Wasserstein GAN (Arjovsky et al. 2017, Algorithm 1).

  `L_G = -E_z[f(G(z))] = -mean(fake_logits)`. Also the generator loss of the hinge GAN
  (Miyato et al. 2018, eq. 17).

  Args:
    fake_logits: critic scores on generated images, float `[B]` or `[B, 1]`.
    real_logits: ignored (the common G-loss signature; see the module docstring).

  Returns:
    float32 scalar in (-inf, inf).

  Raises:
    ValueError: if `fake_logits` is not `[B]` or `[B, 1]`.
  """
  del real_logits  # Unused: the common G-loss signature.
  return -jnp.mean(_flat(fake_logits, 'fake_logits'))


def d_hinge_loss(real_logits: Array, fake_logits: Array) -> Array:
  """Discriminator hinge loss (Lim & Ye 2017; Miyato et al. 2018, eq. 16).

  `L_D = E_x[max(0, 1 - D(x))] + E_z[max(0, 1 + D(G(z)))]`
  `    = mean(relu(1 - real_logits)) + mean(relu(1 + fake_logits))`, on raw D outputs.
  It is 0 once every real output is >= 1 and every fake output is <= -1. The generator loss
  is `g_wasserstein_loss` (eq. 17).

  Args:
    real_logits: D's outputs on real images, float `[B]` or `[B, 1]`.
    fake_logits: D's outputs on generated images, float `[B']` or `[B', 1]`.

  Returns:
    float32 scalar in [0, inf); 2 when D outputs 0 everywhere.

  Raises:
    ValueError: if an outputs array is not `[B]` or `[B, 1]`.
  """
  real_logits = _flat(real_logits, 'real_logits')
  fake_logits = _flat(fake_logits, 'fake_logits')
  return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))


def d_least_squares_loss(real_logits: Array, fake_logits: Array) -> Array:
  """Discriminator loss of the least-squares GAN (Mao et al. 2017, eq. 2, a=0, b=1, c=1).

  `L_D = 1/2 E_x[(D(x) - b)^2] + 1/2 E_z[(D(G(z)) - a)^2]`
  `    = 0.5 * mean((real_logits - 1)^2) + 0.5 * mean(fake_logits^2)`, on raw D outputs
  (no sigmoid). Minimum 0 at real outputs 1 and fake outputs 0.

  Args:
    real_logits: D's outputs on real images, float `[B]` or `[B, 1]`.
    fake_logits: D's outputs on generated images, float `[B']` or `[B', 1]`.

  Returns:
    float32 scalar in [0, inf); 0.5 when D outputs 0 everywhere.

  Raises:
    ValueError: if an outputs array is not `[B]` or `[B, 1]`.
  """
  real_logits = _flat(real_logits, 'real_logits')
  fake_logits = _flat(fake_logits, 'fake_logits')
  return 0.5 * jnp.mean(jnp.square(real_logits - 1.0)) + 0.5 * jnp.mean(jnp.square(fake_logits))


def g_least_squares_loss(fake_logits: Array, real_logits: Array | None = None) -> Array:
  """Generator loss of the least-squares GAN (Mao et al. 2017, eq. 2, c=1).

  `L_G = 1/2 E_z[(D(G(z)) - c)^2] = 0.5 * mean((fake_logits - 1)^2)`, on raw D outputs.

  Args:
    fake_logits: D's outputs on generated images, float `[B]` or `[B, 1]`.
    real_logits: ignored (the common G-loss signature; see the module docstring).

  Returns:
    float32 scalar in [0, inf); 0.5 when D outputs 0 everywhere.

  Raises:
    ValueError: if `fake_logits` is not `[B]` or `[B, 1]`.
  """
  del real_logits  # Unused: the common G-loss signature.
  return 0.5 * jnp.mean(jnp.square(_flat(fake_logits, 'fake_logits') - 1.0))


def _relativistic_average(real_logits: Array, fake_logits: Array) -> tuple[Array, Array]:
  """`(real - mean(fake), fake - mean(real))`, the RaGAN relative logits."""
  real_logits = _flat(real_logits, 'real_logits')
  fake_logits = _flat(fake_logits, 'fake_logits')
  return real_logits - jnp.mean(fake_logits), fake_logits - jnp.mean(real_logits)


def d_relativistic_average_loss(real_logits: Array, fake_logits: Array) -> Array:
  """Discriminator loss of the relativistic average standard GAN (Jolicoeur-Martineau 2018).

  RaSGAN, section 4.3: with `C` the non-transformed critic (the logits here),
  `L_D = -E_x[log sigmoid(C(x) - E_z C(G(z)))] - E_z[log(1 - sigmoid(C(G(z)) - E_x C(x)))]`
  `    = mean(softplus(-cr)) + mean(softplus(cf))`, where `cr = real - mean(fake)` and
  `cf = fake - mean(real)` (means over the batch). D estimates the probability that real
  data is more realistic than the average fake.

  Args:
    real_logits: D's logits on real images, float `[B]` or `[B, 1]`.
    fake_logits: D's logits on generated images, float `[B']` or `[B', 1]`.

  Returns:
    float32 scalar in [0, inf); 2 log(2) ~= 1.386 when all logits are equal.

  Raises:
    ValueError: if a logits array is not `[B]` or `[B, 1]`.
  """
  cr, cf = _relativistic_average(real_logits, fake_logits)
  return jnp.mean(jax.nn.softplus(-cr)) + jnp.mean(jax.nn.softplus(cf))


def g_relativistic_average_loss(fake_logits: Array, real_logits: Array | None = None) -> Array:
  """Generator loss of the relativistic average standard GAN (Jolicoeur-Martineau 2018).

  RaSGAN, section 4.3: the discriminator loss with the roles of real and fake swapped,
  `L_G = -E_z[log sigmoid(C(G(z)) - E_x C(x))] - E_x[log(1 - sigmoid(C(x) - E_z C(G(z))))]`
  `    = mean(softplus(-cf)) + mean(softplus(cr))`, with `cr`, `cf` as in
  `d_relativistic_average_loss`. Unlike the other G losses it depends on D's logits on a
  real batch (`GANLoss.g_needs_real` is True); no gradient reaches G through them.

  Args:
    fake_logits: D's logits on generated images, float `[B]` or `[B, 1]`.
    real_logits: D's logits on real images, float `[B']` or `[B', 1]`; required.

  Returns:
    float32 scalar in [0, inf); 2 log(2) ~= 1.386 when all logits are equal.

  Raises:
    ValueError: if `real_logits` is None, or a logits array is not `[B]` or `[B, 1]`.
  """
  if real_logits is None:
    raise ValueError(
      'the relativistic_average generator loss needs real_logits (D on a real batch): call '
      'g(fake_logits, real_logits); GANLoss.g_needs_real is True for this loss.'
    )
  cr, cf = _relativistic_average(real_logits, fake_logits)
  return jnp.mean(jax.nn.softplus(-cf)) + jnp.mean(jax.nn.softplus(cr))


def _paired(real_logits: Array, fake_logits: Array) -> tuple[Array, Array]:
  """Flat float32 real and fake logits of one batch size, to be paired index by index."""
  real_logits = _flat(real_logits, 'real_logits')
  fake_logits = _flat(fake_logits, 'fake_logits')
  if real_logits.shape != fake_logits.shape:
    raise ValueError(
      f'the rpgan loss pairs real and fake logits index by index: they need the same batch '
      f'size, got {real_logits.shape[0]} real and {fake_logits.shape[0]} fake.'
    )
  return real_logits, fake_logits


def d_relativistic_pairing_loss(real_logits: Array, fake_logits: Array) -> Array:
  """Discriminator loss of the relativistic pairing GAN, RpGAN (Jolicoeur-Martineau 2019).

  The relativistic standard GAN of "The relativistic discriminator: a key element missing
  from standard GAN" (ICLR 2019), used as the RpGAN objective of R3GAN (Huang et al. 2024,
  "The GAN is dead; long live the GAN! A modern GAN baseline"): D estimates the probability
  `sigmoid(C(x_r) - C(x_f))` that a real image is more realistic than a generated one, on
  pairs `(x_r[i], x_f[i])` taken index by index,
  `L_D = -E[log sigmoid(C(x_r) - C(x_f))] = mean(softplus(fake_logits - real_logits))`.

  Args:
    real_logits: D's logits on real images, float `[B]` or `[B, 1]`.
    fake_logits: D's logits on generated images, float `[B]` or `[B, 1]`, same B.

  Returns:
    float32 scalar in [0, inf); log(2) ~= 0.693 when each pair's logits are equal.

  Raises:
    ValueError: if a logits array is not `[B]` or `[B, 1]`, or the batch sizes differ.
  """
  real_logits, fake_logits = _paired(real_logits, fake_logits)
  return jnp.mean(jax.nn.softplus(fake_logits - real_logits))


def g_relativistic_pairing_loss(fake_logits: Array, real_logits: Array | None = None) -> Array:
  """Generator loss of the relativistic pairing GAN, RpGAN (Jolicoeur-Martineau 2019).

  The discriminator loss with real and fake swapped (R3GAN's RpGAN, Huang et al. 2024):
  `L_G = -E[log sigmoid(C(x_f) - C(x_r))] = mean(softplus(real_logits - fake_logits))`, on
  the pairs of `d_relativistic_pairing_loss`. It needs D's logits on a real batch
  (`GANLoss.g_needs_real` is True); no gradient reaches G through them.

  Args:
    fake_logits: D's logits on generated images, float `[B]` or `[B, 1]`.
    real_logits: D's logits on real images, float `[B]` or `[B, 1]`, same B; required.

  Returns:
    float32 scalar in [0, inf); log(2) ~= 0.693 when each pair's logits are equal.

  Raises:
    ValueError: if `real_logits` is None, a logits array is not `[B]` or `[B, 1]`, or the
      batch sizes differ.
  """
  if real_logits is None:
    raise ValueError(
      'the rpgan generator loss needs real_logits (D on a real batch): call '
      'g(fake_logits, real_logits); GANLoss.g_needs_real is True for this loss.'
    )
  real_logits, fake_logits = _paired(real_logits, fake_logits)
  return jnp.mean(jax.nn.softplus(real_logits - fake_logits))


class GANLoss(NamedTuple):
  """A discriminator loss and a generator loss.

  Attributes:
    d: `d(real_logits, fake_logits) -> scalar`, minimised by the discriminator.
    g: `g(fake_logits, real_logits=None) -> scalar`, minimised by the generator.
    g_needs_real: True if `g` needs `real_logits` (D's outputs on a real batch), which the
      train step must then compute in the generator step ('relativistic_average', 'rpgan').
    probabilistic: True if D's outputs are logits of the probability that an image is real
      (the cross-entropy losses): the train step then reports `d_real`/`d_fake` as mean
      sigmoid probabilities, otherwise as mean raw critic scores.
  """

  d: Callable[[Array, Array], Array]
  g: Callable[..., Array]
  g_needs_real: bool = False
  probabilistic: bool = False


LOSSES: dict[str, GANLoss] = {
  'non_saturating': GANLoss(d=d_minimax_loss, g=g_nonsaturating_loss, probabilistic=True),
  'minimax': GANLoss(d=d_minimax_loss, g=g_minimax_loss, probabilistic=True),
  'wasserstein': GANLoss(d=d_wasserstein_loss, g=g_wasserstein_loss),
  'hinge': GANLoss(d=d_hinge_loss, g=g_wasserstein_loss),
  'least_squares': GANLoss(d=d_least_squares_loss, g=g_least_squares_loss),
  'relativistic_average': GANLoss(
    d=d_relativistic_average_loss, g=g_relativistic_average_loss, g_needs_real=True
  ),
  'rpgan': GANLoss(d=d_relativistic_pairing_loss, g=g_relativistic_pairing_loss, g_needs_real=True),
}


def smoothed_d_minimax_loss(smoothing: float) -> Callable[[Array, Array], Array]:
  """The cross-entropy D loss with one-sided label smoothing (Salimans et al. 2016, sec. 3.4).

  Real images get the target `1 - smoothing` instead of 1; generated ones keep 0:
  `L_D = mean((1 - s) softplus(-real) + s softplus(real)) + mean(softplus(fake))`.

  Args:
    smoothing: s in [0, 1), e.g. 0.1 (target 0.9); 0 gives `d_minimax_loss`.

  Returns:
    `d(real_logits, fake_logits) -> float32 scalar`.

  Raises:
    ValueError: if smoothing is outside [0, 1).
  """
  if not 0.0 <= smoothing < 1.0:
    raise ValueError(f'train.label_smoothing={smoothing} must be in [0, 1), e.g. 0.1.')

  def d(real_logits: Array, fake_logits: Array) -> Array:
    real = _flat(real_logits, 'real_logits')
    fake = _flat(fake_logits, 'fake_logits')
    real_term = (1.0 - smoothing) * jax.nn.softplus(-real) + smoothing * jax.nn.softplus(real)
    return jnp.mean(real_term) + jnp.mean(jax.nn.softplus(fake))

  return d


def class_cross_entropy(class_logits: Array, labels: Array) -> Array:
  """Mean softmax cross-entropy of class logits against integer labels (AC-GAN).

  The auxiliary classifier loss of AC-GAN (Odena et al. 2017, section 3): the
  log-likelihood of the correct class is `L_C = E[log P(C = c | X)]`; D maximises
  `L_S + L_C` and G maximises `L_C - L_S`, i.e. both minimise this cross-entropy,
  `-mean_i log softmax(class_logits_i)[labels_i]`, D on real and generated images, G on
  generated ones.

  Args:
    class_logits: float `[B, K]`, unnormalised class scores.
    labels: int `[B]` in [0, K).

  Returns:
    float32 scalar in [0, inf); log(K) for uniform logits.

  Raises:
    ValueError: if the shapes are not `[B, K]` and `[B]`.
  """
  class_logits = jnp.asarray(class_logits)
  labels = jnp.asarray(labels)
  if class_logits.ndim != 2 or labels.shape != class_logits.shape[:1]:
    raise ValueError(
      f'class_logits must be [B, K] and labels [B], got {class_logits.shape} and {labels.shape}.'
    )
  log_p = jax.nn.log_softmax(class_logits.astype(jnp.float32), axis=-1)
  return -jnp.mean(jnp.take_along_axis(log_p, labels[:, None].astype(jnp.int32), axis=-1))


def get_loss(name: str) -> GANLoss:
  """Returns the (D loss, G loss) pair registered under `name`.

  Args:
    name: one of `LOSSES`: 'non_saturating' (default in the configs), 'minimax',
      'wasserstein', 'hinge', 'least_squares', 'relativistic_average' or 'rpgan'.

  Returns:
    The registered `GANLoss`.

  Raises:
    ValueError: for an unknown name, listing the valid ones.
  """
  if name not in LOSSES:
    raise ValueError(f'train.loss={name!r} is not a known loss; choose one of {sorted(LOSSES)}.')
  return LOSSES[name]
