"""Discriminator regularizers: gradient penalties, LeCam and WGAN weight clipping.

All are small pure functions that return a float32 scalar (or, for `clip_weights`, new
params); the caller multiplies a penalty by its weight and adds it to the discriminator
loss, so they compose with any loss in `gan_jax.core.losses`:

  * `gradient_penalty`: WGAN-GP, `mean_i (||grad_x D(x_hat_i)||_2 - 1)^2` on random
    interpolates of real and fake (Gulrajani et al. 2017, eq. 3; weight lambda = 10).
  * `r1_penalty` / `r2_penalty`: `mean_i ||grad_x D(x_i)||^2` on real / generated data
    (Mescheder et al. 2018, eqs. 9 and 10; weight gamma / 2).
  * `lecam_penalty` + `update_lecam_ema`: LeCam regularization, which keeps D's outputs
    close to moving averages of its outputs on the other distribution (Tseng et al. 2021,
    eq. 3; the weight is tuned per dataset).
  * `clip_weights`: clip every parameter to [-c, c] after each critic update (Arjovsky et al.
    2017, Algorithm 1, c = 0.01).

The gradient penalties take the discriminator as a pure function
`d_apply(params, images) -> logits` (images float `[B, H, W, C]`, logits `[B]` or `[B, 1]`),
for example `lambda p, x: gan.discriminate(p, d_stats, x, train=True)[0]`. Inside the D loss
of the train step, `total = d_loss + weight * penalty(d_apply, d_params, ...)`, and
`jax.grad` w.r.t. `d_params` differentiates through the input gradient (a second-order
derivative; `jax.grad` of `jax.grad` handles it). The LeCam EMAs are two float32 scalars of
train state, updated with `update_lecam_ema` after each D step; `clip_weights` is applied to
`d_params` after each optimizer update.

Input gradients are computed as `jax.grad(lambda x: sum(d_apply(params, x)))(x)`, one
backward pass for the whole batch. Row i of that gradient is `grad_x D(x_i)` only when D
treats the samples of a batch independently. A discriminator with BatchNorm in train mode
couples them through the batch statistics, so its "per-sample" gradients are not; this is
why WGAN-GP critics use no BatchNorm (Gulrajani et al. 2017, section 4; layer norm instead).
No gradient flows from a penalty into its images (they are wrapped in `stop_gradient`), so
a penalty never updates the generator.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable

import jax
import jax.numpy as jnp

Array = jax.Array
PyTree = Any
DApply = Callable[[PyTree, Array], Array]

# Added under the square root of the gradient norm, so that the norm's derivative is finite
# (d sqrt(s)/ds = 1/(2 sqrt(s)) is inf at s = 0); changes a norm of 1 by ~5e-13.
_NORM_EPS = 1e-12


def _images(x: Array, name: str) -> Array:
  x = jnp.asarray(x)
  if x.ndim < 2 or x.shape[0] == 0:
    raise ValueError(
      f'{name} must be a non-empty batch of images [B, H, W, C] (any [B, ...] with at least '
      f'2 dimensions), got shape {x.shape}.'
    )
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f'{name} must be a floating-point array, got dtype {x.dtype}.')
  return jax.lax.stop_gradient(x)


def _logits(logits: Array, batch: int, name: str) -> Array:
  logits = jnp.asarray(logits)
  if logits.ndim == 2 and logits.shape[-1] == 1:
    logits = logits[:, 0]
  if logits.shape != (batch,):
    raise ValueError(
      f'{name} must have shape [B] or [B, 1] with B = {batch} (one logit per image), got '
      f'{logits.shape}.'
    )
  return logits


def _input_grad(d_apply: DApply, params: PyTree, x: Array) -> Array:
  """`grad_x sum_i D(x)_i`, shape of `x`; per-sample gradients if D treats samples apart."""

  def total(x):
    return jnp.sum(_logits(d_apply(params, x), x.shape[0], 'd_apply(params, images)'))

  return jax.grad(total)(x)


def _sq_norms(grads: Array) -> Array:
  """Per-sample squared L2 norms over all non-batch dims, float32 `[B]`."""
  grads = grads.astype(jnp.float32)
  return jnp.sum(jnp.square(grads), axis=tuple(range(1, grads.ndim)))


def gradient_penalty(
  d_apply: DApply, params: PyTree, real: Array, fake: Array, key: Array, target: float = 1.0
) -> Array:
  """Two-sided gradient penalty of WGAN-GP (Gulrajani et al. 2017, eq. 3, Algorithm 1).

  `GP = mean_i (||grad_x D(x_hat_i)||_2 - target)^2` with `x_hat = eps * real +
  (1 - eps) * fake` and one `eps ~ U[0, 1]` per sample, drawn as
  `jax.random.uniform(key, (B, 1, ..., 1), real.dtype)` (`[B, 1, 1, 1]` for images). The
  norm is over all non-batch dims, computed as `sqrt(sum(g^2) + 1e-12)` so that the
  penalty's gradient w.r.t. `params` is finite even where the input gradient is 0. The
  paper's weight lambda = 10 is the caller's. Per-sample gradients come from one backward
  pass of `sum(D(x_hat))`, which needs a D without BatchNorm in train mode (see the module
  docstring).

  Args:
    d_apply: `d_apply(params, images) -> logits`, logits `[B]` or `[B, 1]`.
    params: the discriminator parameters (any pytree `d_apply` accepts).
    real: real images, float `[B, H, W, C]` (any `[B, ...]` with rank >= 2).
    fake: generated images, same shape as `real`.
    key: PRNG key for the interpolation coefficients.
    target: the gradient norm the penalty pulls towards (1 for a 1-Lipschitz critic).

  Returns:
    float32 scalar >= 0.

  Raises:
    ValueError: if `real` and `fake` differ in shape, are not a floating-point batch of
      rank >= 2, or `d_apply` does not return one logit per image.
  """
  real = _images(real, 'real')
  fake = _images(fake, 'fake')
  if real.shape != fake.shape:
    raise ValueError(
      f'gradient_penalty interpolates real and fake, so they need the same shape; got real '
      f'{real.shape} and fake {fake.shape}.'
    )
  eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
  x_hat = eps * real + (1.0 - eps) * fake.astype(real.dtype)
  norms = jnp.sqrt(_sq_norms(_input_grad(d_apply, params, x_hat)) + _NORM_EPS)
  return jnp.mean(jnp.square(norms - target)).astype(jnp.float32)


def r1_penalty(d_apply: DApply, params: PyTree, real: Array) -> Array:
  """R1 gradient penalty on real data (Mescheder et al. 2018, eq. 9).

  `R1 = mean_i ||grad_x D(x_i)||_2^2` over the real batch, where `D` is the raw output (the
  paper's `D_psi`, which its losses pass through `f(t) = -log(1 + exp(-t))`). The paper's
  `R1(psi) = gamma / 2 * E[||grad D||^2]`: the factor gamma / 2 is the caller's weight.
  Per-sample gradients need a D without BatchNorm in train mode (module docstring).

  Args:
    d_apply: `d_apply(params, images) -> logits`, logits `[B]` or `[B, 1]`.
    params: the discriminator parameters.
    real: real images, float `[B, H, W, C]` (any `[B, ...]` with rank >= 2).

  Returns:
    float32 scalar >= 0; 0 for a D that is constant in its input.

  Raises:
    ValueError: if `real` is not a floating-point batch of rank >= 2, or `d_apply` does not
      return one logit per image.
  """
  real = _images(real, 'real')
  return jnp.mean(_sq_norms(_input_grad(d_apply, params, real)))


def r2_penalty(d_apply: DApply, params: PyTree, fake: Array) -> Array:
  """R2 gradient penalty on generated data (Mescheder et al. 2018, eq. 10).

  `R2 = mean_i ||grad_x D(G(z_i))||_2^2` over the generated batch; as `r1_penalty`, with the
  paper's gamma / 2 as the caller's weight. No gradient flows into `fake` (so into G).

  Args:
    d_apply: `d_apply(params, images) -> logits`, logits `[B]` or `[B, 1]`.
    params: the discriminator parameters.
    fake: generated images, float `[B, H, W, C]` (any `[B, ...]` with rank >= 2).

  Returns:
    float32 scalar >= 0; 0 for a D that is constant in its input.

  Raises:
    ValueError: if `fake` is not a floating-point batch of rank >= 2, or `d_apply` does not
      return one logit per image.
  """
  fake = _images(fake, 'fake')
  return jnp.mean(_sq_norms(_input_grad(d_apply, params, fake)))


def _flat_logits(logits: Array, name: str) -> Array:
  logits = jnp.asarray(logits)
  if logits.ndim == 2 and logits.shape[-1] == 1:
    logits = logits[:, 0]
  if logits.ndim != 1 or logits.shape[0] == 0:
    raise ValueError(
      f'{name} must have shape [B] or [B, 1] (one logit per image, B > 0), got {logits.shape}.'
    )
  return logits.astype(jnp.float32)


def _scalar(x: Array, name: str) -> Array:
  x = jnp.asarray(x)
  if x.ndim != 0:
    raise ValueError(f'{name} must be a scalar (an EMA of mean D outputs), got shape {x.shape}.')
  return jax.lax.stop_gradient(x.astype(jnp.float32))


def lecam_penalty(
  real_logits: Array, fake_logits: Array, ema_real: Array, ema_fake: Array
) -> Array:
  """LeCam regularization (Tseng et al. 2021, "Regularizing Generative Adversarial Networks
  under Limited Data", eq. 3).

  `R_LC = mean(relu(real_logits - ema_fake)^2) + mean(relu(ema_real - fake_logits)^2)`,
  where `ema_real` and `ema_fake` are exponential moving averages of D's mean output on
  real and generated images (`update_lecam_ema`). It pulls D's real outputs down towards
  the fake anchor and its fake outputs up towards the real anchor, bounding how far D can
  separate them. Eq. 3 squares the plain differences; the one-sided `relu` form here is the
  authors' released implementation: it is 0 once `real <= ema_fake` and `fake >= ema_real`.
  The EMAs are state, not parameters: no gradient flows into them.

  Args:
    real_logits: D's outputs on real images, float `[B]` or `[B, 1]`.
    fake_logits: D's outputs on generated images, float `[B']` or `[B', 1]`.
    ema_real: float scalar, EMA of `mean(real_logits)`.
    ema_fake: float scalar, EMA of `mean(fake_logits)`.

  Returns:
    float32 scalar >= 0.

  Raises:
    ValueError: if a logits array is not `[B]` or `[B, 1]`, or an EMA is not a scalar.
  """
  real_logits = _flat_logits(real_logits, 'real_logits')
  fake_logits = _flat_logits(fake_logits, 'fake_logits')
  ema_real = _scalar(ema_real, 'ema_real')
  ema_fake = _scalar(ema_fake, 'ema_fake')
  return jnp.mean(jnp.square(jax.nn.relu(real_logits - ema_fake))) + jnp.mean(
    jnp.square(jax.nn.relu(ema_real - fake_logits))
  )


def update_lecam_ema(ema: Array, logits: Array, decay: float = 0.99) -> Array:
  """One step of a LeCam anchor's moving average (alpha_R or alpha_F of Tseng et al. 2021).

  `new_ema = decay * ema + (1 - decay) * mean(logits)`, with no gradient through `logits`.

  Args:
    ema: float scalar, the current EMA (e.g. initialised to 0).
    logits: D's outputs on real (for `ema_real`) or generated (for `ema_fake`) images, float
      `[B]` or `[B, 1]`.
    decay: EMA decay in [0, 1); 0.99 in the paper.

  Returns:
    float32 scalar, the updated EMA.

  Raises:
    ValueError: if `ema` is not a scalar, `logits` is not `[B]` or `[B, 1]`, or a Python
      `decay` is outside [0, 1).
  """
  if isinstance(decay, numbers.Real) and not 0.0 <= decay < 1.0:
    raise ValueError(f'LeCam EMA decay={decay} must be in [0, 1).')
  ema = _scalar(ema, 'ema')
  mean = jnp.mean(jax.lax.stop_gradient(_flat_logits(logits, 'logits')))
  return decay * ema + (1.0 - decay) * mean


def clip_weights(params: PyTree, clip: float = 0.01) -> PyTree:
  """Clips every floating-point parameter to [-clip, clip] (Arjovsky et al. 2017, Alg. 1).

  WGAN's original way of keeping the critic K-Lipschitz, applied to the critic's params
  after each optimizer update, with c = 0.01 in the paper. Integer and boolean leaves (not
  parameters) are returned unchanged.

  Args:
    params: pytree of arrays, e.g. `state.d_params`.
    clip: clipping bound c > 0.

  Returns:
    A pytree of the same structure, dtypes and shapes, each floating leaf in [-clip, clip];
    values already in range are unchanged.

  Raises:
    ValueError: if a Python/NumPy `clip` is <= 0 or NaN.
  """
  if isinstance(clip, numbers.Real) and not clip > 0:
    raise ValueError(f'clip={clip} must be > 0 (WGAN uses 0.01).')

  def _clip(x):
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
      return x
    return jnp.clip(x, -clip, clip).astype(x.dtype)

  return jax.tree.map(_clip, params)
