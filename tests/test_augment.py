"""DiffAugment (Zhao et al. 2020): policies, determinism, differentiability, exact geometry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.core import augment


def _images(b=4, h=16, w=16, c=3, seed=0):
  return jax.random.uniform(jax.random.PRNGKey(seed), (b, h, w, c), minval=-1, maxval=1)


def _shift_np(img, dy, dx):
  """np.roll by (dy, dx) over (H, W) with zero fill instead of wrap-around."""
  out = np.roll(img, (dy, dx), axis=(0, 1))
  h, w = img.shape[:2]
  if dy > 0:
    out[:dy] = 0
  elif dy < 0:
    out[h + dy :] = 0
  if dx > 0:
    out[:, :dx] = 0
  elif dx < 0:
    out[:, w + dx :] = 0
  return out


_translate = jax.jit(augment.translate)


def test_empty_policy_is_the_identity():
  x = _images()
  assert augment.diff_augment(x, jax.random.PRNGKey(0), '') is x
  assert augment.diff_augment(x, jax.random.PRNGKey(0), ' , ') is x
  assert augment.parse_policy('') == ()
  assert augment.parse_policy('color, cutout') == ('color', 'cutout')


def test_unknown_policy_lists_the_valid_ones():
  with pytest.raises(ValueError, match=r"'flip'.*\['color', 'cutout', 'translation'\]"):
    augment.diff_augment(_images(), jax.random.PRNGKey(0), 'color,flip')


def test_jit_shapes_dtype_and_determinism():
  x = _images(b=6, h=16, w=12)
  run = jax.jit(augment.diff_augment, static_argnames='policy')
  y = run(x, jax.random.PRNGKey(1))
  assert y.shape == x.shape and y.dtype == x.dtype
  assert np.isfinite(y).all() and not np.allclose(y, x)
  np.testing.assert_array_equal(y, run(x, jax.random.PRNGKey(1)))
  assert not np.allclose(y, run(x, jax.random.PRNGKey(2)))
  # Per-image parameters: identical images come out differently.
  same = jnp.broadcast_to(x[:1], x.shape)
  z = run(same, jax.random.PRNGKey(3))
  assert not np.allclose(z[0], z[1])


def test_differentiable_under_jit():
  x = _images(b=2, h=8, w=8)
  weights = jax.random.normal(jax.random.PRNGKey(5), x.shape)
  policies = ('color', 'translation', 'cutout', augment.DEFAULT_POLICY)

  @jax.jit
  def grads(x):
    def f(x, policy):
      return jnp.sum(weights * augment.diff_augment(x, jax.random.PRNGKey(7), policy))

    return [jax.grad(f)(x, p) for p in policies]

  for policy, g in zip(policies, grads(x)):
    assert g.shape == x.shape and np.isfinite(g).all(), policy
    assert float(jnp.abs(g).sum()) > 0, policy


@pytest.mark.parametrize('dy,dx', [(0, 0), (2, -3), (-4, 4), (5, 0), (-1, -7)])
def test_translate_is_a_zero_filled_roll(dy, dx):
  x = np.asarray(_images(b=2, h=8, w=10, c=2))
  shifts = np.array([[dy, dx], [-dy, dx // 2]])
  y = np.asarray(_translate(jnp.asarray(x), jnp.asarray(shifts)))
  for b in range(2):
    np.testing.assert_array_equal(y[b], _shift_np(x[b], *shifts[b]))


def test_random_translation_is_a_bounded_integer_shift():
  # A single bright pixel per image: after translation it must move by at most
  # round(32 / 8) = 4 pixels along each axis, unchanged in value.
  b, h, w = 64, 32, 32
  x = jnp.zeros((b, h, w, 1)).at[:, 16, 16, 0].set(1.0)
  y = np.asarray(augment.diff_augment(x, jax.random.PRNGKey(0), 'translation'))
  assert (y.sum(axis=(1, 2, 3)) == 1).all() and set(np.unique(y)) == {0.0, 1.0}
  shifts = np.argwhere(y[..., 0] == 1)[:, 1:] - 16  # one (row, col) per image, in order
  assert np.abs(shifts).max() == 4
  assert len({tuple(s) for s in shifts}) > 10  # per-image shifts


def test_cutout_zeroes_exactly_a_clipped_square():
  h, w = 16, 12
  x = jnp.ones((4, h, w, 3))
  size = (8, 6)
  centers = jnp.array([[8, 6], [0, 0], [15, 11], [3, 10]])
  y = np.asarray(augment.cutout(x, centers, size))
  for b, (cy, cx) in enumerate(np.asarray(centers)):
    top, left = cy - size[0] // 2, cx - size[1] // 2
    rows = min(top + size[0], h) - max(top, 0)
    cols = min(left + size[1], w) - max(left, 0)
    zero = y[b, ..., 0] == 0
    assert zero.sum() == rows * cols
    r0, c0 = max(top, 0), max(left, 0)
    assert zero[r0 : r0 + rows, c0 : c0 + cols].all()
    assert (y[b] == y[b, ..., :1]).all()  # same mask for every channel
  assert (y[0] == 0).sum() == 8 * 6 * 3  # the centred one is not clipped


def test_random_cutout_removes_half_size_squares():
  b, h, w = 32, 16, 16
  y = np.asarray(augment.diff_augment(jnp.ones((b, h, w, 1)), jax.random.PRNGKey(4), 'cutout'))
  zeros = (y[..., 0] == 0).sum(axis=(1, 2))
  assert zeros.max() == 8 * 8  # an unclipped square is (H/2) x (W/2)
  assert zeros.min() >= 4 * 4  # centres lie inside [0, H], so at least a quarter remains
  assert set(np.unique(y)) <= {0.0, 1.0}


def test_color_matches_the_official_formulas():
  x = _images(b=3, h=4, w=5, c=3)
  key = jax.random.PRNGKey(9)
  y = augment.diff_augment(x, key, 'color')
  # Recompute with the same per-image draws (the same key split as the implementation).
  (k,) = jax.random.split(key, 1)
  kb, ks, kc = jax.random.split(k, 3)

  def u(k, lo, hi):
    return np.asarray(jax.random.uniform(k, (3, 1, 1, 1), jnp.float32, lo, hi))

  def contrast(r):
    m = r.mean(axis=(1, 2, 3), keepdims=True)
    return (r - m) * u(kc, 0.5, 1.5) + m

  r = np.asarray(x) + u(kb, -0.5, 0.5)
  m = r.mean(axis=3, keepdims=True)  # saturation: around each pixel's mean over channels
  r = (r - m) * u(ks, 0.0, 2.0) + m
  np.testing.assert_allclose(y, contrast(r), rtol=1e-5, atol=1e-5)
  # Saturation is the identity on grayscale images: brightness and contrast only.
  gray = np.asarray(x[..., :1])
  y_gray = augment.diff_augment(jnp.asarray(gray), key, 'color')
  np.testing.assert_allclose(y_gray, contrast(gray + u(kb, -0.5, 0.5)), rtol=1e-5, atol=1e-5)
