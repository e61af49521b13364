"""gan_jax.models.layers: the sub-pixel transposed convolution equals Flax's / lax's; so do the
strided convolution and its derivatives to second order."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from gan_jax.models import layers
from gan_jax.models.layers import Conv, ConvTranspose, conv_transpose_subpixel, strided_conv

DN = ('NHWC', 'HWIO', 'NHWC')


# Jitted (one compile per shape): op by op, the subpixel path's many small ops take longer.
@functools.partial(jax.jit, static_argnums=(2, 3))
def _lax(x, w, strides, padding):
  return lax.conv_transpose(x, w, strides, padding, dimension_numbers=DN, precision='highest')


@functools.partial(jax.jit, static_argnums=(2, 3))
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
  """Restores the class-wide choices (ConvTranspose.impl, Conv.impl) after a test."""
  before = ConvTranspose.impl, Conv.impl
  yield
  ConvTranspose.impl, Conv.impl = before


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


# --- Conv / strided_conv: XLA's strided convolution with a fast derivative of its input
# gradient (what gradient penalties differentiate).


def _conv_lax(x, w, strides, padding):
  return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=DN)


STRIDED = [
  (4, (2, 2), 'SAME', (28, 28), 1),  # DCGAN-28's D: the image layer ...
  (4, (2, 2), 'SAME', (14, 14), 3),  # ... and the next one
  (3, (2, 2), 'VALID', (9, 8), 2),  # odd sizes: a row of the input is never read
  (3, (3, 2), 'SAME', (7, 10), 2),  # non-square stride, kernel no multiple of it
  (2, (3, 3), 'VALID', (8, 8), 2),  # stride larger than the kernel: skipped pixels
]


@pytest.mark.parametrize('k,strides,padding,hw,c_in', STRIDED)
def test_strided_conv_equals_lax_to_second_order(k, strides, padding, hw, c_in):
  """Forward and first derivatives bitwise; the gradient-penalty gradient (the derivative of
  a function of the input gradient, Gulrajani et al. 2017, eq. 3) to fp32 rounding."""
  kx, kw, kc = jax.random.split(jax.random.PRNGKey(k * 100 + strides[0] * 10 + hw[0]), 3)
  x = jax.random.normal(kx, (3, *hw, c_in))
  w = jax.random.normal(kw, (k, k, c_in, 4)) * 0.3
  pads = tuple(lax.padtype_to_pads(hw, (k, k), strides, padding))
  ref, got = _conv_lax(x, w, strides, pads), strided_conv(x, w, strides, pads)
  np.testing.assert_array_equal(got, ref)
  c = jax.random.normal(kc, ref.shape)

  def first(conv):  # d/dx and d/dw of a loss that weighs every output differently
    return jax.grad(lambda a, b: jnp.sum(c * jnp.tanh(conv(a, b, strides, pads))), (0, 1))(x, w)

  for a, b in zip(first(strided_conv), first(_conv_lax)):
    np.testing.assert_array_equal(a, b)

  def penalty_grad(conv):  # per-sample input-gradient norms, then d/dw and d/dx of them
    def penalty(a, b):
      gx = jax.grad(lambda a: jnp.sum(c * jnp.tanh(conv(a, b, strides, pads))))(a)
      norms = jnp.sqrt(jnp.sum(gx**2, axis=(1, 2, 3)))
      return jnp.mean((norms - 1.0) ** 2)

    return jax.grad(penalty, (0, 1))(x, w)

  for a, b in zip(penalty_grad(strided_conv), penalty_grad(_conv_lax)):
    assert float(jnp.max(jnp.abs(b))) > 0
    np.testing.assert_allclose(a, b, atol=2e-5 * float(jnp.max(jnp.abs(b))), rtol=1e-4)


@pytest.mark.parametrize('dtype', [None, jnp.bfloat16])
def test_conv_layer_has_flax_parameters_and_outputs(impl, dtype):
  ours = Conv(3, 8, (4, 4), (2, 2), padding='SAME', dtype=dtype, rngs=nnx.Rngs(0))
  flax_layer = nnx.Conv(3, 8, (4, 4), (2, 2), padding='SAME', dtype=dtype, rngs=nnx.Rngs(0))
  a, b = nnx.state(ours, nnx.Param), nnx.state(flax_layer, nnx.Param)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(p, q)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 9, 9, 3))
  for choice in ('custom', 'auto', 'lax'):
    Conv.impl = choice
    y = ours(x)
    assert y.dtype == flax_layer(x).dtype and y.shape == (2, 5, 5, 8)
    np.testing.assert_array_equal(y, flax_layer(x))


def test_conv_auto_applies_to_strided_layers_on_cpu(impl):
  x = jnp.zeros((2, 8, 8, 3))
  Conv.impl = 'auto'
  assert Conv(3, 4, (4, 4), (2, 2), rngs=nnx.Rngs(0))._strided_applies(x) == (
    jax.default_backend() == 'cpu'
  )
  Conv.impl = 'custom'
  assert Conv(3, 4, (4, 4), (2, 2), rngs=nnx.Rngs(0))._strided_applies(x)
  # Stride 1 and what strided_conv does not cover stay Flax's computation.
  assert not Conv(3, 4, (3, 3), rngs=nnx.Rngs(0))._strided_applies(x)
  assert not Conv(3, 4, (3, 3), (2, 2), kernel_dilation=2, rngs=nnx.Rngs(0))._strided_applies(x)
  assert not Conv(3, 4, (3, 3), (2, 2), padding='CIRCULAR', rngs=nnx.Rngs(0))._strided_applies(x)
  Conv.impl = 'fast'
  with pytest.raises(ValueError, match="use 'auto', 'custom' or 'lax'"):
    Conv(3, 4, (4, 4), (2, 2), rngs=nnx.Rngs(0))(x)


@pytest.mark.parametrize('cls', [Conv, ConvTranspose])
def test_batch_chunks_give_the_layer_and_its_second_order_gradients(cls, monkeypatch):
  """`batch_chunk` (issue 21's chunked-convolution attempt): the layer on chunks of 4 images
  equals the layer on the batch of 12, forward, in the kernel gradient, and in the kernel
  gradient of an R1-style input-gradient norm (which gradient penalties differentiate)."""
  layer = cls(3, 5, (4, 4), (2, 2), padding='SAME', rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(layer)
  x = jax.random.normal(jax.random.key(1), (12, 8, 8, 3))

  def outputs(params):
    def f(p, x):
      return nnx.merge(graphdef, p)(x)

    def r1(p):
      grad_x = jax.grad(lambda x: jnp.sum(jnp.tanh(f(p, x))))(x)
      return jnp.sum(grad_x**2)

    y = f(params, x)
    gk = jax.grad(lambda p: jnp.sum(jnp.sin(f(p, x))))(params)['kernel'][...]
    g2 = jax.grad(r1)(params)['kernel'][...]
    return y, gk, g2

  def conv_count():
    jaxpr = jax.make_jaxpr(lambda p: nnx.merge(graphdef, p)(x))(params)
    return str(jaxpr).count('conv_general_dilated')

  whole, n_whole = outputs(params), conv_count()
  monkeypatch.setattr(cls, 'batch_chunk', 4)
  chunked = outputs(params)
  assert conv_count() == 3 * n_whole  # three chunks of 4 images, each with the layer's convs
  for a, b in zip(chunked, whole):
    # float32 rounding of sums over up to 80 terms, relative to the largest output (~40), not
    # to each element: an output near 0 may differ by ~1e-5 (seen without XLA's optimisations)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-6 * float(np.max(np.abs(b))))
  # A chunk that does not divide the batch computes the batch at once.
  monkeypatch.setattr(cls, 'batch_chunk', 5)
  assert conv_count() == n_whole


@pytest.mark.parametrize(
  'k,strides,padding,hw',
  [
    (4, (2, 2), 'SAME', (7, 7)),
    (3, (2, 2), 'SAME', (5, 6)),
    (4, (2, 2), 'VALID', (4, 4)),
    (3, (1, 1), 'SAME', (5, 5)),
  ],
)
def test_adjoint_backward_equals_autodiff_of_the_transposed_convolution(k, strides, padding, hw):
  """`conv_transpose_adjoint_vjp` (issue 21): the output of the sub-pixel form, and input and
  kernel gradients equal to autodiff of XLA's own transposed convolution (the reference),
  also on odd sizes (uneven phases) and 'VALID' padding."""
  from gan_jax.models.layers import conv_transpose_adjoint_vjp

  kx, kw, kg = jax.random.split(jax.random.key(3), 3)
  x = jax.random.normal(kx, (3, *hw, 5))
  w = jax.random.normal(kw, (k, k, 5, 4))

  def ref(x, w):
    return lax.conv_transpose(x, w, strides, padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

  y_ref = ref(x, w)
  g = jax.random.normal(kg, y_ref.shape)
  y = conv_transpose_adjoint_vjp(x, w, strides, padding)
  np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-4)
  _, vjp_ref = jax.vjp(ref, x, w)
  _, vjp = jax.vjp(lambda x, w: conv_transpose_adjoint_vjp(x, w, strides, padding), x, w)
  for a, b in zip(vjp(g), vjp_ref(g)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


def test_layer_backward_option_picks_the_adjoint_and_keeps_its_outputs(monkeypatch):
  layer = ConvTranspose(6, 4, (4, 4), (2, 2), padding='SAME', rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(layer)
  x = jax.random.normal(jax.random.key(0), (2, 5, 5, 6))

  def grads():
    return jax.grad(lambda p: jnp.sum(jnp.sin(nnx.merge(graphdef, p)(x))))(params)['kernel'][...]

  ref = grads()
  monkeypatch.setattr(ConvTranspose, 'backward', 'adjoint')
  jaxpr = str(jax.make_jaxpr(jax.grad(lambda p: jnp.sum(nnx.merge(graphdef, p)(x))))(params))
  assert 'custom_vjp_call' in jaxpr
  np.testing.assert_allclose(grads(), ref, rtol=1e-4, atol=1e-4)
  monkeypatch.setattr(ConvTranspose, 'backward', 'other')
  with pytest.raises(ValueError, match="ConvTranspose.backward='other'"):
    nnx.merge(graphdef, params)(x)


@pytest.mark.parametrize(
  'k,padding,hw,c_in,c_out',
  [
    (3, 'SAME', (8, 8), 5, 7),  # SNGAN's 3x3 convolutions
    (1, 'SAME', (6, 6), 4, 3),  # its 1x1 shortcuts
    (3, 'VALID', (9, 7), 3, 2),  # no padding, non-square
    (4, 'SAME', (7, 7), 2, 3),  # even kernel: unequal padding on the two sides
  ],
)
def test_im2col_kernel_gradient_equals_lax_to_second_order(k, padding, hw, c_in, c_out):
  """`conv_im2col_vjp`: the forward pass and the input gradient bitwise XLA's, the kernel
  gradient and an R1-style penalty's gradient (through the input gradient) to fp32 rounding."""
  kx, kw, kc = jax.random.split(jax.random.PRNGKey(k * 10 + hw[0]), 3)
  x = jax.random.normal(kx, (3, *hw, c_in))
  w = jax.random.normal(kw, (k, k, c_in, c_out)) * 0.3
  pads = tuple(lax.padtype_to_pads(hw, (k, k), (1, 1), padding))

  def lax_conv(a, b, strides, p):
    return _conv_lax(a, b, strides, p)

  def im2col(a, b, strides, p):
    del strides
    return layers.conv_im2col_vjp(a, b, p)

  ref = lax_conv(x, w, (1, 1), pads)
  np.testing.assert_array_equal(im2col(x, w, (1, 1), pads), ref)
  c = jax.random.normal(kc, ref.shape)

  def first(conv):
    return jax.grad(lambda a, b: jnp.sum(c * jnp.tanh(conv(a, b, (1, 1), pads))), (0, 1))(x, w)

  (dx, dw), (dx_ref, dw_ref) = first(im2col), first(lax_conv)
  np.testing.assert_array_equal(dx, dx_ref)
  np.testing.assert_allclose(dw, dw_ref, atol=1e-5 * float(jnp.max(jnp.abs(dw_ref))), rtol=1e-5)

  def penalty_grad(conv):  # R1: the squared input-gradient norm, then d/dw and d/dx of it
    def penalty(a, b):
      gx = jax.grad(lambda a: jnp.sum(c * jnp.tanh(conv(a, b, (1, 1), pads))))(a)
      return jnp.mean(jnp.sum(gx**2, axis=(1, 2, 3)))

    return jax.grad(penalty, (0, 1))(x, w)

  for a, b in zip(penalty_grad(im2col), penalty_grad(lax_conv)):
    assert float(jnp.max(jnp.abs(b))) > 0
    np.testing.assert_allclose(a, b, atol=2e-5 * float(jnp.max(jnp.abs(b))), rtol=1e-4)


def test_conv_kernel_grad_applies_to_large_stride_1_layers_only(monkeypatch):
  """`Conv.kernel_grad='im2col'` uses `conv_im2col_vjp` for stride-1 layers with at least
  `IM2COL_MIN_POSITIONS` input pixels and `IM2COL_MIN_FEATURES` output channels, and leaves
  the others (and an unknown value is refused)."""
  calls = []
  real = layers.conv_im2col_vjp
  monkeypatch.setattr(layers, 'conv_im2col_vjp', lambda *a: calls.append(1) or real(*a))
  for stride, hw, c_out, used in [
    (1, 32, 16, True),
    (1, 16, 16, False),
    (1, 32, 3, False),
    (2, 32, 16, False),
  ]:
    layer = Conv(2, c_out, (3, 3), (stride, stride), padding='SAME', rngs=nnx.Rngs(0))
    ref = np.asarray(layer(jnp.ones((1, hw, hw, 2))))
    layer.kernel_grad = 'im2col'
    calls.clear()
    np.testing.assert_array_equal(layer(jnp.ones((1, hw, hw, 2))), ref)
    assert bool(calls) == used, (stride, hw, c_out)
  layer.kernel_grad = 'fast'
  with pytest.raises(ValueError, match="Conv.kernel_grad='fast'"):
    layer(jnp.ones((1, 32, 32, 2)))
