"""pix2pix models: the U-Net generator and the PatchGAN discriminator (Isola et al. 2017).

"Image-to-Image Translation with Conditional Adversarial Networks" (Isola, Zhu, Zhou, Efros,
CVPR 2017), section 3.2 and appendix 6.1.2, and their reference code (junyanz/
pytorch-CycleGAN-and-pix2pix, `UnetGenerator`, `NLayerDiscriminator`).

* `UNetGenerator`: an encoder-decoder whose decoder level i sees the encoder's level-i
  features through a skip connection (concatenated on channels), so that fine detail of the
  input does not have to pass through the bottleneck. Encoder: 4x4 stride-2 convolutions,
  LeakyReLU 0.2, BatchNorm on all but the first and the innermost layer (as in the reference
  code). Decoder: ReLU, 4x4 stride-2 transposed convolutions, BatchNorm, dropout 0.5 on the
  `dropout_layers` innermost decoder layers (3 in the paper; dropout is G's only noise, the
  paper has no z), tanh at the output. The depth is derived from the image size: the image
  is reflect-padded to the next power of two P = 2^n >= H and the encoder halves it n times
  down to a 1x1 bottleneck, as the paper's 256 px U-Net does (8 levels); 32 px gives 5
  levels, 28 px is padded to 32 (5 levels) and the output cropped back to 28.
* `PatchGANDiscriminator`: a fully convolutional D on (input, output) pairs concatenated on
  channels that returns one logit per overlapping image patch, `[B, H', W']`. With n
  stride-2 4x4 convolutions followed by two stride-1 4x4 convolutions, the receptive field
  of each output logit is (`patch_receptive_field`)

      r(n) = 9 * 2^n - 2       (backwards from 1: r <- r + 3 for each stride-1 layer,
                                r <- 2 r + 2 for each stride-2 layer)

  so n = 3 is the paper's 70x70 PatchGAN. The paper found 70 px patches best at 256 px, i.e.
  a field of about 27% of the image side; `patch_layers` picks by default the n whose r(n)
  is closest (in log scale) to 70/256 of the image size: 256 px -> n = 3 (70), 128 -> 2
  (34), 64 -> 1 (16), 32 and 28 -> 0 (7). Convolutions use 'SAME' padding (the reference
  code pads by 1, which makes the two stride-1 layers shrink the map by 1 each), so the
  logits are `[B, ceil(H / 2^n), ceil(W / 2^n)]` and logit (i, j) sees the input rows
  `2^n i - 3 * 2^n + 1 ... 2^n i + 6 * 2^n - 2` (clipped to the image), likewise columns.

Images are float32 `[B, H, W, C]` in [-1, 1] (square, H = W >= 4); G returns float32 `[B, H,
W, C_out]` in [-1, 1] (tanh), D returns float32 logits `[B, H', W']` (no sigmoid). All
weights start from N(0, 0.02) (paper, section 6.2). BatchNorm uses batch statistics with
`train=True` and its running averages with `train=False` (the paper applies dropout and
batch statistics at test time too, with batch size 1; pass `dropout_rng` at test time to
keep G's dropout). The models are used functionally like the GAN models: split with
`nnx.split(model, nnx.Param, ...)` into parameters and batch statistics held as pure dicts
(`gan_jax.translation.pix2pix`). Dropout draws from a key passed to each call, not from
NNX RNG state, so the modules hold no RNG state.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from gan_jax.models.layers import Conv, ConvTranspose, instance_norm
from gan_jax.models.sngan import batch_norm

_INIT = nnx.initializers.normal(0.02)

# The paper's 70x70 PatchGAN on 256x256 images: receptive field / image side.
PAPER_FIELD_FRACTION = 70 / 256


def _check_size(image_size: int, what: str) -> int:
  if not isinstance(image_size, int) or image_size < 4:
    raise ValueError(f'{what} needs square images of at least 4x4 pixels, got size {image_size!r}.')
  return image_size


def unet_depth(image_size: int) -> int:
  """Number of U-Net levels: n = ceil(log2(image_size)), so that the image padded to 2^n
  halves n times to a 1x1 bottleneck (256 -> 8 as in the paper, 32 -> 5, 28 -> 5)."""
  _check_size(image_size, 'UNetGenerator')
  return math.ceil(math.log2(image_size))


def patch_receptive_field(patch_layers: int) -> int:
  """Receptive field side r(n) = 9 * 2^n - 2 of one PatchGAN logit with n stride-2 layers.

  Derivation: a logit sees 1 pixel of its own map; each 4x4 stride-1 convolution adds k - 1
  = 3 (two of them: 7), each 4x4 stride-2 convolution maps r to s (r - 1) + k = 2 r + 2.
  n = 3 gives the paper's 70.
  """
  if patch_layers < 0:
    raise ValueError(f'patch_layers={patch_layers} must be >= 0.')
  return 9 * 2**patch_layers - 2


def patch_field_start(patch_layers: int, index: int) -> int:
  """First input row (or column) that logit row `index` sees, before clipping to the image:
  `2^n index - 3 * 2^n + 1` with 'SAME' padding (each 4x4 layer pads 1 before, 2 after)."""
  s = 2**patch_layers
  return s * index - 3 * s + 1


def default_patch_layers(image_size: int) -> int:
  """The n whose r(n) is closest, in log scale, to 70/256 of `image_size` (the paper's
  fraction): 256 -> 3 (70x70), 128 -> 2, 64 -> 1, 32 and 28 -> 0 (7x7)."""
  _check_size(image_size, 'PatchGANDiscriminator')
  target = PAPER_FIELD_FRACTION * image_size
  best = min(
    range(int(math.log2(image_size)) + 1),
    key=lambda n: abs(math.log(patch_receptive_field(n)) - math.log(target)),
  )
  return best


def init_fast(ctor: Callable[[], nnx.Module], key: jax.Array) -> tuple[nnx.GraphDef, dict, dict]:
  """Builds `ctor()`'s model and returns (graph definition, parameters, batch statistics),
  the last two as pure dicts, drawing the parameters from one normal vector.

  `ctor` runs under `nnx.eval_shape` (nothing is computed); then, as the layers' own
  initialisers do, every 'kernel' is N(0, 0.02), every 'bias' 0, every BatchNorm 'scale' 1,
  every running 'mean' 0 and 'var' 1, but all kernels are slices of a single
  `jax.random.normal(key, [total])`. Why: on XLA's CPU backend each random draw of a new
  shape is its own compilation, about 1 s each on a loaded 2-core machine (15-20 s for a
  5-level U-Net built eagerly or under `jax.jit`); one draw compiles once. The values differ
  from the eager initialisation's, not their distribution.

  Raises:
    ValueError: for a leaf of another name (a layer this rule does not know).
  """
  graphdef, params, stats = nnx.split(nnx.eval_shape(ctor), nnx.Param, ...)
  params, stats = nnx.to_pure_dict(params), nnx.to_pure_dict(stats)
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  total = sum(math.prod(leaf.shape) for path, leaf in leaves if path[-1].key == 'kernel')
  flat = 0.02 * jax.random.normal(key, (max(total, 1),), jnp.float32)
  offset = 0

  def fill(path, leaf):
    nonlocal offset
    name = path[-1].key
    if name == 'kernel':
      n = math.prod(leaf.shape)
      offset += n
      return flat[offset - n : offset].reshape(leaf.shape).astype(leaf.dtype)
    if name in ('bias', 'mean'):
      return jnp.zeros(leaf.shape, leaf.dtype)
    if name in ('scale', 'var'):
      return jnp.ones(leaf.shape, leaf.dtype)
    raise ValueError(f'init_fast does not know how to initialise {jax.tree_util.keystr(path)}.')

  params = jax.tree_util.tree_map_with_path(fill, params)
  stats = jax.tree_util.tree_map_with_path(fill, stats)
  return graphdef, params, stats


def _check_images(x: jax.Array, size: int, channels: int, who: str, name: str = 'images') -> None:
  if x.ndim != 4 or x.shape[1:] != (size, size, channels):
    raise ValueError(
      f'{who} takes {name} [B, {size}, {size}, {channels}], got shape {tuple(x.shape)}.'
    )


class UNetGenerator(nnx.Module):
  """pix2pix U-Net generator (Isola et al. 2017, appendix 6.1.1; see the module docstring).

  Args:
    image_size: H = W of input and output images, >= 4 (28 or 32 here; 256 in the paper).
    in_channels: channels of the input image (1 greyscale, 3 RGB, + 1 for a mask channel).
    out_channels: channels of the output image.
    width: channels of the first encoder layer (64 in the paper); level i has
      min(width * 2^i, max_width).
    max_width: cap on the channels of a level (512 in the paper, 8 * width).
    dropout: dropout rate of the decoder (0.5 in the paper).
    dropout_layers: how many of the innermost decoder layers have dropout (3 in the paper).
    rngs: `nnx.Rngs` for initialisation.

  Call: `G(x, train=True, dropout_rng=None)`, x float32 `[B, H, H, in_channels]` in [-1, 1]
  -> float32 `[B, H, H, out_channels]` in [-1, 1]. Dropout applies when `dropout_rng` (a
  PRNG key) is given, in either mode; without it G is deterministic.

  Raises:
    ValueError: if image_size < 4, or at call time for another input shape.
  """

  def __init__(
    self,
    image_size: int,
    in_channels: int,
    out_channels: int,
    *,
    width: int = 64,
    max_width: int = 512,
    dropout: float = 0.5,
    dropout_layers: int = 3,
    rngs: nnx.Rngs,
  ):
    self.depth = unet_depth(image_size)
    self.image_size = image_size
    self.in_channels = in_channels
    self.out_channels = out_channels
    self.padded = 2**self.depth
    self.dropout = float(dropout)
    self.dropout_layers = int(dropout_layers)
    n = self.depth
    ch = [min(width * 2**i, max_width) for i in range(n)]
    conv = dict(padding='SAME', kernel_init=_INIT, rngs=rngs)
    downs, down_bns = [], []
    for i in range(n):
      c_in = in_channels if i == 0 else ch[i - 1]
      # Bias only where no BatchNorm follows (first and innermost layers).
      plain = i == 0 or i == n - 1
      downs.append(Conv(c_in, ch[i], (4, 4), (2, 2), use_bias=plain, **conv))
      down_bns.append(None if plain else batch_norm(ch[i], rngs))
    ups, up_bns = [], []
    for i in range(n):  # ups[i] maps level i to level i - 1 (ups[0]: to the output)
      c_in = ch[i] if i == n - 1 else 2 * ch[i]
      c_out = out_channels if i == 0 else ch[i - 1]
      ups.append(ConvTranspose(c_in, c_out, (4, 4), (2, 2), use_bias=i == 0, **conv))
      up_bns.append(None if i == 0 else batch_norm(c_out, rngs))
    self.downs = nnx.List(downs)
    self.down_bns = nnx.List(down_bns)
    self.ups = nnx.List(ups)
    self.up_bns = nnx.List(up_bns)

  def __call__(
    self, x: jax.Array, *, train: bool = True, dropout_rng: jax.Array | None = None
  ) -> jax.Array:
    _check_images(x, self.image_size, self.in_channels, 'UNetGenerator', 'inputs')
    ura = not train
    lo = (self.padded - self.image_size) // 2
    hi = self.padded - self.image_size - lo
    if lo or hi:
      x = jnp.pad(x, ((0, 0), (lo, hi), (lo, hi), (0, 0)), mode='reflect')
    n = self.depth
    skips = []
    h = x
    for i in range(n):
      if i > 0:
        h = jax.nn.leaky_relu(h, 0.2)
      h = self.downs[i](h)
      if self.down_bns[i] is not None:
        h = self.down_bns[i](h, use_running_average=ura)
      skips.append(h)
    d = skips[-1]
    # Dropout masks of the `dropout_layers` innermost decoder layers, all from one uniform
    # draw (one random-number compilation instead of one per layer).
    levels = [i for i in range(n - 1, 0, -1) if n - 1 - i < self.dropout_layers]
    masks = {}
    if dropout_rng is not None and self.dropout > 0 and levels:
      b = x.shape[0]
      shapes = [(b, self.padded >> i, self.padded >> i, self.ups[i].out_features) for i in levels]
      u = jax.random.uniform(dropout_rng, (sum(math.prod(sh) for sh in shapes),))
      offset = 0
      for i, sh in zip(levels, shapes):
        masks[i] = u[offset : offset + math.prod(sh)].reshape(sh) >= self.dropout
        offset += math.prod(sh)
    for i in range(n - 1, 0, -1):
      d = self.up_bns[i](self.ups[i](jax.nn.relu(d)), use_running_average=ura)
      if i in masks:
        d = jnp.where(masks[i], d / (1.0 - self.dropout), 0.0).astype(d.dtype)
      d = jnp.concatenate([d, skips[i - 1]], axis=-1)
    out = jnp.tanh(self.ups[0](jax.nn.relu(d)))
    if lo or hi:
      out = out[:, lo : lo + self.image_size, lo : lo + self.image_size]
    return out


class PatchGANDiscriminator(nnx.Module):
  """pix2pix PatchGAN discriminator on (input, output) pairs (Isola et al. 2017, section
  2.2.2 and appendix 6.1.2; receptive field in the module docstring).

  Layers: n = `patch_layers` 4x4 stride-2 convolutions, one 4x4 stride-1 convolution, each
  with LeakyReLU 0.2 and a norm (not on the first), channels width * min(2^i, 8) capped
  at max_width, and a 4x4 stride-1 convolution to one logit per patch.

  CycleGAN (Zhu et al. 2017, appendix 7.2) uses the same 70x70 PatchGAN on single images,
  with instance norm: `in_channels=0, norm='instance'`, called as `D(None, images)`.

  Args:
    image_size: H = W of the images, >= 4.
    in_channels: channels of the translation input (the condition); 0 for an unconditional
      D that judges the output image alone (CycleGAN).
    out_channels: channels of the translated / target image.
    width: channels of the first layer (64 in the paper).
    max_width: channel cap (512 in the paper).
    patch_layers: n, the number of stride-2 layers; None (default) scales the receptive
      field to the image size (`default_patch_layers`).
    norm: 'batch' (pix2pix; BatchNorm with running averages) or 'instance' (CycleGAN;
      `gan_jax.models.layers.instance_norm`, no parameters or statistics).
    rngs: `nnx.Rngs` for initialisation.

  Call: `D(inputs, outputs, train=True)`, inputs float32 `[B, H, H, in_channels]` (None
  when in_channels is 0), outputs float32 `[B, H, H, out_channels]`, both in [-1, 1] ->
  logits float32 `[B, H', H']` with H' = ceil(H / 2^n), one per patch of
  `patch_receptive_field(n)` pixels. `train` selects BatchNorm's batch statistics; it
  changes nothing with instance norm.

  Raises:
    ValueError: for image_size < 4, patch_layers < 0, in_channels < 0 or an unknown norm,
      or at call time for other shapes.
  """

  def __init__(
    self,
    image_size: int,
    in_channels: int,
    out_channels: int,
    *,
    width: int = 64,
    max_width: int = 512,
    patch_layers: int | None = None,
    norm: str = 'batch',
    rngs: nnx.Rngs,
  ):
    _check_size(image_size, 'PatchGANDiscriminator')
    if norm not in ('batch', 'instance'):
      raise ValueError(f"PatchGANDiscriminator norm={norm!r}: use 'batch' or 'instance'.")
    if in_channels < 0:
      raise ValueError(f'PatchGANDiscriminator in_channels={in_channels} must be >= 0.')
    if patch_layers is None:
      patch_layers = default_patch_layers(image_size)
    patch_receptive_field(patch_layers)  # validates
    self.image_size = image_size
    self.in_channels = in_channels
    self.out_channels = out_channels
    self.norm = norm
    self.patch_layers = int(patch_layers)
    self.receptive_field = patch_receptive_field(self.patch_layers)
    conv = dict(padding='SAME', kernel_init=_INIT, rngs=rngs)
    convs, bns = [], []
    c = in_channels + out_channels
    for i in range(self.patch_layers + 1):
      stride = 2 if i < self.patch_layers else 1
      c_out = min(width * min(2**i, 8), max_width)
      convs.append(Conv(c, c_out, (4, 4), (stride, stride), use_bias=i == 0, **conv))
      bns.append(None if i == 0 or norm == 'instance' else batch_norm(c_out, rngs))
      c = c_out
    self.convs = nnx.List(convs)
    self.bns = nnx.List(bns)
    self.out = Conv(c, 1, (4, 4), (1, 1), **conv)

  def __call__(
    self, inputs: jax.Array | None, outputs: jax.Array, *, train: bool = True
  ) -> jax.Array:
    _check_images(outputs, self.image_size, self.out_channels, 'PatchGANDiscriminator', 'outputs')
    if self.in_channels == 0:
      if inputs is not None:
        raise ValueError(
          'this PatchGANDiscriminator has in_channels=0: call it as D(None, images).'
        )
      h = outputs
    else:
      if inputs is None:
        raise ValueError(f'PatchGANDiscriminator needs inputs [B, H, H, {self.in_channels}].')
      _check_images(inputs, self.image_size, self.in_channels, 'PatchGANDiscriminator', 'inputs')
      if inputs.shape[0] != outputs.shape[0]:
        raise ValueError(
          f'PatchGANDiscriminator got {inputs.shape[0]} inputs but {outputs.shape[0]} outputs.'
        )
      h = jnp.concatenate([inputs, outputs], axis=-1)
    for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
      h = conv(h)
      if bn is not None:
        h = bn(h, use_running_average=not train)
      elif i > 0:  # instance norm on every layer but the first, as BatchNorm
        h = instance_norm(h)
      h = jax.nn.leaky_relu(h, 0.2)
    return self.out(h)[..., 0]
