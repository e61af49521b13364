"""Layers shared by the models: a transposed convolution computed as sub-pixel convolutions,
a strided convolution whose input gradient has fast derivatives (`Conv`), optionally a
stride-1 kernel gradient as matrix products (`conv_im2col_vjp`, `Conv.kernel_grad`), and at the end the
spectral normalization wrapper (`SpectralNorm`) and the BatchNorm (`batch_norm`) that the
DCGAN, SNGAN and conditional models share (they lived in `gan_jax.models.sngan`, which still
re-exports them; here, `gan_jax.models.conditional` can use them without an import cycle).

`ConvTranspose` is `flax.nnx.ConvTranspose` with the same parameters (`kernel` [kh, kw, C_in,
C_out], `bias` [C_out]), initialisation and outputs (to float32 rounding), computed
differently: a stride-s transposed convolution is s * s ordinary stride-1 convolutions of the
input, one per output phase (r_h, r_w), each with the kernel taps of that phase
(`kernel[k0_h::s, k0_w::s]`), whose outputs interleave into the s-times larger image
(depth-to-space; the "sub-pixel convolution" view of Shi et al. 2016, section 2.2).

Why: XLA's CPU backend computes `lax.conv_transpose` as a convolution of the zero-dilated
input (`lhs_dilation`), and the kernel gradient of that convolution has no fast CPU kernel.
On a 2-core CPU the kernel gradient of DCGAN-28's first transposed convolution (7x7x128 ->
14x14x64, batch 64) took 217 ms against 5 ms for an ordinary convolution of the same size,
two thirds of the whole train step, and it grew as batch^1.7 (2.1 s at batch 256). The phase
convolutions are ordinary convolutions in both directions of autodiff, and they skip the 3/4
of the multiply-adds that the dilated form spends on zeros. (`benchmarks/throughput.py`
measures the step; `tests/test_models.py` checks the equality.)
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax


def _transpose_padding(kernel: int, stride: int, padding: str) -> tuple[int, int]:
  """The (low, high) padding `lax.conv_transpose` gives the dilated input (its own rule)."""
  if padding == 'SAME':
    pad_len = kernel + stride - 2
    low = kernel - 1 if stride > kernel - 1 else -(-pad_len // 2)
  elif padding == 'VALID':
    pad_len = kernel + stride - 2 + max(kernel - stride, 0)
    low = kernel - 1
  else:
    raise ValueError(f'padding={padding!r}: sub-pixel transposed convolution supports SAME, VALID.')
  return low, pad_len - low


def conv_transpose_subpixel(
  x: jax.Array,
  kernel: jax.Array,
  strides: tuple[int, int],
  padding: str = 'SAME',
  precision: lax.PrecisionLike = None,
) -> jax.Array:
  """`lax.conv_transpose(x, kernel, strides, padding)` (NHWC, HWIO, no kernel transpose) as
  one stride-1 convolution per output phase, interleaved.

  Output position o = s * p + r of one spatial axis reads the dilated, padded input at
  o + k - low for taps k = 0..K-1; only taps with k = (low - r) mod s land on input samples,
  at input index p + (r + k - low) / s. So phase r is a stride-1 convolution of x with taps
  k0 = (low - r) mod s, k0 + s, ... and padding (-d0, d0 + m - 1), d0 = (r + k0 - low) / s,
  m = the phase's tap count; a negative padding crops.

  Args:
    x: float [B, H, W, C_in].
    kernel: float [KH, KW, C_in, C_out] (Flax's ConvTranspose kernel).
    strides: (s_h, s_w), >= 1.
    padding: 'SAME' (output [B, s_h H, s_w W, C_out]) or 'VALID' (as lax.conv_transpose).
    precision: passed to each convolution.

  Returns:
    [B, H', W', C_out], equal to lax.conv_transpose's result up to float rounding (the sums
    run in another order).

  Raises:
    ValueError: for another padding, or a stride larger than the kernel (a phase without
      taps: use lax.conv_transpose).
  """
  (kh, kw), (sh, sw) = kernel.shape[:2], strides
  if sh > kh or sw > kw:
    raise ValueError(f'strides {strides} exceed the kernel {kernel.shape[:2]}.')
  pads = [_transpose_padding(kh, sh, padding), _transpose_padding(kw, sw, padding)]
  # Output length per axis: (n - 1) * s + 1 + low + high - K + 1.
  out_hw = [
    (n - 1) * s + 1 + lo + hi - k + 1
    for n, s, (lo, hi), k in zip(x.shape[1:3], strides, pads, (kh, kw))
  ]

  def phase_axis(r, s, k, low, n, out_len):
    k0 = (low - r) % s
    m = len(range(k0, k, s))
    d0 = (r + k0 - low) // s
    # This phase's outputs: p = 0 .. ceil((out_len - r) / s) - 1.
    count = -(-(out_len - r) // s)
    return k0, (-d0, d0 + m - 1 + count - n), count

  rows = []
  for rh in range(sh):
    k0h, pad_h, nh = phase_axis(rh, sh, kh, pads[0][0], x.shape[1], out_hw[0])
    row = []
    for rw in range(sw):
      k0w, pad_w, nw = phase_axis(rw, sw, kw, pads[1][0], x.shape[2], out_hw[1])
      row.append(
        lax.conv_general_dilated(
          x,
          kernel[k0h::sh, k0w::sw],
          (1, 1),
          [pad_h, pad_w],
          dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
          precision=precision,
        )
      )
    rows.append(row)
  h, w = out_hw
  if all(r.shape[1:3] == rows[0][0].shape[1:3] for row in rows for r in row) and (
    h == sh * rows[0][0].shape[1] and w == sw * rows[0][0].shape[2]
  ):
    # Every phase has the same size: stack to [B, n_h, s_h, n_w, s_w, C] and merge.
    y = jnp.stack([jnp.stack(row, axis=3) for row in rows], axis=2)
    return y.reshape(x.shape[0], h, w, kernel.shape[3])
  # Uneven phases (odd output lengths): scatter each phase into its strided positions.
  y = jnp.zeros((x.shape[0], h, w, kernel.shape[3]), rows[0][0].dtype)
  for rh, row in enumerate(rows):
    for rw, phase in enumerate(row):
      y = y.at[:, rh::sh, rw::sw].set(phase)
  return y


def _lax_conv_transpose(x, kernel, strides, padding, precision):
  return lax.conv_transpose(
    x, kernel, strides, padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC'), precision=precision
  )


def _transpose_adjoint(g, kernel, x_aval, strides, padding, precision):
  """A_W^T g for A_W x = conv_transpose(x, W): JAX's transpose of the zero-dilated form,
  which is a stride-s convolution of g (no zeros inserted)."""
  transpose = jax.linear_transpose(
    lambda x: _lax_conv_transpose(x, kernel, strides, padding, precision), x_aval
  )
  return transpose(g)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv_transpose_adjoint_vjp(
  x: jax.Array,
  kernel: jax.Array,
  strides: tuple[int, int],
  padding: str = 'SAME',
  precision: lax.PrecisionLike = None,
) -> jax.Array:
  """`conv_transpose_subpixel(x, kernel, strides, padding)`, whose backward pass runs
  through the adjoint strided convolution instead of the phase convolutions' own gradients.

  A transposed convolution y = A_W x is linear in x and in W. Its input gradient is
  A_W^T g, a stride-s convolution of the output gradient g; its kernel gradient follows from
  <g, A_W x> = <A_W^T g, x>: it is the kernel gradient of that strided convolution at input g
  with output gradient x. Both are the strided convolution's fast CPU operations (those of
  a discriminator layer), where autodiff of the sub-pixel form runs s * s small
  convolutions' gradients (issue 21: 0.37x PyTorch's backward for DCGAN-28's 7x7x128 ->
  14x14x64 layer, `benchmarks/conv_ops.py`).

  Args:
    x, kernel, strides, padding, precision: as `conv_transpose_subpixel`.

  Returns:
    As `conv_transpose_subpixel`; its gradients equal autodiff's to float rounding
    (`tests/test_layers.py`).
  """
  return conv_transpose_subpixel(x, kernel, strides, padding, precision)


def _adjoint_vjp_fwd(x, kernel, strides, padding, precision):
  return conv_transpose_adjoint_vjp(x, kernel, strides, padding, precision), (x, kernel)


def _adjoint_vjp_bwd(strides, padding, precision, residuals, g):
  x, kernel = residuals
  x_aval = jax.ShapeDtypeStruct(x.shape, x.dtype)
  dx, kernel_vjp = jax.vjp(
    lambda w: _transpose_adjoint(g, w, x_aval, strides, padding, precision), kernel
  )
  (dkernel,) = kernel_vjp(x)
  return dx, dkernel


conv_transpose_adjoint_vjp.defvjp(_adjoint_vjp_fwd, _adjoint_vjp_bwd)


def _pair(value) -> tuple[int, int]:
  """Flax's int-or-sequence (None = 1) stride / dilation as a pair."""
  if value is None:
    return (1, 1)
  return (value, value) if isinstance(value, int) else tuple(value)


def in_batch_chunks(fn, x: jax.Array, chunk: int | None) -> jax.Array:
  """`fn(x)` computed on consecutive chunks of `chunk` images, unrolled, concatenated.

  For a per-image function (a convolution) the result is `fn(x)`; gradients with respect to
  shared parameters are summed over the chunks by autodiff, so they equal the unchunked ones
  to float rounding. Applies only when `chunk` divides the batch and is smaller than it;
  otherwise it is `fn(x)`.

  Args:
    fn: maps [b, ...] to [b, ...] image by image.
    x: [B, ...].
    chunk: images per chunk (None or 0: no chunking).

  Returns:
    [B, ...], `fn(x)`.
  """
  batch = x.shape[0]
  if not chunk or batch <= chunk or batch % chunk:
    return fn(x)
  return jnp.concatenate([fn(x[i : i + chunk]) for i in range(0, batch, chunk)], axis=0)


class ConvTranspose(nnx.ConvTranspose):
  """`flax.nnx.ConvTranspose` (same constructor, parameters and results), computed with
  `conv_transpose_subpixel` when it applies: 2D, NHWC with one batch axis, 'SAME' or
  'VALID' padding, strides no larger than the kernel, no kernel dilation, mask or
  transposed kernel, no `preferred_element_type`. Otherwise it is Flax's layer unchanged.

  With `impl='auto'` (the default) the sub-pixel form is used on the CPU backend only, and
  not for one output channel: there XLA's own form was faster (14x14x64 -> 28x28x1 at batch
  64, forward and both gradients: 8 ms against 13 ms), while with 3 output channels the
  sub-pixel form was 3x faster and with 64 some 16x. GPU and TPU compilers have fast
  transposed convolutions, so 'auto' leaves them to XLA there.

  Input [B, H, W, C_in] float; output [B, s_h H, s_w W, C_out] for 'SAME' padding, in
  `dtype` (default: the promoted dtype of input and kernel).
  """

  # Which computation: 'auto' (default) is the sub-pixel form on the CPU backend for layers
  # with more than one output channel, `lax.conv_transpose` otherwise; 'subpixel' and 'lax'
  # force one (for comparisons). Set on the class (`ConvTranspose.impl = 'lax'`) before the
  # step is traced.
  impl: str = 'auto'
  # Images per chunk: None (default) computes the whole batch at once; an int computes the
  # layer on chunks of that many images (`in_batch_chunks`). Set on the class before tracing.
  batch_chunk: int | None = None
  # The backward pass of the sub-pixel form: 'autodiff' (default: the phase convolutions'
  # own gradients) or 'adjoint' (`conv_transpose_adjoint_vjp`: the adjoint strided
  # convolution's operations; the same gradients to float rounding). Set on the class
  # before tracing.
  backward: str = 'autodiff'

  def _subpixel_applies(self, inputs: jax.Array) -> bool:
    if self.impl not in ('auto', 'subpixel', 'lax'):
      raise ValueError(f"ConvTranspose.impl={self.impl!r}: use 'auto', 'subpixel' or 'lax'.")
    if self.impl == 'lax' or (
      self.impl == 'auto' and (jax.default_backend() != 'cpu' or self.out_features == 1)
    ):
      return False
    return (
      len(self.kernel_size) == 2
      and inputs.ndim == 4
      and self.padding in ('SAME', 'VALID')
      and all(s <= k for s, k in zip(_pair(self.strides), self.kernel_size))
      and _pair(self.kernel_dilation) == (1, 1)
      and self.mask is None
      and not self.transpose_kernel
      and self.preferred_element_type is None
    )

  def __call__(self, inputs: jax.Array) -> jax.Array:
    return in_batch_chunks(self._call_whole, inputs, self.batch_chunk)

  def _call_whole(self, inputs: jax.Array) -> jax.Array:
    if not self._subpixel_applies(inputs):
      return super().__call__(inputs)
    bias = self.bias[...] if self.bias is not None else None
    inputs, kernel, bias = self.promote_dtype((inputs, self.kernel[...], bias), dtype=self.dtype)
    if self.backward not in ('autodiff', 'adjoint'):
      raise ValueError(f"ConvTranspose.backward={self.backward!r}: use 'autodiff' or 'adjoint'.")
    fn = conv_transpose_adjoint_vjp if self.backward == 'adjoint' else conv_transpose_subpixel
    y = fn(inputs, kernel, _pair(self.strides), self.padding, self.precision)
    if bias is not None:
      y = y + bias.reshape(1, 1, 1, -1)
    return y


_NHWC = ('NHWC', 'HWIO', 'NHWC')


def _conv(x, kernel, strides, padding, precision):
  return lax.conv_general_dilated(
    x, kernel, strides, padding, dimension_numbers=_NHWC, precision=precision
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def strided_conv(
  x: jax.Array,
  kernel: jax.Array,
  strides: tuple[int, int],
  padding: tuple[tuple[int, int], tuple[int, int]],
  precision: lax.PrecisionLike = None,
) -> jax.Array:
  """`lax.conv_general_dilated(x, kernel, strides, padding)` (NHWC, HWIO), with the same
  gradients, whose input gradient is itself differentiated with ordinary strided
  convolutions.

  The input gradient of a stride-s convolution y = A_W x is the transposed convolution
  A_W^T g, which XLA computes as a convolution of the zero-dilated g. Gradient penalties
  (WGAN-GP, R1, R2) differentiate that input gradient again with respect to D's parameters,
  and XLA CPU's kernel gradient of a dilated convolution is slow (as for `ConvTranspose`):
  it made a WGAN-GP step of DCGAN-28 4x slower than the plain step. A_W^T g is bilinear, so
  its derivatives are the strided convolution's own fast operations: <c, A_W^T g> =
  <A_W c, g> gives d/dg = A_W c (the forward convolution of c) and d/dW = the kernel
  gradient of A_W at input c with output gradient g. First-order gradients run exactly
  XLA's operations.

  Args:
    x: float [B, H, W, C_in].
    kernel: float [KH, KW, C_in, C_out].
    strides: (s_h, s_w).
    padding: ((low_h, high_h), (low_w, high_w)) explicit padding of x.
    precision: passed to every convolution.

  Returns:
    [B, H', W', C_out], as lax.conv_general_dilated; first and second derivatives equal
    its own to float rounding (`tests/test_layers.py`).
  """
  return _conv(x, kernel, strides, padding, precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _input_gradient(g, kernel, x_aval, strides, padding, precision):
  """A_W^T g: the input gradient of `strided_conv` (XLA's own transposed convolution)."""
  transpose = jax.linear_transpose(lambda x: _conv(x, kernel, strides, padding, precision), x_aval)
  return transpose(g)[0]


def _input_gradient_fwd(g, kernel, x_aval, strides, padding, precision):
  return _input_gradient(g, kernel, x_aval, strides, padding, precision), (g, kernel)


def _input_gradient_bwd(x_aval, strides, padding, precision, residuals, c):
  g, kernel = residuals
  dg, kernel_vjp = jax.vjp(
    lambda w: _conv(c.astype(x_aval.dtype), w, strides, padding, precision), kernel
  )
  (dkernel,) = kernel_vjp(g.astype(dg.dtype))
  return dg.astype(g.dtype), dkernel


_input_gradient.defvjp(_input_gradient_fwd, _input_gradient_bwd)


def _strided_conv_fwd(x, kernel, strides, padding, precision):
  return strided_conv(x, kernel, strides, padding, precision), (x, kernel)


def _strided_conv_bwd(strides, padding, precision, residuals, g):
  x, kernel = residuals
  x_aval = jax.ShapeDtypeStruct(x.shape, x.dtype)
  dx = _input_gradient(g, kernel, x_aval, strides, padding, precision)
  _, kernel_vjp = jax.vjp(lambda w: _conv(x, w, strides, padding, precision), kernel)
  (dkernel,) = kernel_vjp(g)
  return dx, dkernel


strided_conv.defvjp(_strided_conv_fwd, _strided_conv_bwd)


def _im2col_kernel_gradient(x, g, kernel_shape, padding):
  """dL/dW of a stride-1 convolution y = conv(x, W) with output gradient g, as one matrix
  product per kernel row: the padded input, channels first ([C_in, B, H + pads, W + pads]),
  gives the KW shifted copies of each row, stacked on the channel axis ([KW * C_in, B * H' *
  W'], im2col), which multiply g ([B * H' * W', C_out]).

  The same sum XLA's kernel gradient computes (to float rounding), with the batch and
  spatial axes as one long contraction: a dense matrix product, which XLA's CPU backend runs
  near its matmul speed. With it, the backward pass (input and kernel gradients) of SNGAN-32's
  32x32x256 layer took 1,181 ms instead of 1,734 on 2 CPU cores at batch 64
  (`benchmarks/conv_ops.py --case sngan32 --impls jax,jax_im2col,torch`; PyTorch: 871 ms).
  """
  kh, kw, cin, cout = kernel_shape
  (pt, pb), (pl, pr) = padding
  xt = jnp.pad(jnp.transpose(x, (3, 0, 1, 2)), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
  b, ho, wo, _ = g.shape
  n = b * ho * wo
  g2 = g.reshape(n, cout)
  rows = []
  for i in range(kh):
    cols = jnp.concatenate([xt[:, :, i : i + ho, j : j + wo] for j in range(kw)], axis=0)
    rows.append((cols.reshape(kw * cin, n) @ g2).reshape(kw, cin, cout))
  return jnp.stack(rows)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_im2col_vjp(
  x: jax.Array,
  kernel: jax.Array,
  padding: tuple[tuple[int, int], tuple[int, int]],
  precision: lax.PrecisionLike = None,
) -> jax.Array:
  """`lax.conv_general_dilated(x, kernel, (1, 1), padding)` (NHWC, HWIO), whose kernel
  gradient is computed by `_im2col_kernel_gradient` (matrix products of the shifted input)
  and whose input gradient is XLA's own. Forward pass bit for bit XLA's; gradients equal
  XLA's to float32 rounding (`tests/test_layers.py`); differentiable again (the backward
  pass is made of differentiable operations), so gradient penalties work through it.

  Args:
    x: float [B, H, W, C_in].
    kernel: float [KH, KW, C_in, C_out].
    padding: ((low_h, high_h), (low_w, high_w)) explicit padding of x.
    precision: passed to the convolutions.

  Returns:
    float [B, H + low_h + high_h - KH + 1, W + low_w + high_w - KW + 1, C_out].
  """
  return _conv(x, kernel, (1, 1), padding, precision)


def _im2col_vjp_fwd(x, kernel, padding, precision):
  return conv_im2col_vjp(x, kernel, padding, precision), (x, kernel)


def _im2col_vjp_bwd(padding, precision, residuals, g):
  x, kernel = residuals
  _, x_vjp = jax.vjp(lambda x: _conv(x, kernel, (1, 1), padding, precision), x)
  (dx,) = x_vjp(g)
  dkernel = _im2col_kernel_gradient(x, g, kernel.shape, padding).astype(kernel.dtype)
  return dx, dkernel


conv_im2col_vjp.defvjp(_im2col_vjp_fwd, _im2col_vjp_bwd)


class Conv(nnx.Conv):
  """`flax.nnx.Conv` (same constructor, parameters and results) whose strided 2D
  convolutions are `strided_conv`: the same forward pass and first-order gradients (the same
  XLA operations, bit for bit), and a fast derivative of the input gradient, which gradient
  penalties need (on a 2-core CPU the DCGAN-28 step with the WGAN-GP penalty ran 3.2x
  faster, with R1 or R2 about 2.8x).

  It applies to 2D NHWC convolutions with one batch axis, a stride above 1, 'SAME' or
  'VALID' padding, and no input or kernel dilation, feature groups, mask or
  `preferred_element_type`; otherwise, and with stride 1, it is Flax's layer unchanged. With
  `impl='auto'` (the default) it applies on the CPU backend only, where it was measured;
  GPU and TPU keep XLA's own derivatives.

  Input [B, H, W, C_in] float; output [B, ceil(H / s_h), ceil(W / s_w), C_out] for 'SAME'.
  """

  # 'auto' (default): `strided_conv` on the CPU backend; 'custom' and 'lax' force one (for
  # comparisons). Set on the class before the step is traced.
  impl: str = 'auto'
  # As `ConvTranspose.batch_chunk`.
  batch_chunk: int | None = None
  # The kernel gradient of stride-1 convolutions: 'xla' (default: XLA's own) or 'im2col'
  # (`conv_im2col_vjp`: matrix products of the shifted input, the same gradient to float32
  # rounding), used where it was faster on 2 CPU cores: inputs of at least
  # `IM2COL_MIN_POSITIONS` pixels and at least `IM2COL_MIN_FEATURES` output channels
  # (SNGAN-32 at batch 64: its 32x32 layers; slower on its 16x16 and 8x8 layers and its
  # 3-channel output layer). Set per layer by `set_layer_options`.
  kernel_grad: str = 'xla'

  def _plain_2d(self, inputs: jax.Array) -> bool:
    return (
      len(self.kernel_size) == 2
      and inputs.ndim == 4
      and self.padding in ('SAME', 'VALID')
      and _pair(self.input_dilation) == (1, 1)
      and _pair(self.kernel_dilation) == (1, 1)
      and self.feature_group_count == 1
      and self.mask is None
      and self.preferred_element_type is None
    )

  def _im2col_applies(self, inputs: jax.Array) -> bool:
    if self.kernel_grad not in KERNEL_GRADS:
      raise ValueError(f'Conv.kernel_grad={self.kernel_grad!r}: use one of {KERNEL_GRADS}.')
    return (
      self.kernel_grad == 'im2col'
      and _pair(self.strides) == (1, 1)
      and self._plain_2d(inputs)
      and inputs.shape[1] * inputs.shape[2] >= IM2COL_MIN_POSITIONS
      and self.out_features >= IM2COL_MIN_FEATURES
    )

  def _strided_applies(self, inputs: jax.Array) -> bool:
    if self.impl not in ('auto', 'custom', 'lax'):
      raise ValueError(f"Conv.impl={self.impl!r}: use 'auto', 'custom' or 'lax'.")
    if self.impl == 'lax' or (self.impl == 'auto' and jax.default_backend() != 'cpu'):
      return False
    return max(_pair(self.strides)) > 1 and self._plain_2d(inputs)

  def __call__(self, inputs: jax.Array, out_sharding=None) -> jax.Array:
    if out_sharding is not None:
      return super().__call__(inputs, out_sharding=out_sharding)
    return in_batch_chunks(self._call_whole, inputs, self.batch_chunk)

  def _call_whole(self, inputs: jax.Array) -> jax.Array:
    im2col = self._im2col_applies(inputs)
    if not im2col and not self._strided_applies(inputs):
      return super().__call__(inputs)
    bias = self.bias[...] if self.bias is not None else None
    inputs, kernel, bias = self.promote_dtype((inputs, self.kernel[...], bias), dtype=self.dtype)
    strides = _pair(self.strides)
    padding = tuple(lax.padtype_to_pads(inputs.shape[1:3], kernel.shape[:2], strides, self.padding))
    if im2col:
      y = conv_im2col_vjp(inputs, kernel, padding, self.precision)
    else:
      y = strided_conv(inputs, kernel, strides, padding, self.precision)
    if bias is not None:
      y = y + bias.reshape(1, 1, 1, -1)
    return y


# PyTorch's BatchNorm momentum 0.1 is Flax's 0.9: running = 0.9 * running + 0.1 * batch.
_BN_MOMENTUM = 0.9

# A layer's computation dtype: None computes in the dtype of the inputs and parameters
# (float32 here); jnp.bfloat16 gives mixed precision (float32 parameters, bfloat16 layers).
Dtype = Any


KERNEL_GRADS = ('xla', 'im2col')
# Where `Conv.kernel_grad='im2col'` applies (benchmarks/results/conv_ops_sngan32_im2col.json).
IM2COL_MIN_POSITIONS = 32 * 32
IM2COL_MIN_FEATURES = 16


def set_layer_options(
  module: nnx.Module,
  *,
  tconv_backward: str = 'autodiff',
  batch_chunk: int = 0,
  kernel_grad: str = 'xla',
) -> int:
  """Sets, on every `Conv` and `ConvTranspose` of `module` (one model, e.g. a generator), how
  it computes: the options that `ConvTranspose.backward` and `batch_chunk` otherwise take
  from their classes. Only speed changes: results are the same to float32 rounding.

  Args:
    module: a model built of this module's layers; changed in place (static attributes, so
      they are part of its `nnx.graphdef` and a step traced afterwards uses them).
    tconv_backward: 'autodiff' or 'adjoint' (`conv_transpose_adjoint_vjp`), for the
      `ConvTranspose` layers.
    batch_chunk: images per chunk (`in_batch_chunks`); 0 = the whole batch at once.
    kernel_grad: 'xla' or 'im2col' (`conv_im2col_vjp`), for the stride-1 `Conv` layers.

  Returns:
    How many layers it set.

  Raises:
    ValueError: for a `tconv_backward` other than 'autodiff' / 'adjoint', a `kernel_grad`
      other than 'xla' / 'im2col', or a negative `batch_chunk`.
  """
  if tconv_backward not in ('autodiff', 'adjoint'):
    raise ValueError(f"tconv_backward={tconv_backward!r}: use 'autodiff' or 'adjoint'.")
  if kernel_grad not in KERNEL_GRADS:
    raise ValueError(f'kernel_grad={kernel_grad!r}: use one of {KERNEL_GRADS}.')
  if batch_chunk < 0:
    raise ValueError(f'batch_chunk={batch_chunk}: use 0 (the whole batch) or a positive integer.')
  count = 0
  for _, layer in nnx.iter_modules(module):
    if isinstance(layer, ConvTranspose):
      layer.backward = tconv_backward
    if isinstance(layer, Conv):
      layer.kernel_grad = kernel_grad
    if isinstance(layer, (Conv, ConvTranspose)):
      layer.batch_chunk = batch_chunk or None
      count += 1
  return count


def _l2_normalize(x: jax.Array, eps: float) -> jax.Array:
  return x * jax.lax.rsqrt(jnp.sum(x * x) + eps)


class SpectralNorm(nnx.Module):
  """Spectral normalization of a layer's kernel (Miyato et al. 2018, eq. 8 and Algorithm 1).

  The wrapped layer computes with `W / sigma`, where `sigma = v^T W u` and `u`, `v` come from
  `n_steps` power-iteration steps started at the stored `u`
  (`v <- W u / |W u|`, `u <- W^T v / |W^T v|`, with W the kernel reshaped to
  `[prod(kernel.shape[:-1]), out]`, i.e. Flax's `[fan_in, out]` layout, the transpose of the
  paper's W). `u` and `v` are constants for differentiation; `sigma` is differentiated
  through W, as in the paper's eq. 12. The bias is not normalised.

  With `update_stats=True` (training) the new `u` and `sigma` are stored, so that one power
  iteration per call refines the estimate over training; with `update_stats=False` they are
  used but not changed (evaluation is deterministic and leaves the state alone). The layer's
  `kernel` Param is never modified: the normalised kernel is swapped in for the call only.
  (Unlike `flax.nnx.SpectralNorm`, which overwrites the Param with `W / sigma`, so that a
  stateful model would normalise an already-normalised kernel on its next call.)

  Args:
    layer: an NNX module with a `kernel` Param of rank >= 2 whose last axis is the output
      axis: `nnx.Linear`, `nnx.Conv` or `nnx.ConvTranspose`.
    n_steps: power-iteration steps per call (1 in the paper), >= 1.
    epsilon: added to squared norms before normalising the power-iteration vectors.
    rngs: `nnx.Rngs` with a `params` stream for the random initial `u`.

  Attributes:
    layer: the wrapped layer (its Params keep their usual names, under `layer`).
    u: `nnx.BatchStat`, float32 `[out]`, unit norm: the current left singular vector
      estimate (right singular vector of the `[fan_in, out]` kernel).
    sigma: `nnx.BatchStat`, float32 scalar: the last stored estimate of the spectral norm of
      the (reshaped) kernel; 1 until the first training call.

  Call: `layer(x, update_stats=bool)`, with the wrapped layer's input and output. With a
  low-precision layer (`dtype=jnp.bfloat16`) the power iteration and `W / sigma` stay
  float32; the layer casts the normalised kernel to its dtype as it does its own kernel.

  Raises:
    ValueError: if the layer has no kernel of rank >= 2 or n_steps < 1.
  """

  def __init__(
    self, layer: nnx.Module, *, n_steps: int = 1, epsilon: float = 1e-12, rngs: nnx.Rngs
  ):
    kernel = getattr(layer, 'kernel', None)
    if not isinstance(kernel, nnx.Param) or kernel[...].ndim < 2:
      raise ValueError(
        f'SpectralNorm needs a layer with a kernel Param of rank >= 2 (nnx.Linear, nnx.Conv, '
        f'nnx.ConvTranspose), got {type(layer).__name__}.'
      )
    if n_steps < 1:
      raise ValueError(f'SpectralNorm n_steps={n_steps} must be >= 1.')
    self.layer = layer
    self.n_steps = n_steps
    self.epsilon = epsilon
    out = kernel[...].shape[-1]
    u = jax.random.normal(rngs.params(), (out,), jnp.float32)
    self.u = nnx.BatchStat(_l2_normalize(u, epsilon))
    self.sigma = nnx.BatchStat(jnp.ones((), jnp.float32))

  def power_iteration(self) -> tuple[jax.Array, jax.Array]:
    """`n_steps` power-iteration steps from the stored `u`; changes nothing.

    Returns:
      (sigma float32 scalar, the estimated largest singular value of the reshaped kernel;
      new u float32 `[out]`, unit norm, gradient-stopped).
    """
    w = self.layer.kernel[...]
    w = w.reshape((-1, w.shape[-1])).astype(jnp.float32)
    # Full float32 precision (not TF32 on GPUs): these are cheap matrix-vector products.
    dot = functools.partial(jnp.dot, precision=jax.lax.Precision.HIGHEST)
    u = self.u[...]
    for _ in range(self.n_steps):
      v = _l2_normalize(dot(w, u), self.epsilon)
      u = _l2_normalize(dot(w.T, v), self.epsilon)
    u, v = jax.lax.stop_gradient(u), jax.lax.stop_gradient(v)
    return dot(v, dot(w, u)), u

  def __call__(self, x: jax.Array, *, update_stats: bool) -> jax.Array:
    sigma, u = self.power_iteration()
    # set_value, not `v[...] = x`: Flax's __setitem__ probes `x.sharding`, which on a tracer
    # in JAX 0.10 walks the whole trace so far to word its error (quadratic tracing).
    if update_stats:
      self.u.set_value(u)
      self.sigma.set_value(jax.lax.stop_gradient(sigma))
    kernel = self.layer.kernel
    w = kernel[...]
    kernel.set_value((w / jnp.where(sigma != 0, sigma, 1)).astype(w.dtype))
    try:
      return self.layer(x)
    finally:
      kernel.set_value(w)


def _no_promotion(arrays: tuple, *, dtype: Dtype = None, inexact: bool = True) -> tuple:
  """BatchNorm's `promote_dtype` for mixed precision: casts nothing.

  `nnx.BatchNorm`'s default casts its input, running mean and variance, scale and bias to
  the layer's dtype before normalising, which would round the float32 running statistics to
  bfloat16 in evaluation mode. Without it BatchNorm behaves as Flax Linen's does: the batch
  statistics are computed in float32 (always), the normalisation runs in float32 with the
  float32 statistics, scale and bias, and only the result is cast to the layer's dtype.
  """
  del dtype, inexact
  return arrays


def batch_norm(
  features: int, rngs: nnx.Rngs, dtype: Dtype = None, *, affine: bool = True
) -> nnx.BatchNorm:
  """`nnx.BatchNorm` over the last axis with PyTorch's defaults (momentum 0.1, eps 1e-5).

  Args:
    features: size of the last axis.
    rngs: `nnx.Rngs` for initialisation.
    dtype: output dtype. None (float32 models) is Flax's default. A low precision such as
      jnp.bfloat16 returns that dtype, while the scale and bias (float32 Params), the running
      mean and variance (float32 `nnx.BatchStat`) and the normalisation itself stay float32
      (`_no_promotion`).
    affine: learn a scale and a bias (default); False leaves them out (conditional
      BatchNorm supplies per-class ones, `gan_jax.models.conditional`).
  """
  flags = {} if affine else dict(use_scale=False, use_bias=False)
  if dtype is None:
    return nnx.BatchNorm(features, momentum=_BN_MOMENTUM, epsilon=1e-5, rngs=rngs, **flags)
  return nnx.BatchNorm(
    features,
    momentum=_BN_MOMENTUM,
    epsilon=1e-5,
    dtype=dtype,
    promote_dtype=_no_promotion,
    rngs=rngs,
    **flags,
  )


def instance_norm(x: jax.Array, epsilon: float = 1e-5) -> jax.Array:
  """Instance normalisation without learned scale or bias (Ulyanov et al. 2016, "Instance
  Normalization: The Missing Ingredient for Fast Stylization", eq. 2): each image's each
  channel is shifted to mean 0 and scaled to variance 1 over its H x W positions,

      y = (x - mean_hw(x)) / sqrt(var_hw(x) + epsilon),

  with the biased variance and epsilon 1e-5 of PyTorch's `InstanceNorm2d(affine=False)`,
  the norm layer of CycleGAN's reference code. It keeps no running statistics: training and
  evaluation compute the same thing, and a batch's images do not affect each other.

  Args:
    x: float `[B, H, W, C]`.
    epsilon: added to the variance, > 0.

  Returns:
    `[B, H, W, C]` of x's dtype; the statistics are computed in float32.
  """
  x32 = x.astype(jnp.float32)
  mean = jnp.mean(x32, axis=(1, 2), keepdims=True)
  var = jnp.mean(jnp.square(x32 - mean), axis=(1, 2), keepdims=True)
  return ((x32 - mean) * jax.lax.rsqrt(var + epsilon)).astype(x.dtype)
