"""Discriminator regularizers against per-sample hand computations and closed forms."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.core import regularizers as reg

B, H, W, C = 3, 6, 6, 2


def _conv_d(params, x):
  """A tiny conv critic in plain jax.numpy, no normalisation: [B, H, W, C] -> [B, 1]."""
  y = jax.lax.conv_general_dilated(
    x, params['w1'], (2, 2), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
  )
  y = jax.nn.leaky_relu(y + params['b1'], 0.2)
  y = jnp.tanh(y.reshape(x.shape[0], -1) @ params['w2'] + params['b2'])
  return y @ params['w3']


def _conv_params(key, scale=1.0):
  k1, k2, k3 = jax.random.split(key, 3)
  return {
    'w1': scale * jax.random.normal(k1, (3, 3, C, 4)),
    'b1': jnp.full((4,), 0.1),
    'w2': 0.3 * jax.random.normal(k2, ((H // 2) * (W // 2) * 4, 5)),
    'b2': jnp.zeros((5,)),
    'w3': jax.random.normal(k3, (5, 1)),
  }


def _linear_d(w, x):
  """`x -> <w, x>` per sample: [B, H, W, C] -> [B]."""
  return jnp.sum(x * w, axis=(1, 2, 3))


def _const_d(c, x):
  """A D constant in x (x enters with weight exactly 0)."""
  return c + 0.0 * jnp.sum(x, axis=(1, 2, 3))


def _per_sample_grads(params, x):
  """`grad_x D(x_i)` of `_conv_d` computed on ONE sample at a time, float64 numpy."""
  grad_one = jax.jit(jax.grad(lambda xi: _conv_d(params, xi[None])[0, 0]))
  return [np.asarray(grad_one(x[i]), np.float64) for i in range(x.shape[0])]


def _images(seed):
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  return jax.random.normal(k1, (B, H, W, C)), jax.random.uniform(k2, (B, H, W, C), minval=-1)


@pytest.mark.parametrize('scale', [0.2, 3.0])
def test_gradient_penalty_matches_per_sample_loop(scale):
  params = _conv_params(jax.random.PRNGKey(0), scale)
  real, fake = _images(1)
  key = jax.random.PRNGKey(7)
  got = reg.gradient_penalty(_conv_d, params, real, fake, key)
  # Hand-rolled: the same eps, then jax.grad of D on ONE sample at a time.
  eps = jax.random.uniform(key, (B, 1, 1, 1))
  x_hat = eps * real + (1 - eps) * fake
  norms = np.array([np.linalg.norm(g.ravel()) for g in _per_sample_grads(params, x_hat)])
  assert np.all(np.abs(norms - 1) > 0.05)  # away from the target, so rtol is meaningful
  expected = np.mean((norms - 1.0) ** 2)
  assert got.dtype == jnp.float32 and got.shape == ()
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # target is honoured.
  got2 = reg.gradient_penalty(_conv_d, params, real, fake, key, target=2.0)
  np.testing.assert_allclose(got2, np.mean((norms - 2.0) ** 2), rtol=1e-5)


def test_gradient_penalty_of_linear_d():
  real, fake = _images(2)
  key = jax.random.PRNGKey(3)
  w = jax.random.normal(jax.random.PRNGKey(4), (H, W, C))
  unit = w / jnp.linalg.norm(w)
  assert reg.gradient_penalty(_linear_d, unit, real, fake, key) == pytest.approx(0.0, abs=1e-10)
  norm = float(jnp.linalg.norm(w))
  np.testing.assert_allclose(
    reg.gradient_penalty(_linear_d, w, real, fake, key), (norm - 1) ** 2, rtol=1e-5
  )
  # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||.
  g = jax.grad(reg.gradient_penalty, argnums=1)(_linear_d, w, real, fake, key)
  np.testing.assert_allclose(g, 2 * (norm - 1) * w / norm, rtol=1e-4, atol=1e-6)


def test_gradient_penalty_is_safe_where_the_input_gradient_is_zero():
  real, fake = _images(5)
  zero_w = jnp.zeros((H, W, C))
  value, g = jax.value_and_grad(reg.gradient_penalty, argnums=1)(
    _linear_d, zero_w, real, fake, jax.random.PRNGKey(0)
  )
  assert value == pytest.approx(1.0, rel=1e-5)  # (0 - 1)^2
  assert np.all(np.isfinite(g))
  _, g = jax.value_and_grad(reg.gradient_penalty, argnums=1)(
    _const_d, jnp.float32(0.5), real, fake, jax.random.PRNGKey(0)
  )
  assert np.isfinite(g)


def test_r1_r2_closed_forms():
  real, fake = _images(6)
  for penalty, x in ((reg.r1_penalty, real), (reg.r2_penalty, fake)):
    assert penalty(_const_d, jnp.float32(2.0), x) == 0.0
    w = jax.random.normal(jax.random.PRNGKey(8), (H, W, C))
    sq = float(jnp.sum(w**2))
    np.testing.assert_allclose(penalty(_linear_d, w, x), sq, rtol=1e-5)
    # d/dw ||w||^2 = 2 w.
    np.testing.assert_allclose(jax.grad(penalty, argnums=1)(_linear_d, w, x), 2 * w, rtol=1e-5)


def test_r1_matches_per_sample_loop_on_conv_d():
  params = _conv_params(jax.random.PRNGKey(9))
  real, _ = _images(10)
  expected = np.mean([np.sum(g**2) for g in _per_sample_grads(params, real)])
  np.testing.assert_allclose(reg.r1_penalty(_conv_d, params, real), expected, rtol=1e-5)


def test_penalties_are_differentiable_in_params_and_not_in_images():
  params = _conv_params(jax.random.PRNGKey(11))
  real, fake = _images(12)
  key = jax.random.PRNGKey(13)
  for fn in (
    lambda p, r, f: reg.gradient_penalty(_conv_d, p, r, f, key),
    lambda p, r, f: reg.r1_penalty(_conv_d, p, r),
    lambda p, r, f: reg.r2_penalty(_conv_d, p, f),
  ):
    g_params, g_real, g_fake = jax.grad(fn, argnums=(0, 1, 2))(params, real, fake)
    leaves = jax.tree.leaves(g_params)
    assert all(np.all(np.isfinite(leaf)) for leaf in leaves)
    assert any(np.any(leaf != 0) for leaf in leaves)
    # Regularizers of D only: nothing flows back into the images (i.e. into G).
    assert np.all(g_real == 0) and np.all(g_fake == 0)
  # Also under jit, as in the train step.
  value = jax.jit(lambda p: reg.gradient_penalty(_conv_d, p, real, fake, key))(params)
  np.testing.assert_allclose(
    value, reg.gradient_penalty(_conv_d, params, real, fake, key), rtol=1e-5
  )


def test_gradient_penalty_shape_errors():
  real, fake = _images(14)
  key = jax.random.PRNGKey(0)
  w = jnp.ones((H, W, C))
  with pytest.raises(ValueError, match='same shape'):
    reg.gradient_penalty(_linear_d, w, real, fake[:2], key)
  with pytest.raises(ValueError, match=r'\[B, H, W, C\]'):
    reg.gradient_penalty(lambda p, x: x, None, real[0, 0, 0], fake[0, 0, 0], key)
  with pytest.raises(ValueError, match='floating'):
    reg.r1_penalty(_linear_d, w, jnp.ones((B, H, W, C), jnp.int32))
  with pytest.raises(ValueError, match='one logit per image'):
    reg.r1_penalty(lambda p, x: jnp.zeros((x.shape[0], 2)) + jnp.sum(x), None, real)
  with pytest.raises(ValueError, match='one logit per image'):
    reg.r2_penalty(lambda p, x: jnp.sum(x), None, fake)


def test_lecam_penalty():
  ema_real, ema_fake = jnp.float32(0.5), jnp.float32(-0.5)
  # Zero once real <= ema_fake and fake >= ema_real (boundary included).
  assert reg.lecam_penalty(jnp.array([-0.5, -2.0]), jnp.array([0.5, 3.0]), ema_real, ema_fake) == 0
  # real [1, -1]: relu(real + 0.5) = [1.5, 0] -> mean sq 1.125;
  # fake [0, 2]: relu(0.5 - fake) = [0.5, 0] -> mean sq 0.125.
  real, fake = jnp.array([1.0, -1.0]), jnp.array([[0.0], [2.0]])
  value = reg.lecam_penalty(real, fake, ema_real, ema_fake)
  assert value == pytest.approx(1.25, rel=1e-6)
  g_real, g_fake, g_er, g_ef = jax.grad(reg.lecam_penalty, argnums=(0, 1, 2, 3))(
    real, fake, ema_real, ema_fake
  )
  np.testing.assert_allclose(g_real, [1.5, 0.0])  # d/dr mean(relu(r - ef)^2) = (r - ef)
  np.testing.assert_allclose(g_fake, [[-0.5], [0.0]])
  assert g_er == 0 and g_ef == 0  # EMAs are state, not parameters
  with pytest.raises(ValueError, match='scalar'):
    reg.lecam_penalty(real, real, jnp.zeros(2), ema_fake)
  with pytest.raises(ValueError, match=r'\[B\] or \[B, 1\]'):
    reg.lecam_penalty(jnp.zeros((2, 2)), real, ema_real, ema_fake)


def test_update_lecam_ema():
  logits = jnp.array([0.0, 2.0, 4.0])  # mean 2
  assert reg.update_lecam_ema(jnp.float32(1.0), logits, decay=0.9) == pytest.approx(1.1, rel=1e-6)
  assert reg.update_lecam_ema(1.0, logits) == pytest.approx(0.99 + 0.02, rel=1e-6)
  assert reg.update_lecam_ema(5.0, logits[:, None], decay=0.0) == pytest.approx(2.0)
  # No gradient into the logits.
  assert np.all(jax.grad(lambda x: reg.update_lecam_ema(0.0, x, 0.5))(logits) == 0)
  for decay in (1.0, -0.1, math.nan):
    with pytest.raises(ValueError, match='decay'):
      reg.update_lecam_ema(0.0, logits, decay)
  with pytest.raises(ValueError, match='scalar'):
    reg.update_lecam_ema(jnp.zeros(1), logits)


def test_clip_weights():
  params = {
    'conv': {'kernel': jnp.array([[-0.5, 0.005], [0.02, -0.01]]), 'bias': jnp.array([0.003])},
    'dense': [jnp.array([1e3, -1e3, 0.0], jnp.bfloat16)],
    'count': jnp.array(7, jnp.int32),
  }
  out = reg.clip_weights(params, clip=0.01)
  assert jax.tree.structure(out) == jax.tree.structure(params)
  np.testing.assert_array_equal(out['conv']['kernel'], np.float32([[-0.01, 0.005], [0.01, -0.01]]))
  np.testing.assert_array_equal(out['conv']['bias'], params['conv']['bias'])  # in range: as is
  assert out['dense'][0].dtype == jnp.bfloat16
  np.testing.assert_array_equal(
    out['dense'][0].astype(jnp.float32), jnp.array([0.01, -0.01, 0.0], jnp.bfloat16)
  )
  assert out['count'] == 7  # integer leaves are not parameters
  for leaf in jax.tree.leaves(reg.clip_weights(_conv_params(jax.random.PRNGKey(0)))):
    assert float(jnp.max(jnp.abs(leaf))) <= 0.01
  for bad in (0.0, -0.01, math.nan):
    with pytest.raises(ValueError, match='clip'):
      reg.clip_weights(params, bad)
