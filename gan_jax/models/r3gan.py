"""The R3GAN architecture (Huang et al. 2024, "The GAN is dead; long live the GAN! A modern
GAN baseline", NeurIPS, section 4), written from the authors' `brownvc/R3GAN` code
(`R3GAN/Networks.py`, `R3GAN/Resamplers.py`).

A ResNet for G and D with no normalisation layers:

* `ResidualBlock`: `x + conv1x1(lrelu(gconv3x3(lrelu(conv1x1(x)))))`, an inverted bottleneck
  (the 1x1 expands `channels` to `expansion * channels`, the grouped 3x3 works on groups of
  `group_size` channels, the last 1x1 projects back; ConvNeXt-style, section 4.2). Leaky ReLU
  0.2; biases only before the activations.
* Fix-up-style initialisation (section 4.2; Zhang et al. 2019, "Fixup"): every weight is
  N(0, gain^2 / fan_in) ("MSR" init); the last 1x1 of each residual branch starts at zero, so
  every block is the identity at initialisation, and the two other layers of a branch get the
  gain `sqrt(2 / (1 + 0.2^2)) * L^(-1/4)` (L = the number of residual blocks of the network,
  m = 3 layers per branch: the variance-scaling rule `L^(-1 / (2m - 2))` of their code).
* Resampling by the [1, 2, 1] low-pass filter of their code (bilinear interpolation:
  `upsample2x`, `downsample2x`); a 1x1 convolution changes the width between stages (before
  upsampling in G, after downsampling in D, so it runs at the lower resolution).
* G starts from a learned `base x base` basis (`base` = 4, or 7 for 7 * 2^n pixels) modulated
  channel-wise by a linear map of z; D ends with a depthwise `base x base` "basis"
  convolution (a learned weighted sum over positions, per channel) to features phi(x) `[B,
  F]` and a linear logit.
* Class conditioning (`gan_jax.models.conditional`): G concatenates the label vector
  (one-hot, or a learned embedding of `model.label_embed_dim`) to z ('concat', as their
  `ConditionEmbeddingDimension`; G has no normalisation, so 'cbn' is refused); D adds the
  projection `<V[y], phi(x)>` (Miyato & Koyama 2018; their D's logit is the projection alone),
  or takes 'concat' label maps or an AC-GAN head, like the other discriminators.

Differences from the reference, all small: G ends in tanh, so that images are in [-1, 1] as
every gan_jax model's (theirs is linear); D's logit is `psi(phi) + <V[y], phi>` (theirs drops
psi for conditional D); the resampling pads with zeros as their `upfirdn2d` does.

Sizes (`stage_layout`): images of `base * 2^(n-1)` pixels, base 4 or 7, n >= 2 stages: 28 px
is 7 -> 14 -> 28 (3 stages), 32 px is 4 -> 8 -> 16 -> 32 (4 stages), 64 px 5 stages. G's
stage i works at `base * 2^i` pixels with `widths[i]` channels; D's stages are given from
the image resolution down (pass G's widths reversed for the paper's mirror image).

Images are float32 `[B, H, W, C]` in [-1, 1]; D returns logits float32 `[B]`. With
`dtype=jnp.bfloat16` (mixed precision) the layers compute in bfloat16 and the models return
bfloat16; parameters stay float32. No batch statistics: `nnx.split(model, nnx.Param, ...)`
leaves an empty state, as for the MLP.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from gan_jax.errors import ConfigError
from gan_jax.models import conditional as cond
from gan_jax.models import registry

Dtype = Any

LRELU_SLOPE = 0.2
# The gain that keeps the variance of a unit-variance input through leaky ReLU 0.2 (He et al.
# 2015): sqrt(2 / (1 + a^2)); their `BiasedActivation.Gain`.
LRELU_GAIN = math.sqrt(2 / (1 + LRELU_SLOPE**2))
LAYERS_PER_BRANCH = 3  # 1x1, grouped 3x3, 1x1
BASES = (4, 7)  # the basis sizes: 4 (powers of two, as the paper) and 7 (28 px MNIST)


def msr_init(gain: float = 1.0) -> Callable:
  """N(0, gain^2 / fan_in), fan_in = input channels per group x kernel area (the "MSR"
  initialisation of their code, He et al. 2015); gain 0 gives zeros."""
  if gain == 0:
    return nnx.initializers.zeros
  return nnx.initializers.variance_scaling(gain**2, 'fan_in', 'normal')


def branch_gain(num_blocks: int) -> float:
  """The gain of the first two layers of every residual branch of a network with
  `num_blocks` blocks: `LRELU_GAIN * num_blocks^(-1 / (2m - 2))`, m = 3 (Huang et al. 2024,
  section 4.2, their `VarianceScalingParameter`)."""
  return LRELU_GAIN * num_blocks ** (-1 / (2 * LAYERS_PER_BRANCH - 2))


def stage_layout(size: int) -> tuple[int, int]:
  """(base, number of stages) of an image size: `size = base * 2^(stages - 1)`.

  Args:
    size: the image's height = width in pixels.

  Returns:
    (4 or 7, n >= 2): 28 -> (7, 3), 32 -> (4, 4), 64 -> (4, 5).

  Raises:
    ValueError: a size that is not 4 * 2^k or 7 * 2^k with k >= 1 (8, 14, 16, 28, 32, ...).
  """
  for base in BASES:
    n, rest = 1, size
    while rest > base and rest % 2 == 0:
      rest, n = rest // 2, n + 1
    if rest == base and n >= 2:
      return base, n
  raise ValueError(
    f'r3gan makes images of 4 * 2^k or 7 * 2^k pixels (k >= 1: 8, 14, 16, 28, 32, 64, ...), '
    f'not {size}; set data.image_size to one of them.'
  )


def image_size_ok(size: Any) -> bool:
  """Whether `stage_layout` accepts `size` (the registry entry's `image_size`)."""
  try:
    stage_layout(size)
  except (ValueError, TypeError):
    return False
  return True


def _resample_axis(x: jax.Array, axis: int, up: bool) -> jax.Array:
  n = x.shape[axis]
  pad = [(0, 0)] * x.ndim
  pad[axis] = (1, 1)
  xp = jnp.pad(x, pad)  # zeros at the borders, as upfirdn2d

  def take(start: int, stride: int = 1) -> jax.Array:  # xp[start::stride], n // stride of them
    return lax.slice_in_dim(xp, start, start + stride * (n // stride - 1) + 1, stride, axis)

  if up:  # out[2j] = x[j-1]/4 + 3x[j]/4, out[2j+1] = 3x[j]/4 + x[j+1]/4
    even, odd = 0.25 * take(0) + 0.75 * x, 0.75 * x + 0.25 * take(2)
    out = jnp.stack([even, odd], axis=axis + 1)
    return out.reshape(x.shape[:axis] + (2 * n,) + x.shape[axis + 1 :])
  # out[j] = (x[2j-1] + 3x[2j] + 3x[2j+1] + x[2j+2]) / 8
  return (take(0, 2) + 3 * take(1, 2) + 3 * take(2, 2) + take(3, 2)) * 0.125


def upsample2x(x: jax.Array) -> jax.Array:
  """Bilinear x2 upsampling: the [1, 3, 3, 1] / 4 polyphase filter of their
  `InterpolativeUpsampler` ([1, 2, 1] convolved with [1, 1]), zero-padded at the borders.

  Along each spatial axis `out[2j] = x[j-1] / 4 + 3 x[j] / 4`, `out[2j+1] = 3 x[j] / 4 +
  x[j+1] / 4` (x[-1] = x[n] = 0).

  Args:
    x: `[B, H, W, C]`, any float dtype.

  Returns:
    `[B, 2H, 2W, C]`, same dtype.
  """
  return _resample_axis(_resample_axis(x, 1, True), 2, True)


def downsample2x(x: jax.Array) -> jax.Array:
  """Low-pass x2 downsampling: the [1, 3, 3, 1] / 8 filter, stride 2 (their
  `InterpolativeDownsampler`), zero-padded at the borders.

  Along each spatial axis `out[j] = (x[2j-1] + 3 x[2j] + 3 x[2j+1] + x[2j+2]) / 8`.

  Args:
    x: `[B, H, W, C]` with H, W even, any float dtype.

  Returns:
    `[B, H/2, W/2, C]`, same dtype.
  """
  return _resample_axis(_resample_axis(x, 1, False), 2, False)


def _lrelu(x: jax.Array) -> jax.Array:
  return jax.nn.leaky_relu(x, LRELU_SLOPE)


def _conv1x1(cin: int, cout: int, gain: float, dtype: Dtype, rngs: nnx.Rngs) -> nnx.Conv:
  return nnx.Conv(
    cin, cout, (1, 1), use_bias=False, kernel_init=msr_init(gain), dtype=dtype, rngs=rngs
  )


# How `GroupedConv3x3` computes: 'native' (one grouped convolution, `feature_group_count`),
# 'dense' (an ordinary convolution with the block-diagonal kernel: groups x the multiply-adds)
# or 'auto' (dense on CPU, native elsewhere). XLA's CPU backend has no fast grouped
# convolution: on this 2-core CPU the R1-style double backward of a 3x3, 64-channel, 4-group
# convolution at 28x28, batch 64, took 8.5 s native against 0.34 s dense (fwd + bwd: 3.8 s
# against 0.16 s). Both give the same outputs to float rounding; GPUs have grouped kernels.
GROUPED_IMPLS = ('auto', 'native', 'dense')


def block_diagonal(kernel: jax.Array, groups: int) -> jax.Array:
  """The dense kernel of a grouped convolution.

  Args:
    kernel: `[KH, KW, C_in / G, C_out]` (Flax's grouped layout: output channels
      `g * C_out / G ...` read input channels `g * C_in / G ...`).
    groups: G, dividing C_out.

  Returns:
    `[KH, KW, C_in, C_out]`, zero outside the G diagonal blocks, same dtype.
  """
  kh, kw, cg, cout = kernel.shape
  blocks = kernel.reshape(kh, kw, cg, groups, cout // groups)
  full = jnp.einsum('hwcgo,fg->hwfcgo', blocks, jnp.eye(groups, dtype=kernel.dtype))
  return full.reshape(kh, kw, groups * cg, cout)


class GroupedConv3x3(nnx.Module):
  """3x3 convolution, stride 1, SAME zero padding, in `groups` groups, with a bias.

  Args:
    channels: C, input and output width (a multiple of groups).
    groups: G; G = 1 is an ordinary convolution, G = C a depthwise one.
    kernel_init: initializer of the `[3, 3, C / G, C]` kernel (fan_in = 9 C / G).
    impl: one of `GROUPED_IMPLS` (default 'auto'); it changes the speed, not the result.
    dtype: computation dtype (None: float32; jnp.bfloat16).
    rngs: `nnx.Rngs`.

  Attributes:
    kernel: Param `[3, 3, C / G, C]` (as `nnx.Conv(..., feature_group_count=G)`'s).
    bias: Param `[C]`, zeros at init.

  Call: `conv(x)`, x `[B, H, W, C]` -> `[B, H, W, C]`.

  Raises:
    ValueError: C not a multiple of G, or an unknown impl.
  """

  def __init__(
    self,
    channels: int,
    groups: int,
    *,
    kernel_init: Callable,
    impl: str = 'auto',
    dtype: Dtype = None,
    rngs: nnx.Rngs,
  ):
    if channels % groups:
      raise ValueError(f'GroupedConv3x3: {channels} channels cannot form {groups} groups.')
    if impl not in GROUPED_IMPLS:
      raise ValueError(f'GroupedConv3x3: impl={impl!r}; choose one of {GROUPED_IMPLS}.')
    shape = (3, 3, channels // groups, channels)
    self.kernel = nnx.Param(kernel_init(rngs.params(), shape, jnp.float32))
    self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))
    self.groups, self.impl, self.dtype = groups, impl, dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    kernel, bias = self.kernel[...], self.bias[...]
    if self.dtype is not None:
      x, kernel, bias = x.astype(self.dtype), kernel.astype(self.dtype), bias.astype(self.dtype)
    groups = self.groups
    dense = self.impl == 'dense' or (self.impl == 'auto' and jax.default_backend() == 'cpu')
    if groups > 1 and dense:
      kernel, groups = block_diagonal(kernel, groups), 1
    out = lax.conv_general_dilated(
      x,
      kernel,
      (1, 1),
      'SAME',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      feature_group_count=groups,
    )
    return out + bias


class ResidualBlock(nnx.Module):
  """`x + conv1x1(lrelu(gconv3x3(lrelu(conv1x1(x) + b1)) + b2))` (Huang et al. 2024, fig. 4).

  Args:
    channels: C, the width of the input and output.
    expansion: E, the inverted bottleneck's width is E * C.
    group_size: channels per group of the 3x3 convolution; E * C must be a multiple
      (E * C / group_size groups; group_size >= E * C is an ordinary convolution).
    num_blocks: L, the number of residual blocks of the whole network (sets `branch_gain`).
    dtype: computation dtype (None: float32; jnp.bfloat16).
    rngs: `nnx.Rngs` for initialisation.

  The last 1x1 starts at zero, so at initialisation the block is the identity.
  Call: `block(x)`, x `[B, H, W, C]` -> `[B, H, W, C]`.

  Raises:
    ValueError: E * C not a multiple of group_size.
  """

  def __init__(
    self,
    channels: int,
    *,
    expansion: int,
    group_size: int,
    num_blocks: int,
    dtype: Dtype = None,
    rngs: nnx.Rngs,
  ):
    hidden = channels * expansion
    group_size = min(group_size, hidden)  # a group wider than the layer: one group
    if hidden % group_size:
      raise ValueError(
        f'r3gan: the expanded width {expansion} x {channels} = {hidden} is not a multiple of '
        f'model.group_size={group_size}; choose a group size that divides it.'
      )
    gain, zeros = branch_gain(num_blocks), nnx.initializers.zeros
    self.expand = nnx.Conv(
      channels,
      hidden,
      (1, 1),
      kernel_init=msr_init(gain),
      bias_init=zeros,
      dtype=dtype,
      rngs=rngs,
    )
    self.spatial = GroupedConv3x3(
      hidden, hidden // group_size, kernel_init=msr_init(gain), dtype=dtype, rngs=rngs
    )
    self.project = _conv1x1(hidden, channels, 0.0, dtype, rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    h = _lrelu(self.expand(x))
    h = _lrelu(self.spatial(h))
    return x + self.project(h)


def _check_stages(
  who: str,
  widths: Sequence[int],
  blocks: Sequence[int],
  stages: int,
  expansion: int,
  group_size: int,
) -> None:
  for name, values in (('widths', widths), ('blocks', blocks)):
    if len(values) != stages:
      raise ValueError(
        f'r3gan {who}: {len(values)} stage {name} {tuple(values)} for {stages} stages; give '
        f'one per stage.'
      )
  for name, values, low in (('widths', widths, 1), ('blocks', blocks, 0)):
    if any(not isinstance(v, numbers.Integral) or v < low for v in values):
      raise ValueError(f'r3gan {who}: stage {name} {tuple(values)} must be integers >= {low}.')
  for name, v in (('expansion', expansion), ('group_size', group_size)):
    if not isinstance(v, numbers.Integral) or v < 1:
      raise ValueError(f'r3gan {who}: model.{name}={v!r} must be a positive integer.')


def _stage_blocks(
  width: int,
  count: int,
  expansion: int,
  group_size: int,
  total: int,
  dtype: Dtype,
  rngs: nnx.Rngs,
) -> nnx.List:
  return nnx.List(
    [
      ResidualBlock(
        width,
        expansion=expansion,
        group_size=group_size,
        num_blocks=total,
        dtype=dtype,
        rngs=rngs,
      )
      for _ in range(count)
    ]
  )


class R3GANGenerator(nnx.Module):
  """The R3GAN generator (Huang et al. 2024, section 4, fig. 4).

  z (with the label vector for a conditional G) -> linear (no bias) -> channel gains of a
  learned `[base, base, widths[0]]` basis -> `blocks[0]` residual blocks -> for each further
  stage i: 1x1 to `widths[i]` (if it changes), bilinear x2, `blocks[i]` residual blocks ->
  1x1 to C channels -> tanh.

  Args:
    image_shape: (H, W, C), H = W = base * 2^(n-1) (see `stage_layout`).
    latent_dim: size of z.
    widths: channels of each of the n stages, lowest resolution first.
    blocks: residual blocks of each stage (>= 0; the paper uses 2).
    expansion: inverted-bottleneck expansion (the paper: 2).
    group_size: channels per group of the 3x3 convolutions (the paper: 16).
    num_classes: K > 0 makes G class-conditional; 0 (default) unconditional.
    conditioning: with K > 0, 'concat' (the only one: G has no normalisation layers).
    embed_dim: 0 (default) one-hot labels, > 0 a learned embedding of that size.
    dtype: computation dtype: None (float32) or jnp.bfloat16.
    rngs: `nnx.Rngs` for initialisation.

  Call: `G(z, y=None, train=True)`, z float32 `[B, latent_dim]`, y int32 `[B]` in [0, K)
  (required when K > 0) -> `[B, H, W, C]` in [-1, 1]. `train` is accepted for the common
  interface (nothing depends on it).

  Raises:
    ValueError: an image size `stage_layout` refuses, one width / block count per stage
      missing, an expanded width that is not a multiple of group_size, a conditioning other
      than 'concat', or (at call time) a conditional G called without labels.
  """

  def __init__(
    self,
    image_shape: tuple[int, int, int],
    latent_dim: int = 64,
    widths: Sequence[int] = (64, 64, 64),
    blocks: Sequence[int] = (1, 1, 1),
    *,
    expansion: int = 2,
    group_size: int = 16,
    num_classes: int = 0,
    conditioning: str = 'concat',
    embed_dim: int = 0,
    dtype: Dtype = None,
    rngs: nnx.Rngs,
  ):
    base, stages = stage_layout(image_shape[0])
    if image_shape[1] != image_shape[0]:
      raise ValueError(f'r3gan makes square images, not {tuple(image_shape[:2])}.')
    _check_stages('generator', widths, blocks, stages, expansion, group_size)
    if num_classes and conditioning != 'concat':
      raise ValueError(
        f'model.g_conditioning={conditioning!r}: the r3gan generator has no normalisation '
        "layers; use model.g_conditioning='concat'."
      )
    extra = cond.init_generator_conditioning(
      self, num_classes, conditioning, embed_dim, dtype=dtype, rngs=rngs
    )
    self.dtype = dtype
    self.basis = nnx.Param(jax.random.normal(rngs.params(), (base, base, widths[0])))
    self.modulation = nnx.Linear(
      latent_dim + extra,
      widths[0],
      use_bias=False,
      kernel_init=msr_init(),
      dtype=dtype,
      rngs=rngs,
    )
    total = max(sum(blocks), 1)
    self.transitions = nnx.List(
      [
        _conv1x1(a, b, 1.0, dtype, rngs) if a != b else None
        for a, b in zip(widths[:-1], widths[1:])
      ]
    )
    self.stages = nnx.List(
      [
        _stage_blocks(w, n, expansion, group_size, total, dtype, rngs)
        for w, n in zip(widths, blocks)
      ]
    )
    self.aggregate = _conv1x1(widths[-1], image_shape[2], 1.0, dtype, rngs)

  def __call__(self, z: jax.Array, y: jax.Array | None = None, *, train: bool = True) -> jax.Array:
    del train
    h, _ = cond.generator_input(self, z, y)
    basis = self.basis[...] if self.dtype is None else self.basis[...].astype(self.dtype)
    x = basis[None] * self.modulation(h)[:, None, None, :]
    for i, stage in enumerate(self.stages):
      if i:
        transition = self.transitions[i - 1]
        x = upsample2x(x if transition is None else transition(x))
      for block in stage:
        x = block(x)
    return jnp.tanh(self.aggregate(x))


class R3GANDiscriminator(cond.Discriminator):
  """The R3GAN discriminator (Huang et al. 2024, section 4, fig. 4).

  Image (with label maps for 'concat') -> 1x1 to `widths[0]` -> for each stage i:
  `blocks[i]` residual blocks, then (but for the last stage) low-pass x2 downsampling and a
  1x1 to `widths[i+1]` (if it changes) -> depthwise `base x base` basis convolution ->
  phi(x) `[B, widths[-1]]` -> linear logit (+ projection / AC-GAN head when conditional).

  Args:
    image_shape: (H, W, C), H = W = base * 2^(n-1) (see `stage_layout`).
    widths: channels of each of the n stages, highest resolution first.
    blocks: residual blocks of each stage, highest resolution first.
    expansion, group_size: as `R3GANGenerator`.
    num_classes: K > 0 makes D class-conditional; 0 (default) unconditional.
    conditioning: with K > 0, 'projection' (default; logit + `<V[y], phi(x)>`), 'concat'
      or 'acgan' (see `gan_jax.models.conditional`).
    embed_dim: 'concat' only: 0 one-hot label maps, > 0 a learned embedding.
    dtype: computation dtype: None (float32) or jnp.bfloat16.
    rngs: `nnx.Rngs` for initialisation.

  Call: `D(x, y=None, train=True, with_class_logits=False)` as `cond.Discriminator`: x
  float32 `[B, H, W, C]` in [-1, 1] -> logits `[B]`.

  Raises:
    ValueError: as `R3GANGenerator` (conditioning: as `cond.check_conditioning`).
  """

  def __init__(
    self,
    image_shape: tuple[int, int, int],
    widths: Sequence[int] = (64, 64, 64),
    blocks: Sequence[int] = (1, 1, 1),
    *,
    expansion: int = 2,
    group_size: int = 16,
    num_classes: int = 0,
    conditioning: str = 'projection',
    embed_dim: int = 0,
    dtype: Dtype = None,
    rngs: nnx.Rngs,
  ):
    base, stages = stage_layout(image_shape[0])
    if image_shape[1] != image_shape[0]:
      raise ValueError(f'r3gan judges square images, not {tuple(image_shape[:2])}.')
    _check_stages('discriminator', widths, blocks, stages, expansion, group_size)
    extra = cond.init_discriminator_conditioning(
      self, num_classes, conditioning, embed_dim, dtype=dtype, rngs=rngs
    )
    self.dtype = dtype
    self.extract = _conv1x1(image_shape[2] + extra, widths[0], 1.0, dtype, rngs)
    total = max(sum(blocks), 1)
    self.stages = nnx.List(
      [
        _stage_blocks(w, n, expansion, group_size, total, dtype, rngs)
        for w, n in zip(widths, blocks)
      ]
    )
    self.transitions = nnx.List(
      [
        _conv1x1(a, b, 1.0, dtype, rngs) if a != b else None
        for a, b in zip(widths[:-1], widths[1:])
      ]
    )
    f = widths[-1]
    # Depthwise base x base convolution, fan_in = base^2 (their DiscriminativeBasis).
    self.basis = nnx.Param(jax.random.normal(rngs.params(), (base, base, f)) / base)
    self.fc = nnx.Linear(f, 1, use_bias=False, kernel_init=msr_init(), dtype=dtype, rngs=rngs)
    cond.init_discriminator_heads(
      self,
      f,
      kernel_init=nnx.initializers.normal(1 / math.sqrt(f)),
      wrap=lambda m: m,
      dtype=dtype,
      rngs=rngs,
    )

  def features(self, x: jax.Array, y: jax.Array | None = None, *, train: bool = True) -> jax.Array:
    """phi(x) `[B, widths[-1]]`: the basis convolution of the last stage's features."""
    del train
    x, _ = cond.discriminator_input(self, x, y)
    h = self.extract(x if self.dtype is None else x.astype(self.dtype))
    for i, stage in enumerate(self.stages):
      for block in stage:
        h = block(h)
      if i < len(self.transitions):
        h = downsample2x(h)
        transition = self.transitions[i]
        h = h if transition is None else transition(h)
    basis = self.basis[...] if self.dtype is None else self.basis[...].astype(self.dtype)
    return jnp.einsum('bhwc,hwc->bc', h, basis)


@dataclasses.dataclass(frozen=True)
class Stages:
  """The per-stage layout of a config (`stage_config`): G's widths and block counts, lowest
  resolution first; D's, highest resolution first (G's reversed); expansion; group size."""

  g_widths: tuple[int, ...]
  g_blocks: tuple[int, ...]
  d_widths: tuple[int, ...]
  d_blocks: tuple[int, ...]
  expansion: int
  group_size: int


def _bad(field: str, value: Any, need: str) -> ConfigError:
  return ConfigError(f'{field}={value!r} is invalid: {need}.')


def _per_stage(m: Any, field: str, default: tuple, stages: int, low: int, layout: str) -> tuple:
  values = tuple(m.get(field, default))
  if len(values) == 1:
    values *= stages
  if len(values) != stages:
    raise _bad(
      f'model.{field}',
      values,
      f'give one value per stage ({stages} for {layout}) or one for every stage',
    )
  if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low for v in values):
    raise _bad(f'model.{field}', values, f'each must be an integer >= {low}')
  return tuple(int(v) for v in values)


def stage_config(model_config: Any, image_size: int) -> Stages:
  """The stage layout that the config's `model` block asks of an image size.

  Reads `stage_widths` (default (): `g_width` at every G stage, `d_width` at every D stage),
  `stage_blocks` (default (1,)), `expansion` (2) and `group_size` (16); a field missing (an
  older config) takes its default. One value of a per-stage field is used at every stage.

  Args:
    model_config: the config's `model` block.
    image_size: `data.image_size`, in pixels.

  Returns:
    `Stages`.

  Raises:
    ConfigError: (a ValueError) one line naming the field: an image size `stage_layout`
      refuses, the wrong number of per-stage values, a value that is not a positive integer,
      or a group size that does not divide `expansion` x a stage width.
  """
  try:
    base, stages = stage_layout(image_size)
  except ValueError:
    raise _bad(
      'data.image_size',
      image_size,
      'model "r3gan" needs 4 * 2^k or 7 * 2^k pixels, k >= 1 (8, 14, 16, 28, 32, 64, ...)',
    ) from None
  m = model_config
  layout = ' -> '.join(str(base * 2**i) for i in range(stages)) + ' px'
  widths = _per_stage(m, 'stage_widths', (), stages, 1, layout) if m.get('stage_widths') else None
  blocks = _per_stage(m, 'stage_blocks', (1,), stages, 0, layout)
  g_widths = widths or (m.g_width,) * stages
  d_widths = tuple(reversed(widths)) if widths else (m.d_width,) * stages
  sizes = {}
  for field in ('expansion', 'group_size'):
    v = m.get(field, {'expansion': 2, 'group_size': 16}[field])
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
      raise _bad(f'model.{field}', v, 'must be a positive integer (the paper: 2 and 16)')
    sizes[field] = int(v)
  e, g = sizes['expansion'], sizes['group_size']
  for w in g_widths + d_widths:
    if (e * w) % min(g, e * w):  # a group size over e * w gives one group
      raise _bad(
        'model.group_size',
        g,
        f'it must divide model.expansion x every stage width, '
        f'but {e} x {w} = {e * w}; use a divisor of {math.gcd(e * w, g)}',
      )
  return Stages(g_widths, blocks, d_widths, tuple(reversed(blocks)), e, g)


class R3GANEntry(registry.Model):
  """The registry entry of 'r3gan': `registry.Model` that also checks the R3GAN fields
  (`stage_config`) and refuses conditional BatchNorm ('cbn') for its normalisation-free G."""

  def check_shape(self, config: Any) -> None:
    """`registry.Model.check_shape`, then `stage_config` of the model block.

    Raises:
      ConfigError: as those two.
    """
    super().check_shape(config)
    stage_config(config.model, config.data.image_size)

  def check_conditioning(self, config: Any) -> None:
    """`registry.Model.check_conditioning`, then: a conditional r3gan needs
    `model.g_conditioning='concat'`.

    Raises:
      ConfigError: one line naming the field.
    """
    super().check_conditioning(config)
    m = config.model
    k, g_cond = m.get('num_classes', 0), m.get('g_conditioning', 'cbn')
    if isinstance(k, numbers.Integral) and k > 0 and g_cond != 'concat':
      raise _bad(
        'model.g_conditioning',
        g_cond,
        'model "r3gan" has no normalisation layers '
        "to condition; use model.g_conditioning='concat' (labels joined to z)",
      )
