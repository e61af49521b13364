"""gan_jax.models.layers: the sub-pixel transposed convolution equals Flax's / lax's."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from gan_jax.models.layers import ConvTranspose, conv_transpose_subpixel

DN = ('NHWC', 'HWIO', 'NHWC')


def _lax(x, w, strides, padding):
  return lax.conv_transpose(x, w, strides, padding, dimension_numbers=DN, precision='highest')


def _sub(x, w, strides, padding):
  return conv_transpose_subpixel(x, w, strides, padding, precision='highest')


# Kernel, stride, padding and odd / even input sizes, including uneven phases (VALID with a
# kernel that is no multiple of the stride) and non-square strides.
CASES = [
  (4, (2, 2), 'SAME', (7, 7)),  # DCGAN's layer
  (4, (2, 2), 'VALID', (4, 7)),
  (3, (2, 2), 'SAME', (7, 5)),  # kernel no multiple of the stride: uneven phases
  (3, (2, 2), 'VALID', (1, 1)),
  (5, (3, 3), 'SAME', (4, 7)),
  (2, (1, 1), 'SAME', (4, 4)),
  (1, (1, 1), 'VALID', (7, 5)),
  (4, (2, 3), 'SAME', (7, 6)),  # non-square strides
  (4, (2, 3), 'VALID', (7, 6)),
]
# Forward only, on every kernel / stride / padding combination.
ALL = [
  (k, (s, s), pad, hw)
  for k, s, pad, hw in itertools.product([1, 2, 3, 4, 5], [1, 2, 3], ['SAME', 'VALID'], [(4, 7)])
  if s <= k
]


def test_subpixel_equals_lax_conv_transpose_for_every_shape():
  for k, strides, padding, hw in ALL:
    x = jax.random.normal(jax.random.PRNGKey(k), (2, *hw, 3))
    w = jax.random.normal(jax.random.PRNGKey(strides[0]), (k, k, 3, 4))
    ref, got = _lax(x, w, strides, padding), _sub(x, w, strides, padding)
    assert got.shape == ref.shape, (k, strides, padding, hw)
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-5, err_msg=str((k, strides, padding)))


@pytest.mark.parametrize('k,strides,padding,hw', CASES)
def test_subpixel_equals_lax_conv_transpose_forward_and_gradients(k, strides, padding, hw):
  kx, kw, kc = jax.random.split(jax.random.PRNGKey(k * 100 + strides[0] * 10 + hw[0]), 3)
  x = jax.random.normal(kx, (2, *hw, 3))
  w = jax.random.normal(kw, (k, k + (strides[1] > strides[0]), 3, 4))
  ref, got = _lax(x, w, strides, padding), _sub(x, w, strides, padding)
  assert got.shape == ref.shape
  np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-5)
  # Both gradients, through a loss that weighs every output position differently.
  c = jax.random.normal(kc, ref.shape)
  g_ref = jax.grad(lambda a, b: jnp.sum(c * _lax(a, b, strides, padding)), (0, 1))(x, w)
  g_got = jax.grad(lambda a, b: jnp.sum(c * _sub(a, b, strides, padding)), (0, 1))(x, w)
  for a, b in zip(g_got, g_ref):
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)


def test_subpixel_refuses_what_it_cannot_compute():
  x, w = jnp.zeros((1, 4, 4, 2)), jnp.zeros((2, 2, 2, 3))
  with pytest.raises(ValueError, match='exceed the kernel'):
    conv_transpose_subpixel(x, w, (3, 3))
  with pytest.raises(ValueError, match='supports SAME, VALID'):
    conv_transpose_subpixel(x, w, (2, 2), 'CIRCULAR')


@pytest.fixture
def impl():
  """Restores the class-wide choice after a test changes it."""
  before = ConvTranspose.impl
  yield
  ConvTranspose.impl = before


@pytest.mark.parametrize('dtype', [None, jnp.bfloat16])
@pytest.mark.parametrize('out', [1, 5])
def test_layer_has_flax_parameters_and_outputs(impl, dtype, out):
  kw = dict(padding='SAME', dtype=dtype, rngs=nnx.Rngs(0))
  ours, flax_layer = ConvTranspose(6, out, (4, 4), (2, 2), **kw), None
  flax_layer = nnx.ConvTranspose(
    6, out, (4, 4), (2, 2), padding='SAME', dtype=dtype, rngs=nnx.Rngs(0)
  )
  # Same parameter tree (names, shapes, initial values): checkpoints are interchangeable.
  a, b = nnx.state(ours, nnx.Param), nnx.state(flax_layer, nnx.Param)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(p, q)
  x = jax.random.normal(jax.random.PRNGKey(1), (3, 7, 7, 6))
  tol = 1e-5 if dtype is None else 5e-2
  for choice in ('subpixel', 'auto', 'lax'):
    ConvTranspose.impl = choice
    y = ours(x)
    assert y.dtype == flax_layer(x).dtype and y.shape == (3, 14, 14, out)
    np.testing.assert_allclose(
      np.asarray(y, np.float32), np.asarray(flax_layer(x), np.float32), atol=tol, rtol=tol
    )


def test_auto_uses_subpixel_on_cpu_except_for_one_output_channel(impl):
  x = jnp.zeros((2, 7, 7, 6))
  wide = ConvTranspose(6, 4, (4, 4), (2, 2), padding='SAME', rngs=nnx.Rngs(0))
  narrow = ConvTranspose(6, 1, (4, 4), (2, 2), padding='SAME', rngs=nnx.Rngs(0))
  ConvTranspose.impl = 'auto'
  assert wide._subpixel_applies(x) == (jax.default_backend() == 'cpu')
  assert not narrow._subpixel_applies(x)
  ConvTranspose.impl = 'subpixel'
  assert narrow._subpixel_applies(x)
  # What the sub-pixel form does not cover stays Flax's computation.
  assert not ConvTranspose(
    6, 4, (4, 4), (2, 2), padding='SAME', kernel_dilation=2, rngs=nnx.Rngs(0)
  )._subpixel_applies(x)
  ConvTranspose.impl = 'fast'
  with pytest.raises(ValueError, match="use 'auto', 'subpixel' or 'lax'"):
    wide(x)
