"""Adversarial losses against hand-computed values, including extreme logits."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import losses


def _naive(real, fake):
  """Float64 textbook formulas with an explicit sigmoid (fine for moderate logits)."""
  d_real = 1 / (1 + np.exp(-np.asarray(real, np.float64)))
  d_fake = 1 / (1 + np.exp(-np.asarray(fake, np.float64)))
  return {
    'd': -np.mean(np.log(d_real)) - np.mean(np.log(1 - d_fake)),
    'g_minimax': np.mean(np.log(1 - d_fake)),
    'g_ns': -np.mean(np.log(d_fake)),
  }


def test_values_at_zero_logits():
  # D(x) = 0.5 everywhere: L_D = 2 log 2, minimax L_G = -log 2, non-saturating L_G = log 2.
  z = jnp.zeros(4)
  assert losses.d_minimax_loss(z, z) == pytest.approx(2 * math.log(2), rel=1e-6)
  assert losses.g_minimax_loss(z) == pytest.approx(-math.log(2), rel=1e-6)
  assert losses.g_nonsaturating_loss(z) == pytest.approx(math.log(2), rel=1e-6)


def test_hand_computed_values():
  # real logits 2 and -1; fake logits -1 and 3.
  # L_D = mean(log(1+e^-2), log(1+e^1)) + mean(log(1+e^-1), log(1+e^3))
  real, fake = jnp.array([2.0, -1.0]), jnp.array([-1.0, 3.0])
  expected_d = (math.log1p(math.exp(-2)) + math.log1p(math.exp(1))) / 2 + (
    math.log1p(math.exp(-1)) + math.log1p(math.exp(3))
  ) / 2
  assert losses.d_minimax_loss(real, fake) == pytest.approx(expected_d, rel=1e-6)
  assert losses.g_nonsaturating_loss(fake) == pytest.approx(
    (math.log1p(math.exp(1)) + math.log1p(math.exp(-3))) / 2, rel=1e-6
  )
  assert losses.g_minimax_loss(fake) == pytest.approx(
    -(math.log1p(math.exp(-1)) + math.log1p(math.exp(3))) / 2, rel=1e-6
  )


def test_matches_textbook_formulas_on_random_logits():
  rng = np.random.default_rng(0)
  real, fake = rng.normal(0, 3, 64), rng.normal(0, 3, 64)
  ref = _naive(real, fake)
  np.testing.assert_allclose(losses.d_minimax_loss(real, fake), ref['d'], rtol=1e-5)
  np.testing.assert_allclose(losses.g_minimax_loss(fake), ref['g_minimax'], rtol=1e-5)
  np.testing.assert_allclose(losses.g_nonsaturating_loss(fake), ref['g_ns'], rtol=1e-5)


@pytest.mark.parametrize('sign', [1.0, -1.0])
def test_extreme_logits_are_finite_with_finite_gradients(sign):
  big = sign * 100.0
  real, fake = jnp.array([big, big]), jnp.array([-big, -big])
  for fn, args in (
    (losses.d_minimax_loss, (real, fake)),
    (losses.g_minimax_loss, (fake,)),
    (losses.g_nonsaturating_loss, (fake,)),
  ):
    value, grads = jax.value_and_grad(fn, argnums=tuple(range(len(args))))(*args)
    assert np.isfinite(value), fn.__name__
    for g in grads:
      assert np.all(np.isfinite(g)), fn.__name__
  # Exact asymptotes: log(1 + e^100) = 100 + log(1 + e^-100) = 100 in float32.
  if sign > 0:  # D is right on both: loss ~ 2 e^-100, i.e. 0 in float32.
    assert losses.d_minimax_loss(real, fake) == pytest.approx(0.0, abs=1e-30)
    assert losses.g_nonsaturating_loss(fake) == pytest.approx(100.0, rel=1e-6)
    # The saturating loss is flat here: its gradient vanishes, the reason for the NS loss.
    g = jax.grad(losses.g_minimax_loss)(fake)
    assert np.all(np.abs(g) < 1e-30)
    g_ns = jax.grad(losses.g_nonsaturating_loss)(fake)
    np.testing.assert_allclose(g_ns, [-0.5, -0.5], rtol=1e-6)
  else:  # D is wrong on both: loss = 100 + 100.
    assert losses.d_minimax_loss(real, fake) == pytest.approx(200.0, rel=1e-6)
    assert losses.g_minimax_loss(fake) == pytest.approx(-100.0, rel=1e-6)


def test_accepts_column_logits_and_rejects_other_shapes():
  col = jnp.zeros((3, 1))
  assert losses.g_nonsaturating_loss(col) == pytest.approx(math.log(2), rel=1e-6)
  with pytest.raises(ValueError, match=r'\[B\] or \[B, 1\]'):
    losses.g_nonsaturating_loss(jnp.zeros((3, 2)))


def test_registry():
  assert losses.get_loss('non_saturating').g is losses.g_nonsaturating_loss
  assert losses.get_loss('minimax').g is losses.g_minimax_loss
  with pytest.raises(ValueError, match="train.loss='wgan'.*minimax"):
    losses.get_loss('wgan')
