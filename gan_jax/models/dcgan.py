"""DCGAN generators and discriminators (Radford et al. 2016).

Two families:

* `DCGAN28Generator` / `DCGAN28Discriminator`: the 28x28 MNIST DCGAN of the seed tutorials.
  G: Dense -> 7x7x(2w), BN, ReLU, ConvTranspose -> 14x14xw, BN, ReLU, ConvTranspose ->
  28x28xC, tanh. D: Conv w stride 2 -> Conv 2w stride 2 (LeakyReLU 0.2) -> Dense 1.
  w = `width` = 64 by default.
* `DCGANGenerator` / `DCGANDiscriminator`: Radford et al. 2016, section 3 and figure 1, for
  square images of any power-of-two resolution >= 8 (32x32 for CIFAR-10, 64x64 for LSUN /
  CelebA). G projects z to 4x4x(w * 2^(n-1)) and doubles the resolution n = log2(res / 4)
  times with stride-2 4x4 transposed convolutions, halving the channels, BN + ReLU between,
  tanh at the end. D mirrors it with stride-2 4x4 convolutions, BN on all but the first
  layer, LeakyReLU 0.2, and a dense logit.

Both discriminators take `spectral_norm=True` to wrap every convolution and the dense layer in
`SpectralNorm` (Miyato et al. 2018, eq. 8) and drop D's BatchNorm, as SN discriminators do there.
They also take two remedies for mode collapse that let D look at several samples at once:

* `pack=m` (PacGAN, Lin et al. 2018, section 3): D judges m samples jointly. Consecutive
  images of the batch are concatenated along channels (`pack_images`), the first convolution
  takes m * C channels, and D returns one logit per pack, `[B / m]`.
* `minibatch_std=G` (Karras et al. 2018, "Progressive Growing of GANs", section 3): before
  the dense logit, `minibatch_stddev` appends one feature map holding the average standard
  deviation of the features over a group of G samples. With packing it acts on the packed
  batch (groups of G packs).

All four take `num_classes=K > 0` to become class-conditional (`gan_jax.models.conditional`):
generators by `conditioning='concat'` (one-hot or learned label vectors concatenated to z,
Mirza & Osindero 2014) or 'cbn' (every BatchNorm gets per-class gains and biases, Miyato &
Koyama 2018); discriminators by 'concat' (label maps concatenated to the image), 'projection'
(logit + <V[y], phi(x)> with phi(x) the input of the dense logit, Miyato & Koyama 2018) or
'acgan' (an auxiliary classifier head over the classes, Odena et al. 2017). With
`num_classes=0` (default) they are exactly the unconditional models.

All weights start from N(0, 0.02) as in Radford et al. 2016, section 4. Images are float32
`[B, H, W, C]` in [-1, 1]; discriminators return logits float32 `[B]` (`[B / pack]` with
packing; no sigmoid). BatchNorm uses batch statistics when `train=True` (synchronised over
the whole global batch when the batch is sharded across devices) and its running averages
when `train=False`; spectral normalization advances and stores its power iteration when
`train=True` only.

Every model takes `dtype`, the computation dtype of its layers: None (the default) computes
in float32; jnp.bfloat16 is mixed precision (`config.dtype`): parameters, BatchNorm
statistics and spectral-norm state stay float32, the layers and activations are bfloat16,
and the model returns bfloat16 images or logits (`gan_jax.core.state.GAN` casts them to float32).
Minibatch stddev computes its statistic in float32 either way.
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
from flax import nnx

from gan_jax.models import conditional as cond
from gan_jax.models.layers import Conv, ConvTranspose
from gan_jax.models.sngan import Dtype, SpectralNorm, batch_norm

_INIT = nnx.initializers.normal(0.02)


def _maybe_sn(layer: nnx.Module, spectral_norm: bool, rngs: nnx.Rngs) -> nnx.Module:
  return SpectralNorm(layer, rngs=rngs) if spectral_norm else layer


def _check_d_options(pack: int, minibatch_std: int) -> None:
  if not isinstance(pack, numbers.Integral) or pack < 1:
    raise ValueError(f'model.pack={pack!r} must be a positive integer (1: no packing).')
  if not isinstance(minibatch_std, numbers.Integral) or minibatch_std < 0:
    raise ValueError(
      f'model.minibatch_std={minibatch_std!r} must be an integer >= 0 (0: off; the paper uses 4).'
    )


def pack_images(x: jax.Array, pack: int) -> jax.Array:
  """Concatenates each `pack` consecutive images along channels (PacGAN, Lin et al. 2018).

  Packing is the input transformation of PacGAN (Lin et al. 2018, section 3): the
  discriminator sees m samples at once, `D(x_1, ..., x_m)`, all real or all generated, as
  one input with m times the channels. Images `j * m ... j * m + m - 1` form pack j, and
  channel `i * C + c` of a pack is channel c of its i-th image:
  `out[j, h, w, i * C + c] = x[j * m + i, h, w, c]`.

  Args:
    x: images, any dtype, `[B, H, W, C]` (any rank >= 2 with the batch first and features
      last).
    pack: m >= 1; 1 returns `x` unchanged.

  Returns:
    `[B / m, H, W, m * C]`, same dtype.

  Raises:
    ValueError: if pack < 1 or B is not a multiple of pack.
  """
  _check_d_options(pack, 0)
  if pack == 1:
    return x
  b = x.shape[0]
  if b % pack:
    raise ValueError(
      f'model.pack={pack} needs a batch that is a multiple of {pack}, but the discriminator '
      f'got a batch of {b} images; use e.g. train.batch_size={max(pack, b // pack * pack)}.'
    )
  x = x.reshape((b // pack, pack) + x.shape[1:])
  x = jnp.moveaxis(x, 1, -2)  # [B / m, H, W, m, C]
  return x.reshape(x.shape[:-2] + (pack * x.shape[-1],))


def minibatch_stddev(x: jax.Array, group_size: int, eps: float = 1e-8) -> jax.Array:
  """Appends the minibatch standard deviation as one extra feature map (Karras et al. 2018).

  Progressive Growing of GANs (Karras et al. 2018, section 3): split the batch into groups
  of G = min(group_size, B) samples, compute the standard deviation of every feature at
  every position over each group, `sqrt(mean_g (x - mean_g x)^2 + eps)` (the population
  variance, as in the paper's code), average it over features and positions into one scalar
  per group, and append that scalar as a constant feature map to every sample of the group.
  D can then see the variety of a group, so a generator that collapses to few modes is easy
  to spot.

  Groups are consecutive samples: sample b belongs to group b // G. (The paper's code groups
  b with b % (B / G); the two differ by a permutation of the batch, which is random.) With
  data-parallel sharding, consecutive groups stay on one device when the per-device batch is
  a multiple of G.

  Args:
    x: float features `[B, H, W, C]` (any rank >= 2 with the batch first and features last).
    group_size: G >= 1; B must be a multiple of min(G, B).
    eps: added to the variance before the square root (1e-8 in the paper's code); it keeps
      the gradient finite when a group has no variance.

  Returns:
    `[B, H, W, C + 1]` with the input's dtype; channel C holds the group's statistic, >= 0
    (sqrt(eps) for a group of identical samples).

  Raises:
    ValueError: if group_size < 1 or B is not a multiple of min(group_size, B).
  """
  if not isinstance(group_size, numbers.Integral) or group_size < 1:
    raise ValueError(f'model.minibatch_std group size {group_size!r} must be an integer >= 1.')
  b = x.shape[0]
  g = min(group_size, b)
  if b % g:
    raise ValueError(
      f'model.minibatch_std={group_size} needs a batch that is a multiple of its group size '
      f'{g}, but the discriminator got a batch of {b} (after packing); choose a train.batch_size '
      'or group size that divides it.'
    )
  y = x.astype(jnp.float32).reshape((b // g, g) + x.shape[1:])
  var = jnp.mean(jnp.square(y - jnp.mean(y, axis=1, keepdims=True)), axis=1)
  std = jnp.sqrt(var + eps)  # [B / G, H, W, C]
  per_group = jnp.mean(std, axis=tuple(range(1, std.ndim)))  # [B / G]
  stat = jnp.repeat(per_group, g).astype(x.dtype)  # [B]
  fmap = jnp.broadcast_to(stat.reshape((b,) + (1,) * (x.ndim - 1)), x.shape[:-1] + (1,))
  return jnp.concatenate([x, fmap], axis=-1)


def _check_resolution(resolution: int) -> int:
  n = int(round(math.log2(resolution / 4))) if resolution >= 8 else 0
  if resolution < 8 or 4 * 2**n != resolution:
    raise ValueError(
      f'DCGAN needs a power-of-two image size >= 8 (e.g. 32 or 64), got {resolution}; '
      'set data.image_size accordingly (use model.name="dcgan28" for 28x28 MNIST).'
    )
  return n


def _check_28(image_shape: tuple[int, int, int]) -> None:
  if tuple(image_shape[:2]) != (28, 28):
    raise ValueError(
      f'dcgan28 works on 28x28 images, but data.image_size gives {image_shape}; '
      'set data.image_size=28 or use model.name="dcgan".'
    )


class DCGAN28Generator(nnx.Module):
  """28x28 DCGAN generator (seed tutorials' MNIST DCGAN).

  Args:
    image_shape: (28, 28, C).
    latent_dim: size of z (default 100).
    width: channels of the 14x14 feature map; the 7x7 map has 2 * width (default 64).
    num_classes: K > 0 makes G class-conditional; 0 (default) is the unconditional G.
    conditioning: with K > 0, 'cbn' (conditional BatchNorm in both BatchNorms, default) or
      'concat' (label vectors concatenated to z; see `gan_jax.models.conditional`).
    embed_dim: 'concat' only: 0 (default) concatenates one-hot labels, > 0 a learned
      embedding of this size.
    dtype: computation dtype of the layers: None (float32) or jnp.bfloat16 (mixed
      precision, see the module docstring).
    rngs: `nnx.Rngs` for initialisation.

  Call: `G(z, y=None, train=True)`, z float32 `[B, latent_dim]`, y int32 `[B]` in [0, K)
  (required when K > 0, ignored otherwise) -> images `[B, 28, 28, C]` in [-1, 1] (float32,
  or `dtype`).

  Raises:
    ValueError: if image_shape is not (28, 28, C) or the conditioning options are invalid;
      at call time, if a conditional G gets no labels.
  """

  def __init__(
    self,
    image_shape: tuple[int, int, int],
    latent_dim: int = 100,
    width: int = 64,
    *,
    num_classes: int = 0,
    conditioning: str = 'cbn',
    embed_dim: int = 0,
    dtype: Dtype = None,
    rngs: nnx.Rngs,
  ):
    _check_28(image_shape)
    c = image_shape[2]
    self.width = width
    extra = cond.init_generator_conditioning(
      self, num_classes, conditioning, embed_dim, dtype=dtype, rngs=rngs
    )
    k = cond.bn_classes(self)
    self.fc = nnx.Linear(
      latent_dim + extra,
      7 * 7 * 2 * width,
      use_bias=False,
      kernel_init=_INIT,
      dtype=dtype,
      rngs=rngs,
    )
    self.bn0 = cond.make_batch_norm(7 * 7 * 2 * width, k, rngs, dtype)
    self.up1 = ConvTranspose(
      2 * width,
      width,
      (4, 4),
      (2, 2),
      padding='SAME',
      use_bias=False,
      kernel_init=_INIT,
      dtype=dtype,
      rngs=rngs,
    )
    self.bn1 = cond.make_batch_norm(width, k, rngs, dtype)
    self.up2 = ConvTranspose(
      width, c, (4, 4), (2, 2), padding='SAME', kernel_init=_INIT, dtype=dtype, rngs=rngs
    )

  def __call__(self, z: jax.Array, y: jax.Array | None = None, *, train: bool = True) -> jax.Array:
    ura = not train
    h, y = cond.generator_input(self, z, y)
    x = jax.nn.relu(cond.apply_batch_norm(self.bn0, self.fc(h), y, ura))
    x = x.reshape((z.shape[0], 7, 7, 2 * self.width))
    x = jax.nn.relu(cond.apply_batch_norm(self.bn1, self.up1(x), y, ura))
    return jnp.tanh(self.up2(x))


class DCGAN28Discriminator(cond.Discriminator):
  """28x28 DCGAN discriminator: Conv w s2 -> Conv 2w s2 (LeakyReLU 0.2) -> Dense 1.

  Args:
    image_shape: (28, 28, C).
    width: channels of the first convolution (default 64).
    spectral_norm: wrap both convolutions and the dense layer in `SpectralNorm` (Miyato et
      al. 2018, eq. 8); their power-iteration vectors are non-Param `nnx.BatchStat` state.
    pack: PacGAN packing degree m >= 1 (Lin et al. 2018, section 3): each m consecutive
      images are judged jointly, concatenated along channels (`pack_images`); the first
      convolution takes m * C channels. 1 (default) is the plain DCGAN.
    minibatch_std: group size G of a minibatch-stddev layer before the dense logit (Karras
      et al. 2018, section 3; they use 4), adding one channel to the 7x7 map; 0 (default)
      leaves it out.
    num_classes: K > 0 makes D class-conditional; 0 (default) is the unconditional D.
    conditioning: with K > 0, 'projection' (default; V `[K, F]` on the dense layer's input,
      spectrally normalised with spectral_norm), 'concat' (label maps concatenated to the
      image) or 'acgan' (an auxiliary classifier head F -> K); needs pack == 1.
    embed_dim: 'concat' only: 0 (default) one-hot label maps, > 0 a learned embedding.
    dtype: computation dtype of the layers: None (float32) or jnp.bfloat16 (mixed
      precision, see the module docstring).
    rngs: `nnx.Rngs` for initialisation.

  Call: `D(x, y=None, train=True, with_class_logits=False)`, x float32 `[B, 28, 28, C]` in
  [-1, 1], y int32 `[B]` in [0, K) ('concat' and 'projection' need it; otherwise ignored)
  -> logits `[B / pack]` (float32, or `dtype`); with `with_class_logits` ('acgan' only)
  `(logits [B], class logits [B, K])`. `train` matters only with spectral_norm: True
  advances and stores the power iteration.

  Raises:
    ValueError: if image_shape is not (28, 28, C) or pack < 1 or minibatch_std < 0 or the
      conditioning options are invalid; at call time, if B is not a multiple of pack, or
      B / pack of min(minibatch_std, B / pack), or labels are missing.
  """

  def __init__(
    self,
    image_shape: tuple[int, int, int],
    width: int = 64,
    *,
    spectral_norm: bool = False,
    pack: int = 1,
    minibatch_std: int = 0,
    num_classes: int = 0,
    conditioning: str = 'projection',
    embed_dim: int = 0,
    dtype: Dtype = None,
    rngs: nnx.Rngs,
  ):
    _check_28(image_shape)
    _check_d_options(pack, minibatch_std)
    self.pack = int(pack)
    self.minibatch_std = int(minibatch_std)
    extra = cond.init_discriminator_conditioning(
      self, num_classes, conditioning, embed_dim, pack=pack, dtype=dtype, rngs=rngs
    )
    c = pack * image_shape[2] + extra
    sn = spectral_norm
    conv = dict(padding='SAME', kernel_init=_INIT, dtype=dtype, rngs=rngs)
    self.conv1 = _maybe_sn(Conv(c, width, (4, 4), (2, 2), **conv), sn, rngs)
    self.conv2 = _maybe_sn(Conv(width, 2 * width, (4, 4), (2, 2), **conv), sn, rngs)
    fc_in = 7 * 7 * (2 * width + (1 if minibatch_std else 0))
    self.fc = _maybe_sn(nnx.Linear(fc_in, 1, kernel_init=_INIT, dtype=dtype, rngs=rngs), sn, rngs)
    cond.init_discriminator_heads(
      self, fc_in, kernel_init=_INIT, wrap=lambda m: _maybe_sn(m, sn, rngs), dtype=dtype, rngs=rngs
    )

  def features(self, x: jax.Array, y: jax.Array | None = None, *, train: bool = True) -> jax.Array:
    """phi(x), the input of the dense logit: `[B / pack, 7 * 7 * (2 width (+ 1))]` (the
    label maps join the image first with 'concat')."""
    x = pack_images(x, self.pack)
    x, _ = cond.discriminator_input(self, x, y)
    x = jax.nn.leaky_relu(cond.apply_layer(self.conv1, x, train), 0.2)
    x = jax.nn.leaky_relu(cond.apply_layer(self.conv2, x, train), 0.2)
    if self.minibatch_std:
      x = minibatch_stddev(x, self.minibatch_std)
    return x.reshape((x.shape[0], -1))


class DCGANGenerator(nnx.Module):
  """DCGAN generator for square power-of-two images (Radford et al. 2016, figure 1).

  Args:
    image_shape: (R, R, C) with R a power of two >= 8 (32 for CIFAR-10, 64 for CelebA).
    latent_dim: size of z (default 100).
    width: channels just before the output layer; the 4x4 map has
      width * 2^(n-1) channels with n = log2(R / 4) (R=32, width=128: 512 -> 256 -> 128 -> C).
    num_classes: K > 0 makes G class-conditional; 0 (default) is the unconditional G.
    conditioning: with K > 0, 'cbn' (conditional BatchNorm in every BatchNorm, default) or
      'concat' (label vectors concatenated to z).
    embed_dim: 'concat' only: 0 (default) one-hot labels, > 0 a learned embedding.
    dtype: computation dtype of the layers: None (float32) or jnp.bfloat16 (mixed
      precision, see the module docstring).
    rngs: `nnx.Rngs` for initialisation.

  Call: `G(z, y=None, train=True)`, z float32 `[B, latent_dim]`, y int32 `[B]` in [0, K)
  (required when K > 0) -> `[B, R, R, C]` in [-1, 1] (float32, or `dtype`).

  Raises:
    ValueError: if R is not a power of two >= 8 or the conditioning options are invalid;
      at call time, if a conditional G gets no labels.
  """

  def __init__(
    self,
    image_shape: tuple[int, int, int],
    latent_dim: int = 100,
    width: int = 64,
    *,
    num_classes: int = 0,
    conditioning: str = 'cbn',
    embed_dim: int = 0,
    dtype: Dtype = None,
    rngs: nnx.Rngs,
  ):
    n = _check_resolution(image_shape[0])
    if image_shape[0] != image_shape[1]:
      raise ValueError(f'DCGAN needs square images, got {image_shape}.')
    self.c0 = width * 2 ** (n - 1)
    extra = cond.init_generator_conditioning(
      self, num_classes, conditioning, embed_dim, dtype=dtype, rngs=rngs
    )
    k = cond.bn_classes(self)
    self.fc = nnx.Linear(
      latent_dim + extra,
      4 * 4 * self.c0,
      use_bias=False,
      kernel_init=_INIT,
      dtype=dtype,
      rngs=rngs,
    )
    self.bn0 = cond.make_batch_norm(4 * 4 * self.c0, k, rngs, dtype)
    ups, bns = [], []
    c = self.c0
    up = dict(padding='SAME', kernel_init=_INIT, dtype=dtype, rngs=rngs)
    for _ in range(n - 1):
      ups.append(ConvTranspose(c, c // 2, (4, 4), (2, 2), use_bias=False, **up))
      bns.append(cond.make_batch_norm(c // 2, k, rngs, dtype))
      c //= 2
    self.ups = nnx.List(ups)
    self.bns = nnx.List(bns)
    self.out = ConvTranspose(c, image_shape[2], (4, 4), (2, 2), **up)

  def __call__(self, z: jax.Array, y: jax.Array | None = None, *, train: bool = True) -> jax.Array:
    ura = not train
    h, y = cond.generator_input(self, z, y)
    x = jax.nn.relu(cond.apply_batch_norm(self.bn0, self.fc(h), y, ura))
    x = x.reshape((z.shape[0], 4, 4, self.c0))
    for up, bn in zip(self.ups, self.bns):
      x = jax.nn.relu(cond.apply_batch_norm(bn, up(x), y, ura))
    return jnp.tanh(self.out(x))


class DCGANDiscriminator(cond.Discriminator):
  """DCGAN discriminator for square power-of-two images (Radford et al. 2016).

  Stride-2 4x4 convolutions from R x R down to 4x4 (channels width, 2 width, 4 width, ...),
  BatchNorm on every layer but the first, LeakyReLU 0.2, then a dense logit. With
  `spectral_norm=True` every convolution and the dense layer are wrapped in `SpectralNorm`
  (Miyato et al. 2018, eq. 8) and the BatchNorms are dropped (the convolutions get biases).

  Args:
    image_shape: (R, R, C) with R a power of two >= 8.
    width: channels of the first convolution (default 64).
    spectral_norm: spectrally normalise every layer and drop BatchNorm (default False).
    pack: PacGAN packing degree m >= 1 (Lin et al. 2018, section 3): each m consecutive
      images are judged jointly, concatenated along channels (`pack_images`); the first
      convolution takes m * C channels. 1 (default) is the plain DCGAN.
    minibatch_std: group size G of a minibatch-stddev layer before the dense logit (Karras
      et al. 2018, section 3; they use 4), adding one channel to the 4x4 map; 0 (default)
      leaves it out.
    num_classes: K > 0 makes D class-conditional; 0 (default) is the unconditional D.
    conditioning: with K > 0, 'projection' (default; V `[K, F]` on the dense layer's input,
      spectrally normalised with spectral_norm), 'concat' (label maps concatenated to the
      image) or 'acgan' (an auxiliary classifier head F -> K); needs pack == 1.
    embed_dim: 'concat' only: 0 (default) one-hot label maps, > 0 a learned embedding.
    dtype: computation dtype of the layers: None (float32) or jnp.bfloat16 (mixed
      precision, see the module docstring).
    rngs: `nnx.Rngs` for initialisation.

  Call: `D(x, y=None, train=True, with_class_logits=False)`, x float32 `[B, R, R, C]` in
  [-1, 1], y int32 `[B]` in [0, K) ('concat' and 'projection' need it; otherwise ignored)
  -> logits `[B / pack]` (float32, or `dtype`); with `with_class_logits` ('acgan' only)
  `(logits [B], class logits [B, K])`. `train=True` uses (and updates) BatchNorm batch
  statistics (over the packed batch), or with spectral_norm advances and stores the power
  iteration; `train=False` changes no state.

  Raises:
    ValueError: if R is not a power of two >= 8 or pack < 1 or minibatch_std < 0 or the
      conditioning options are invalid; at call time, if B is not a multiple of pack, or
      B / pack of min(minibatch_std, B / pack), or labels are missing.
  """

  def __init__(
    self,
    image_shape: tuple[int, int, int],
    width: int = 64,
    *,
    spectral_norm: bool = False,
    pack: int = 1,
    minibatch_std: int = 0,
    num_classes: int = 0,
    conditioning: str = 'projection',
    embed_dim: int = 0,
    dtype: Dtype = None,
    rngs: nnx.Rngs,
  ):
    n = _check_resolution(image_shape[0])
    _check_d_options(pack, minibatch_std)
    self.pack = int(pack)
    self.minibatch_std = int(minibatch_std)
    extra = cond.init_discriminator_conditioning(
      self, num_classes, conditioning, embed_dim, pack=pack, dtype=dtype, rngs=rngs
    )
    sn = spectral_norm
    kw = dict(padding='SAME', kernel_init=_INIT, dtype=dtype, rngs=rngs)
    c_in = pack * image_shape[2] + extra
    self.first = _maybe_sn(Conv(c_in, width, (4, 4), (2, 2), **kw), sn, rngs)
    convs, bns = [], []
    c = width
    for _ in range(n - 1):
      conv = Conv(c, 2 * c, (4, 4), (2, 2), use_bias=sn, **kw)
      convs.append(_maybe_sn(conv, sn, rngs))
      if not sn:
        bns.append(batch_norm(2 * c, rngs, dtype))
      c *= 2
    self.convs = nnx.List(convs)
    self.bns = nnx.List(bns)
    fc_in = 4 * 4 * (c + (1 if minibatch_std else 0))
    self.fc = _maybe_sn(nnx.Linear(fc_in, 1, kernel_init=_INIT, dtype=dtype, rngs=rngs), sn, rngs)
    cond.init_discriminator_heads(
      self, fc_in, kernel_init=_INIT, wrap=lambda m: _maybe_sn(m, sn, rngs), dtype=dtype, rngs=rngs
    )

  def features(self, x: jax.Array, y: jax.Array | None = None, *, train: bool = True) -> jax.Array:
    """phi(x), the input of the dense logit: `[B / pack, 4 * 4 * (channels (+ 1))]` (the
    label maps join the image first with 'concat')."""
    x = pack_images(x, self.pack)
    x, _ = cond.discriminator_input(self, x, y)
    x = jax.nn.leaky_relu(cond.apply_layer(self.first, x, train), 0.2)
    for i, conv in enumerate(self.convs):
      x = cond.apply_layer(conv, x, train)
      if self.bns:
        x = self.bns[i](x, use_running_average=not train)
      x = jax.nn.leaky_relu(x, 0.2)
    if self.minibatch_std:
      x = minibatch_stddev(x, self.minibatch_std)
    return x.reshape((x.shape[0], -1))
