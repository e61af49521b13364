"""Spectral normalization and the SNGAN ResNet for 32x32 images (Miyato et al. 2018).

* `SpectralNorm`: wraps a dense or convolutional layer so that it computes with
  `W_SN = W / sigma(W)` (Miyato et al. 2018, eq. 8), `sigma(W)` being the largest singular
  value of the kernel reshaped to a `[fan_in, out]` matrix, estimated by one step of power
  iteration per training call (Algorithm 1). The power-iteration vector `u` and the last
  estimate `sigma` are `nnx.BatchStat` variables: they are in the non-`Param` state (the
  `g_batch_stats` / `d_batch_stats` of `gan_jax.core.state`), so they are checkpointed with the
  run, updated by every call with `update_stats=True`, and left as they are otherwise.
* `SNGANGenerator` / `SNGANDiscriminator`: the ResNet of the CIFAR-10 experiments of
  Miyato et al. 2018 (appendix B, Table 4), itself the ResNet of Gulrajani et al. 2017
  (WGAN-GP), with the initialisation of the authors' code (`pfnet-research/sngan_projection`):
  Glorot-uniform weights, gain sqrt(2) in the residual branches and 1 elsewhere.

With `num_classes=K > 0` both become class-conditional as in Miyato & Koyama 2018 ("cGANs
with Projection Discriminator", their `sngan_projection` code): G's up-ResBlocks use
conditional BatchNorm (per-class gains and biases; the last BatchNorm stays unconditional,
as theirs) or, with `conditioning='concat'`, label vectors concatenated to z (Mirza &
Osindero 2014); D adds the projection term `<V[y], phi(x)>` with a spectrally normalised
class embedding V on the sum-pooled features phi(x), or concatenates label maps to the image
('concat'), or has an AC-GAN classifier head ('acgan', Odena et al. 2017). See
`gan_jax.models.conditional`.

Images are float32 `[B, 32, 32, C]` in [-1, 1]; the discriminator returns logits float32 `[B]`.
With `dtype=jnp.bfloat16` (mixed precision, `config.dtype`) the layers compute in bfloat16
and the models return bfloat16; parameters, power-iteration vectors and BatchNorm statistics
stay float32 (`batch_norm`), and `gan_jax.core.state.GAN` casts the outputs back to float32.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from gan_jax.models import conditional as cond
from gan_jax.models.layers import Conv, Dtype, SpectralNorm, batch_norm  # noqa: F401  (re-exported)


def _glorot(gain: float = 1.0) -> Callable:
  """Glorot (Xavier) uniform with a gain: U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out))."""
  return nnx.initializers.variance_scaling(gain**2, 'fan_avg', 'uniform')


def _sn(layer: nnx.Module, rngs: nnx.Rngs) -> SpectralNorm:
  return SpectralNorm(layer, rngs=rngs)


def _conv(cin: int, cout: int, k: int, gain: float, rngs: nnx.Rngs, dtype: Dtype = None) -> Conv:
  # `layers.Conv`: for these stride-1 convolutions exactly `nnx.Conv` (same parameters and
  # results), and it takes the speed-only layer options (`layers.set_layer_options`).
  return Conv(cin, cout, (k, k), padding='SAME', kernel_init=_glorot(gain), dtype=dtype, rngs=rngs)


def _upsample(x: jax.Array) -> jax.Array:
  """Nearest-neighbour x2: `[B, H, W, C]` -> `[B, 2H, 2W, C]`."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def _avg_pool(x: jax.Array) -> jax.Array:
  """2x2 average pooling, stride 2: `[B, H, W, C]` -> `[B, H/2, W/2, C]` (H, W even)."""
  b, h, w, c = x.shape
  return x.reshape((b, h // 2, 2, w // 2, 2, c)).mean(axis=(2, 4))


def run_blocks(
  blocks: nnx.List, x: jax.Array, call: Callable[[nnx.Module, jax.Array], jax.Array], remat: bool
) -> jax.Array:
  """`x` through each residual block in turn, `x <- call(block, x)`.

  With `remat` each block is rematerialised (`flax.nnx.remat`, i.e. `jax.checkpoint`,
  Chen et al. 2016): the backward pass recomputes the block's activations from its input
  instead of keeping them from the forward pass, so a gradient holds only the blocks'
  inputs (and one block's activations at a time). The same values to float32 rounding
  (the recomputed forward is the same computation; XLA may fuse it differently), at about
  one more forward pass of the blocks in each gradient. State updates inside a block
  (BatchNorm running averages, the power iteration of `SpectralNorm`) happen once, as
  without remat.

  Args:
    blocks: the residual blocks (`GBlock` or `DBlock`).
    x: the first block's input, `[B, H, W, C]`.
    call: `call(block, x) -> block output`, the block with its other arguments bound.
    remat: rematerialise each block.

  Returns:
    The last block's output.
  """
  apply = nnx.remat(call) if remat else call
  for block in blocks:
    x = apply(block, x)
  return x


def _check_32(image_shape: tuple[int, int, int]) -> None:
  if tuple(image_shape[:2]) != (32, 32):
    raise ValueError(
      f'sngan32 works on 32x32 images, but data.image_size gives {tuple(image_shape)}; '
      'set data.image_size=32 or use model.name="dcgan".'
    )


class GBlock(nnx.Module):
  """Generator up-ResBlock (Gulrajani et al. 2017; Miyato et al. 2018, Table 4).

  Residual: BN, ReLU, nearest upsample x2, conv3x3, BN, ReLU, conv3x3.
  Shortcut: nearest upsample x2, conv1x1. Output: their sum, `[B, 2H, 2W, cout]`.
  With `num_classes=K > 0` both BNs are conditional (`ConditionalBatchNorm`, Miyato & Koyama
  2018) and the call needs labels y int32 `[B]`.
  """

  def __init__(
    self, cin: int, cout: int, *, num_classes: int = 0, dtype: Dtype = None, rngs: nnx.Rngs
  ):
    self.bn1 = cond.make_batch_norm(cin, num_classes, rngs, dtype)
    self.conv1 = _conv(cin, cout, 3, math.sqrt(2), rngs, dtype)
    self.bn2 = cond.make_batch_norm(cout, num_classes, rngs, dtype)
    self.conv2 = _conv(cout, cout, 3, math.sqrt(2), rngs, dtype)
    self.shortcut = _conv(cin, cout, 1, 1.0, rngs, dtype)

  def __call__(self, x: jax.Array, y: jax.Array | None = None, *, train: bool) -> jax.Array:
    ura = not train
    h = jax.nn.relu(cond.apply_batch_norm(self.bn1, x, y, ura))
    h = self.conv1(_upsample(h))
    h = jax.nn.relu(cond.apply_batch_norm(self.bn2, h, y, ura))
    return self.conv2(h) + self.shortcut(_upsample(x))


class DBlock(nnx.Module):
  """Spectrally normalised discriminator ResBlock (Miyato et al. 2018, Table 4).

  `optimized=True` is the first block, which sees the image: residual conv3x3, ReLU, conv3x3,
  avg-pool 2; shortcut avg-pool 2, conv1x1 (Miyato et al. 2018, `OptimizedBlock` of their
  code). Otherwise residual ReLU, conv3x3, ReLU, conv3x3, then avg-pool 2 if `downsample`;
  the shortcut is a conv1x1 (then avg-pool 2) when the shape changes and the identity
  otherwise. No BatchNorm; every convolution is wrapped in `SpectralNorm`.
  """

  def __init__(
    self,
    cin: int,
    cout: int,
    *,
    downsample: bool,
    optimized: bool = False,
    dtype: Dtype = None,
    rngs: nnx.Rngs,
  ):
    self.downsample = downsample or optimized
    self.optimized = optimized
    self.conv1 = _sn(_conv(cin, cout, 3, math.sqrt(2), rngs, dtype), rngs)
    self.conv2 = _sn(_conv(cout, cout, 3, math.sqrt(2), rngs, dtype), rngs)
    learnable = optimized or downsample or cin != cout
    self.shortcut = _sn(_conv(cin, cout, 1, 1.0, rngs, dtype), rngs) if learnable else None

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    h = x if self.optimized else jax.nn.relu(x)
    h = self.conv1(h, update_stats=train)
    h = self.conv2(jax.nn.relu(h), update_stats=train)
    if self.downsample:
      h = _avg_pool(h)
    s = x
    if self.optimized:
      s = self.shortcut(_avg_pool(s), update_stats=train)
    elif self.shortcut is not None:
      s = self.shortcut(s, update_stats=train)
      if self.downsample:
        s = _avg_pool(s)
    return h + s


class SNGANGenerator(nnx.Module):
  """SNGAN ResNet generator for 32x32 images (Miyato et al. 2018, Table 4a).

  z -> dense 4x4x`width` -> 3 up-ResBlocks (`GBlock`, 4 -> 8 -> 16 -> 32) -> BN, ReLU,
  conv3x3 -> C channels -> tanh. 4,276,739 parameters at width 256, latent_dim 128, C = 3.

  Args:
    image_shape: (32, 32, C).
    latent_dim: size of z (128 in the paper).
    width: channels of every block (256 in the paper).
    num_classes: K > 0 makes G class-conditional (Miyato & Koyama 2018); 0 (default) is the
      unconditional G.
    conditioning: with K > 0, 'cbn' (conditional BatchNorm in every up-ResBlock, default, as
      in Miyato & Koyama 2018) or 'concat' (label vectors concatenated to z).
    embed_dim: 'concat' only: 0 (default) one-hot labels, > 0 a learned embedding.
    dtype: computation dtype of every layer: None (float32) or jnp.bfloat16 (mixed
      precision: float32 parameters and BatchNorm statistics, bfloat16 activations and
      output).
    remat: rematerialise the up-ResBlocks in gradients (`run_blocks`; `model.remat`): less
      memory (the activations of one block at a time), one more forward pass of the blocks
      per gradient; the same results to float32 rounding. Default False.
    rngs: `nnx.Rngs` for initialisation.

  Call: `G(z, y=None, train=True)`, z float32 `[B, latent_dim]`, y int32 `[B]` in [0, K)
  (required when K > 0) -> `[B, 32, 32, C]` in [-1, 1] (float32, or `dtype`). `train`
  selects batch (True) or running (False) BatchNorm statistics.

  Raises:
    ValueError: if image_shape is not (32, 32, C) or the conditioning options are invalid;
      at call time, if a conditional G gets no labels.
  """

  def __init__(
    self,
    image_shape: tuple[int, int, int],
    latent_dim: int = 128,
    width: int = 256,
    *,
    num_classes: int = 0,
    conditioning: str = 'cbn',
    embed_dim: int = 0,
    dtype: Dtype = None,
    remat: bool = False,
    rngs: nnx.Rngs,
  ):
    _check_32(image_shape)
    self.width = width
    self.remat = remat
    extra = cond.init_generator_conditioning(
      self, num_classes, conditioning, embed_dim, dtype=dtype, rngs=rngs
    )
    self.fc = nnx.Linear(
      latent_dim + extra, 4 * 4 * width, kernel_init=_glorot(), dtype=dtype, rngs=rngs
    )
    k = cond.bn_classes(self)
    self.blocks = nnx.List(
      [GBlock(width, width, num_classes=k, dtype=dtype, rngs=rngs) for _ in range(3)]
    )
    self.bn = batch_norm(width, rngs, dtype)
    self.out = _conv(width, image_shape[2], 3, 1.0, rngs, dtype)

  def __call__(self, z: jax.Array, y: jax.Array | None = None, *, train: bool = True) -> jax.Array:
    h, y = cond.generator_input(self, z, y)
    x = self.fc(h).reshape((z.shape[0], 4, 4, self.width))
    y = y if cond.bn_classes(self) else None
    x = run_blocks(self.blocks, x, lambda block, x: block(x, y, train=train), self.remat)
    x = jax.nn.relu(self.bn(x, use_running_average=not train))
    return jnp.tanh(self.out(x))


class SNGANDiscriminator(cond.Discriminator):
  """SNGAN ResNet discriminator for 32x32 images (Miyato et al. 2018, Table 4b).

  Optimised down-ResBlock (32 -> 16), down-ResBlock (16 -> 8), two ResBlocks at 8x8, all
  `width` channels; ReLU, global sum pooling, dense -> logit. Every convolution and the
  dense layer are spectrally normalised (`SpectralNorm`); no BatchNorm.
  1,053,825 parameters at width 128, C = 3.

  Args:
    image_shape: (32, 32, C).
    width: channels of every block (128 in the paper).
    num_classes: K > 0 makes D class-conditional; 0 (default) is the unconditional D.
    conditioning: with K > 0, 'projection' (default: `<V[y], phi(x)>` added to the logit,
      V a spectrally normalised `[K, width]` embedding, Miyato & Koyama 2018, eq. 3),
      'concat' (label maps concatenated to the image) or 'acgan' (a spectrally normalised
      classifier head width -> K, Odena et al. 2017).
    embed_dim: 'concat' only: 0 (default) one-hot label maps, > 0 a learned embedding.
    dtype: computation dtype of every layer: None (float32) or jnp.bfloat16 (mixed
      precision: float32 parameters and power-iteration state, bfloat16 activations and
      logits).
    remat: rematerialise the ResBlocks in gradients (`run_blocks`; `model.remat`), as for
      the generator. Default False.
    rngs: `nnx.Rngs` for initialisation.

  Call: `D(x, y=None, train=True, with_class_logits=False)`, x float32 `[B, 32, 32, C]` in
  [-1, 1], y int32 `[B]` in [0, K) ('concat' and 'projection' need it; otherwise ignored) ->
  logits `[B]` (float32, or `dtype`); with `with_class_logits` ('acgan' only) `(logits [B],
  class logits [B, K])`. `train=True` advances every layer's power iteration by one step and
  stores it.

  Raises:
    ValueError: if image_shape is not (32, 32, C) or the conditioning options are invalid;
      at call time, if labels are missing.
  """

  def __init__(
    self,
    image_shape: tuple[int, int, int],
    width: int = 128,
    *,
    num_classes: int = 0,
    conditioning: str = 'projection',
    embed_dim: int = 0,
    dtype: Dtype = None,
    remat: bool = False,
    rngs: nnx.Rngs,
  ):
    _check_32(image_shape)
    self.remat = remat
    extra = cond.init_discriminator_conditioning(
      self, num_classes, conditioning, embed_dim, dtype=dtype, rngs=rngs
    )
    c = image_shape[2] + extra
    self.blocks = nnx.List(
      [
        DBlock(c, width, downsample=True, optimized=True, dtype=dtype, rngs=rngs),
        DBlock(width, width, downsample=True, dtype=dtype, rngs=rngs),
        DBlock(width, width, downsample=False, dtype=dtype, rngs=rngs),
        DBlock(width, width, downsample=False, dtype=dtype, rngs=rngs),
      ]
    )
    self.fc = _sn(nnx.Linear(width, 1, kernel_init=_glorot(), dtype=dtype, rngs=rngs), rngs)
    cond.init_discriminator_heads(
      self, width, kernel_init=_glorot(), wrap=lambda m: _sn(m, rngs), dtype=dtype, rngs=rngs
    )

  def features(self, x: jax.Array, y: jax.Array | None = None, *, train: bool = True) -> jax.Array:
    """phi(x): ReLU and global sum pooling of the last block, `[B, width]` (the label maps
    join the image first with 'concat')."""
    x, _ = cond.discriminator_input(self, x, y)
    x = run_blocks(self.blocks, x, lambda block, x: block(x, train=train), self.remat)
    return jnp.sum(jax.nn.relu(x), axis=(1, 2))
