"""Adversarial losses against hand-computed values, sign conventions and extreme logits."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.core import losses


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


ALL_NAMES = (
  'non_saturating',
  'minimax',
  'wasserstein',
  'hinge',
  'least_squares',
  'relativistic_average',
  'rpgan',
)
# The losses whose G loss reads D's logits on a real batch (GANLoss.g_needs_real).
NEEDS_REAL = {'relativistic_average', 'rpgan'}


def _g(loss, fake, real):
  """Calls a G loss the way the train step will: with real logits iff it needs them."""
  return loss.g(fake, real) if loss.g_needs_real else loss.g(fake)


def test_every_g_loss_accepts_and_ignores_real_logits():
  fake, real = jnp.array([0.3, -1.2, 2.0]), jnp.array([5.0, -4.0])
  for name in ALL_NAMES:
    loss = losses.get_loss(name)
    if loss.g_needs_real:
      continue
    assert loss.g(fake, real) == loss.g(fake), name
    assert loss.g(fake, real_logits=None) == loss.g(fake), name


@pytest.mark.parametrize('name', ALL_NAMES)
def test_sign_conventions(name):
  # Moderate logits where every loss is strictly monotone (hinge: real < 1 and fake > -1;
  # least squares: real < 1, fake > 0 for D and fake < 1 for G).
  loss = losses.get_loss(name)
  real, fake, h = jnp.array([0.2, -0.3, 0.5]), jnp.array([0.3, 0.6, 0.1]), 0.05
  d0 = loss.d(real, fake)
  assert loss.d(real + h, fake) < d0, 'D loss must fall when real logits rise'
  assert loss.d(real, fake - h) < d0, 'D loss must fall when fake logits fall'
  assert _g(loss, fake + h, real) < _g(loss, fake, real), 'G loss must fall as fake rises'
  d_real, d_fake = jax.grad(loss.d, argnums=(0, 1))(real, fake)
  assert np.all(d_real < 0) and np.all(d_fake > 0)
  assert np.all(jax.grad(lambda f: _g(loss, f, real))(fake) < 0)


def test_wasserstein_values():
  assert losses.d_wasserstein_loss(jnp.array([2.0]), jnp.array([-1.0])) == -3.0
  # mean(fake) - mean(real) with different batch sizes: 0.5 - 2 = -1.5.
  real, fake = jnp.array([1.0, 3.0]), jnp.array([-1.0, 0.0, 2.5]).reshape(3, 1)
  assert losses.d_wasserstein_loss(real, fake) == pytest.approx(-1.5, rel=1e-6)
  assert losses.g_wasserstein_loss(fake) == pytest.approx(-0.5, rel=1e-6)
  assert losses.get_loss('wasserstein').g(jnp.array([-1.0])) == 1.0


def test_hinge_values():
  # Zero once real >= 1 and fake <= -1 (including the boundary).
  assert losses.d_hinge_loss(jnp.array([1.0, 2.0]), jnp.array([-1.0, -3.0])) == 0.0
  # real [0.5, 2] -> relu(1 - r) = [0.5, 0]; fake [0, -2] -> relu(1 + f) = [1, 0].
  real, fake = jnp.array([0.5, 2.0]), jnp.array([0.0, -2.0])
  assert losses.d_hinge_loss(real, fake) == pytest.approx(0.25 + 0.5, rel=1e-6)
  assert losses.d_hinge_loss(jnp.zeros(3), jnp.zeros(3)) == 2.0
  hinge = losses.get_loss('hinge')
  assert hinge.g(fake) == pytest.approx(1.0, rel=1e-6)


def test_least_squares_values():
  ls = losses.get_loss('least_squares')
  # Minimum 0 at real = 1, fake = 0 (D) and fake = 1 (G), with zero gradient there.
  assert ls.d(jnp.ones(3), jnp.zeros(3)) == 0.0
  assert ls.g(jnp.ones(3)) == 0.0
  grads = jax.grad(ls.d, argnums=(0, 1))(jnp.ones(3), jnp.zeros(3))
  assert all(np.all(g == 0) for g in grads)
  # real [0, 3]: 0.5 * mean(1, 4) = 1.25; fake [1, -2]: 0.5 * mean(1, 4) = 1.25.
  real, fake = jnp.array([0.0, 3.0]), jnp.array([1.0, -2.0])
  assert ls.d(real, fake) == pytest.approx(2.5, rel=1e-6)
  # G: 0.5 * mean((1 - 1)^2, (-2 - 1)^2) = 2.25.
  assert ls.g(fake) == pytest.approx(2.25, rel=1e-6)
  assert ls.d(jnp.zeros(2), jnp.zeros(2)) == 0.5


def test_relativistic_average_values():
  ra = losses.get_loss('relativistic_average')
  assert ra.g_needs_real
  # Equal logits: every relative logit is 0, so both losses are 2 log 2.
  z = jnp.full(4, 0.7)
  assert ra.d(z, z) == pytest.approx(2 * math.log(2), rel=1e-6)
  assert ra.g(z, z) == pytest.approx(2 * math.log(2), rel=1e-6)
  # real [1, 3] (mean 2), fake [0, -2] (mean -1): cr = [2, 4], cf = [-2, -4].
  real, fake = jnp.array([1.0, 3.0]), jnp.array([0.0, -2.0])
  small = (math.log1p(math.exp(-2)) + math.log1p(math.exp(-4))) / 2
  large = (math.log1p(math.exp(2)) + math.log1p(math.exp(4))) / 2
  assert ra.d(real, fake) == pytest.approx(2 * small, rel=1e-6)
  assert ra.g(fake, real) == pytest.approx(2 * large, rel=1e-6)


def test_relativistic_average_d_and_g_swap_under_real_fake_exchange():
  rng = np.random.default_rng(1)
  real, fake = rng.normal(0, 2, 8).astype(np.float32), rng.normal(0, 2, 5).astype(np.float32)
  ra = losses.get_loss('relativistic_average')
  np.testing.assert_allclose(ra.d(real, fake), ra.g(real, fake), rtol=1e-6)
  np.testing.assert_allclose(ra.g(fake, real), ra.d(fake, real), rtol=1e-6)


@pytest.mark.parametrize('name', ALL_NAMES)
@pytest.mark.parametrize('sign', [1.0, -1.0])
def test_logits_of_1e4_give_finite_values_and_gradients(name, sign):
  loss = losses.get_loss(name)
  big = sign * 1e4
  real, fake = jnp.array([big, big, -big]), jnp.array([-big, -big, big])
  value, grads = jax.value_and_grad(loss.d, argnums=(0, 1))(real, fake)
  assert np.isfinite(value)
  assert all(np.all(np.isfinite(g)) for g in grads)
  value, grads = jax.value_and_grad(lambda f, r: _g(loss, f, r), argnums=(0, 1))(fake, real)
  assert np.isfinite(value)
  assert all(np.all(np.isfinite(g)) for g in grads)


def test_extreme_logit_asymptotes():
  big = 1e4
  right_r, right_f = jnp.full(2, big), jnp.full(2, -big)  # D confidently right on both
  assert losses.d_minimax_loss(right_r, right_f) == 0.0
  assert losses.d_hinge_loss(right_r, right_f) == 0.0
  assert losses.d_relativistic_average_loss(right_r, right_f) == 0.0
  assert losses.g_relativistic_average_loss(right_f, right_r) == pytest.approx(4 * big, rel=1e-6)
  assert losses.g_nonsaturating_loss(right_f) == pytest.approx(big, rel=1e-6)
  # D wrong on both: each term costs ~|logit|.
  assert losses.d_minimax_loss(-right_r, -right_f) == pytest.approx(2 * big, rel=1e-6)
  assert losses.d_hinge_loss(-right_r, -right_f) == pytest.approx(2 * (big + 1), rel=1e-6)


@pytest.mark.parametrize('name', ALL_NAMES)
def test_bad_shapes_raise(name):
  loss = losses.get_loss(name)
  ok, bad = jnp.zeros(3), jnp.zeros((3, 2))
  for real, fake in ((bad, ok), (ok, bad), (jnp.zeros(()), ok), (ok, jnp.zeros((2, 1, 1)))):
    with pytest.raises(ValueError, match=r'\[B\] or \[B, 1\]'):
      loss.d(real, fake)
  with pytest.raises(ValueError, match='fake_logits'):
    loss.g(bad, ok)
  if loss.g_needs_real:
    with pytest.raises(ValueError, match='real_logits'):
      loss.g(ok, bad)


def test_relativistic_g_without_real_logits_raises():
  with pytest.raises(ValueError, match='needs real_logits'):
    losses.get_loss('relativistic_average').g(jnp.zeros(3))
  with pytest.raises(ValueError, match='needs real_logits'):
    losses.g_relativistic_average_loss(jnp.zeros(3), None)


def test_registry_has_every_loss():
  assert set(losses.LOSSES) == set(ALL_NAMES)
  for name in ALL_NAMES:
    loss = losses.get_loss(name)
    assert isinstance(loss, losses.GANLoss)
    assert loss is losses.LOSSES[name]
    assert loss.g_needs_real == (name in NEEDS_REAL)
  assert losses.get_loss('hinge').g is losses.g_wasserstein_loss
  with pytest.raises(ValueError) as info:
    losses.get_loss('lsgan')
  for name in ALL_NAMES:
    assert repr(name) in str(info.value)


def test_losses_jit():
  real, fake = jnp.array([0.5, -1.0, 1.5]), jnp.array([0.25, 2.0, -0.5])
  for name in ALL_NAMES:
    loss = losses.get_loss(name)
    np.testing.assert_allclose(jax.jit(loss.d)(real, fake), loss.d(real, fake), rtol=1e-6)
    g = jax.jit(lambda f, r, loss=loss: _g(loss, f, r))
    np.testing.assert_allclose(g(fake, real), _g(loss, fake, real), rtol=1e-6)


def _softplus64(x):
  """log(1 + e^x) in float64 numpy, an independent reference for the losses' softplus."""
  return np.logaddexp(0.0, np.asarray(x, np.float64))


def test_rpgan_values_against_numpy():
  rp = losses.get_loss('rpgan')
  assert rp.g_needs_real and not rp.probabilistic
  # Pairs (real[i], fake[i]): L_D = mean log(1 + e^(f - r)), L_G = mean log(1 + e^(r - f)).
  real, fake = np.array([1.0, -0.5, 2.0, 0.0]), np.array([0.5, 1.5, -1.0, 0.0])
  want_d = np.mean(_softplus64(fake - real))
  want_g = np.mean(_softplus64(real - fake))
  # By hand for the first pair: log(1 + e^-0.5) = 0.47408..., log(1 + e^0.5) = 0.97408...
  assert _softplus64(-0.5) == pytest.approx(0.474077, abs=1e-6)
  np.testing.assert_allclose(rp.d(real, fake), want_d, rtol=1e-6)
  np.testing.assert_allclose(rp.g(fake, real), want_g, rtol=1e-6)
  np.testing.assert_allclose(rp.d(real[:, None], fake[:, None]), want_d, rtol=1e-6)
  # Equal logits in every pair: both losses are log 2.
  z = jnp.full(3, -0.7)
  assert rp.d(z, z) == pytest.approx(math.log(2), rel=1e-6)
  assert rp.g(z, z) == pytest.approx(math.log(2), rel=1e-6)
  # Paired, not averaged: re-pairing the same logits changes the value (RaGAN's would not
  # change, since it compares each logit with the other batch's mean).
  shuffled = fake[[1, 0, 3, 2]]
  assert not np.isclose(rp.d(real, shuffled), want_d, rtol=1e-3)
  ra = losses.get_loss('relativistic_average')
  np.testing.assert_allclose(ra.d(real, shuffled), ra.d(real, fake), rtol=1e-6)


def test_rpgan_gradients_against_closed_form():
  # d/dr_i mean softplus(f - r) = -sigmoid(f_i - r_i) / B and d/df_i = +sigmoid(f_i - r_i) / B;
  # G's loss is the same with r and f swapped.
  rp = losses.get_loss('rpgan')
  real, fake = np.array([1.0, -0.5, 2.0]), np.array([0.5, 1.5, -1.0])
  sig = 1 / (1 + np.exp(-(fake - real)))
  d_real, d_fake = jax.grad(rp.d, argnums=(0, 1))(jnp.asarray(real), jnp.asarray(fake))
  np.testing.assert_allclose(d_real, -sig / 3, rtol=1e-5)
  np.testing.assert_allclose(d_fake, sig / 3, rtol=1e-5)
  assert np.all(d_real < 0) and np.all(d_fake > 0)  # D pushes real up and fake down
  g_fake, g_real = jax.grad(rp.g, argnums=(0, 1))(jnp.asarray(fake), jnp.asarray(real))
  np.testing.assert_allclose(g_fake, -(1 - sig) / 3, rtol=1e-5)
  assert np.all(g_fake < 0) and np.all(g_real > 0)  # G pushes its logits above the real ones


def test_rpgan_needs_paired_batches_and_real_logits():
  rp = losses.get_loss('rpgan')
  with pytest.raises(ValueError, match='same batch size, got 2 real and 3 fake'):
    rp.d(jnp.zeros(2), jnp.zeros(3))
  with pytest.raises(ValueError, match='same batch size, got 3 real and 2 fake'):
    rp.g(jnp.zeros(2), jnp.zeros(3))
  with pytest.raises(ValueError, match='needs real_logits'):
    rp.g(jnp.zeros(3))


def test_tiny_rpgan_run_with_r1_and_r2_stays_finite(tiny_config, tmp_path):
  """The tiny MNIST DCGAN trained end to end with train.loss=rpgan, R1 and R2."""
  import json  # pylint: disable=g-import-not-at-top

  from gan_jax.training import train  # pylint: disable=g-import-not-at-top

  c = tiny_config
  c.train.loss = 'rpgan'
  c.train.r1_weight = 1.0
  c.train.r2_weight = 1.0
  state = train.train_and_evaluate(c, str(tmp_path / 'run'))
  assert int(state.step) == c.train.steps
  for leaf in jax.tree.leaves(jax.device_get(state.g_params)) + jax.tree.leaves(
    jax.device_get(state.d_params)
  ):
    assert np.all(np.isfinite(leaf))
  rows = [
    json.loads(line) for line in (tmp_path / 'run' / 'metrics.jsonl').read_text().splitlines()
  ]
  logged = [r for r in rows if 'd_loss' in r]
  assert logged
  for r in logged:
    for k in ('d_loss', 'g_loss', 'd_penalty', 'd_grad_norm', 'g_grad_norm'):
      assert np.isfinite(r[k]), (k, r)
    assert r['d_loss'] > 0 and r['g_loss'] > 0  # softplus of a difference: > 0
    assert r['d_penalty'] > 0  # R1 and R2 are on
