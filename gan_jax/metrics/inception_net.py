"""The FID InceptionV3 of pytorch-fid ("pt_inception-2015-12-05") as a Flax NNX network.

Architecture: exactly `pytorch_fid.inception.fid_inception_v3()` (pytorch-fid, mseitzer), i.e.
torchvision's `Inception3(num_classes=1008, aux_logits=False)` (Szegedy et al. 2016,
"Rethinking the Inception Architecture for Computer Vision") with the blocks that reproduce the
TensorFlow FID graph of Heusel et al. 2017 ("GANs Trained by a Two Time-Scale Update Rule
Converge to a Local Nash Equilibrium"): `FIDInceptionA` / `FIDInceptionC` / `FIDInceptionE_1`
average-pool their pool branch with `count_include_pad=False`, and `FIDInceptionE_2` (Mixed_7c)
max-pools it. Every convolution is `BasicConv2d`: conv without bias, BatchNorm (eps 0.001, running
statistics only: eval mode), ReLU. Inputs are handled like pytorch-fid's
`InceptionV3(resize_input=True, normalize_input=True)`: images float32 `[B, H, W, C]` in [-1, 1]
(one channel is tiled to three) are resized bilinearly to 299x299 (half-pixel centres, no
antialiasing: `F.interpolate(mode='bilinear', align_corners=False)`). pytorch-fid takes images in
[0, 1], resizes, then maps to [-1, 1]; resizing is linear, so resizing [-1, 1] images directly is
the same up to float rounding. Outputs are the pool3 features float32 `[B, 2048]` (global
average pool after Mixed_7c: pytorch-fid's FID features) and the logits float32 `[B, 1008]` (fc
on pool3; the Inception Score takes their softmax). Layout is NHWC throughout; conv kernels are
HWIO. Attribute names are torch's module names (`gan_jax.metrics.inception_state` maps them to
the state-dict keys).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_CLASSES = 1008
_BN_EPS = 1e-3


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
  return (v, v) if isinstance(v, int) else tuple(v)


class BasicConv2d(nnx.Module):
  """torchvision's BasicConv2d: conv (no bias) -> BatchNorm(eps=0.001, running stats) -> ReLU.

  Args:
    in_features: input channels.
    out_features: output channels.
    kernel_size: (kh, kw) or an int.
    stride: an int.
    padding: symmetric zero padding (ph, pw) or an int, as torch's `Conv2d(padding=...)`.
    rngs: `nnx.Rngs` for the (placeholder) initialisation; real weights are loaded over it.

  Call: x float32 `[B, H, W, in_features]` -> float32 `[B, H', W', out_features]`, >= 0.
  """

  def __init__(
    self,
    in_features: int,
    out_features: int,
    kernel_size: int | tuple[int, int],
    *,
    stride: int = 1,
    padding: int | tuple[int, int] = 0,
    rngs: nnx.Rngs,
  ):
    ph, pw = _pair(padding)
    self.conv = nnx.Conv(
      in_features,
      out_features,
      _pair(kernel_size),
      strides=stride,
      padding=((ph, ph), (pw, pw)),
      use_bias=False,
      kernel_init=nnx.initializers.variance_scaling(2.0, 'fan_in', 'truncated_normal'),
      rngs=rngs,
    )
    self.bn = nnx.BatchNorm(out_features, epsilon=_BN_EPS, use_running_average=True, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return jax.nn.relu(self.bn(self.conv(x)))


def _avg_pool_3x3_same(x: jax.Array) -> jax.Array:
  """`F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)` (TF 'SAME' average)."""
  return nnx.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3(x: jax.Array, stride: int, pad: int) -> jax.Array:
  """`F.max_pool2d(x, 3, stride, pad)`; padding counts as -inf, as in torch."""
  return nnx.max_pool(x, (3, 3), strides=(stride, stride), padding=((pad, pad), (pad, pad)))


class FIDInceptionA(nnx.Module):
  """pytorch-fid's FIDInceptionA (Mixed_5b/5c/5d): torchvision InceptionA, pool excludes padding.

  Call: x `[B, H, W, in_features]` -> `[B, H, W, 224 + pool_features]`.
  """

  def __init__(self, in_features: int, pool_features: int, *, rngs: nnx.Rngs):
    self.branch1x1 = BasicConv2d(in_features, 64, 1, rngs=rngs)
    self.branch5x5_1 = BasicConv2d(in_features, 48, 1, rngs=rngs)
    self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2, rngs=rngs)
    self.branch3x3dbl_1 = BasicConv2d(in_features, 64, 1, rngs=rngs)
    self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1, rngs=rngs)
    self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1, rngs=rngs)
    self.branch_pool = BasicConv2d(in_features, pool_features, 1, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    b1 = self.branch1x1(x)
    b5 = self.branch5x5_2(self.branch5x5_1(x))
    b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    bp = self.branch_pool(_avg_pool_3x3_same(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nnx.Module):
  """torchvision's InceptionB (Mixed_6a, unpatched in pytorch-fid): halves H and W.

  Call: x `[B, H, W, in_features]` -> `[B, (H-3)//2+1, (W-3)//2+1, 480 + in_features]`.
  """

  def __init__(self, in_features: int, *, rngs: nnx.Rngs):
    self.branch3x3 = BasicConv2d(in_features, 384, 3, stride=2, rngs=rngs)
    self.branch3x3dbl_1 = BasicConv2d(in_features, 64, 1, rngs=rngs)
    self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1, rngs=rngs)
    self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    b3 = self.branch3x3(x)
    bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    bp = _max_pool_3x3(x, stride=2, pad=0)
    return jnp.concatenate([b3, bd, bp], axis=-1)


class FIDInceptionC(nnx.Module):
  """pytorch-fid's FIDInceptionC (Mixed_6b..6e): factorised 7x7, pool excludes padding.

  Call: x `[B, H, W, in_features]` -> `[B, H, W, 768]`.
  """

  def __init__(self, in_features: int, channels_7x7: int, *, rngs: nnx.Rngs):
    c7 = channels_7x7
    self.branch1x1 = BasicConv2d(in_features, 192, 1, rngs=rngs)
    self.branch7x7_1 = BasicConv2d(in_features, c7, 1, rngs=rngs)
    self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3), rngs=rngs)
    self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0), rngs=rngs)
    self.branch7x7dbl_1 = BasicConv2d(in_features, c7, 1, rngs=rngs)
    self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0), rngs=rngs)
    self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3), rngs=rngs)
    self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0), rngs=rngs)
    self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3), rngs=rngs)
    self.branch_pool = BasicConv2d(in_features, 192, 1, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    b1 = self.branch1x1(x)
    b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
    bd = self.branch7x7dbl_1(x)
    bd = self.branch7x7dbl_5(self.branch7x7dbl_4(self.branch7x7dbl_3(self.branch7x7dbl_2(bd))))
    bp = self.branch_pool(_avg_pool_3x3_same(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nnx.Module):
  """torchvision's InceptionD (Mixed_7a, unpatched in pytorch-fid): halves H and W.

  Call: x `[B, H, W, in_features]` -> `[B, (H-3)//2+1, (W-3)//2+1, 512 + in_features]`.
  """

  def __init__(self, in_features: int, *, rngs: nnx.Rngs):
    self.branch3x3_1 = BasicConv2d(in_features, 192, 1, rngs=rngs)
    self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2, rngs=rngs)
    self.branch7x7x3_1 = BasicConv2d(in_features, 192, 1, rngs=rngs)
    self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3), rngs=rngs)
    self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0), rngs=rngs)
    self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    b3 = self.branch3x3_2(self.branch3x3_1(x))
    b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
    bp = _max_pool_3x3(x, stride=2, pad=0)
    return jnp.concatenate([b3, b7, bp], axis=-1)


class FIDInceptionE(nnx.Module):
  """pytorch-fid's FIDInceptionE_1 (Mixed_7b, pool='avg') and FIDInceptionE_2 (Mixed_7c, 'max').

  FIDInceptionE_1 average-pools its pool branch without counting the padding; FIDInceptionE_2
  max-pools it (3x3, stride 1, padding 1), as the TensorFlow FID graph does.

  Call: x `[B, H, W, in_features]` -> `[B, H, W, 2048]`.

  Raises:
    ValueError: if pool is neither 'avg' nor 'max'.
  """

  def __init__(self, in_features: int, pool: str, *, rngs: nnx.Rngs):
    if pool not in ('avg', 'max'):
      raise ValueError(f"FIDInceptionE pool must be 'avg' or 'max', got {pool!r}.")
    self.pool = pool
    self.branch1x1 = BasicConv2d(in_features, 320, 1, rngs=rngs)
    self.branch3x3_1 = BasicConv2d(in_features, 384, 1, rngs=rngs)
    self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
    self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
    self.branch3x3dbl_1 = BasicConv2d(in_features, 448, 1, rngs=rngs)
    self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1, rngs=rngs)
    self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
    self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
    self.branch_pool = BasicConv2d(in_features, 192, 1, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    b1 = self.branch1x1(x)
    b3 = self.branch3x3_1(x)
    b3 = jnp.concatenate([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], axis=-1)
    bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
    bd = jnp.concatenate([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], axis=-1)
    if self.pool == 'avg':
      bp = _avg_pool_3x3_same(x)
    else:
      bp = _max_pool_3x3(x, stride=1, pad=1)
    bp = self.branch_pool(bp)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


def preprocess_images(images: jax.Array) -> jax.Array:
  """pytorch-fid's input handling (`resize_input=True, normalize_input=True`), in NHWC.

  Args:
    images: float `[B, H, W, C]` in [-1, 1], C = 1 or 3 (one channel is tiled to three).

  Returns:
    float32 `[B, 299, 299, 3]` in [-1, 1]: resized with `jax.image.resize(..., 'bilinear',
    antialias=False)`, which is `F.interpolate(mode='bilinear', align_corners=False)` (half-pixel
    centres; edge samples clamp to the border pixel; no antialiasing when shrinking).
    pytorch-fid resizes [0, 1] images and then maps them to [-1, 1]; both steps are affine,
    so the order only changes float rounding.

  Raises:
    ValueError: if images are not rank 4 with 1 or 3 channels.
  """
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(
      f'Inception needs images [B, H, W, C] with C = 1 or 3, got shape {tuple(images.shape)}.'
    )
  x = jnp.asarray(images, jnp.float32)
  if x.shape[-1] == 1:
    x = jnp.tile(x, (1, 1, 1, 3))
  if x.shape[1:3] != (INPUT_SIZE, INPUT_SIZE):
    x = jax.image.resize(
      x, (x.shape[0], INPUT_SIZE, INPUT_SIZE, 3), method='bilinear', antialias=False
    )
  return x


class FIDInceptionV3(nnx.Module):
  """pytorch-fid's FID InceptionV3 (`fid_inception_v3()`), NHWC, eval mode.

  Attribute names are the torch module names, so torch key `Mixed_5b.branch1x1.conv.weight`
  is `model.Mixed_5b.branch1x1.conv.kernel` (see `gan_jax.metrics.inception_state.torch_key_for_path`).

  Args:
    rngs: `nnx.Rngs` for placeholder initialisation (He-normal convs, unit BN); load real
      weights with `gan_jax.metrics.inception_state.build_inception_model`.

  Call: `model(x)` with x float32 `[B, 299, 299, 3]` in [-1, 1] (already preprocessed, see
  `preprocess_images`) returns `(pool3 float32 [B, 2048], logits float32 [B, 1008])`. Other
  sizes >= 75x75 also run (the net is fully convolutional up to the global pool) but do not
  give FID features.
  """

  def __init__(self, *, rngs: nnx.Rngs):
    self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2, rngs=rngs)
    self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3, rngs=rngs)
    self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1, rngs=rngs)
    self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1, rngs=rngs)
    self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3, rngs=rngs)
    self.Mixed_5b = FIDInceptionA(192, pool_features=32, rngs=rngs)
    self.Mixed_5c = FIDInceptionA(256, pool_features=64, rngs=rngs)
    self.Mixed_5d = FIDInceptionA(288, pool_features=64, rngs=rngs)
    self.Mixed_6a = InceptionB(288, rngs=rngs)
    self.Mixed_6b = FIDInceptionC(768, channels_7x7=128, rngs=rngs)
    self.Mixed_6c = FIDInceptionC(768, channels_7x7=160, rngs=rngs)
    self.Mixed_6d = FIDInceptionC(768, channels_7x7=160, rngs=rngs)
    self.Mixed_6e = FIDInceptionC(768, channels_7x7=192, rngs=rngs)
    self.Mixed_7a = InceptionD(768, rngs=rngs)
    self.Mixed_7b = FIDInceptionE(1280, pool='avg', rngs=rngs)
    self.Mixed_7c = FIDInceptionE(2048, pool='max', rngs=rngs)
    self.fc = nnx.Linear(FEATURE_DIM, NUM_CLASSES, rngs=rngs)

  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    x = self.Conv2d_1a_3x3(x)  # 149x149x32
    x = self.Conv2d_2a_3x3(x)  # 147x147x32
    x = self.Conv2d_2b_3x3(x)  # 147x147x64
    x = _max_pool_3x3(x, stride=2, pad=0)  # 73x73x64
    x = self.Conv2d_3b_1x1(x)  # 73x73x80
    x = self.Conv2d_4a_3x3(x)  # 71x71x192
    x = _max_pool_3x3(x, stride=2, pad=0)  # 35x35x192
    x = self.Mixed_5b(x)  # 35x35x256
    x = self.Mixed_5c(x)  # 35x35x288
    x = self.Mixed_5d(x)  # 35x35x288
    x = self.Mixed_6a(x)  # 17x17x768
    x = self.Mixed_6b(x)
    x = self.Mixed_6c(x)
    x = self.Mixed_6d(x)
    x = self.Mixed_6e(x)  # 17x17x768
    x = self.Mixed_7a(x)  # 8x8x1280
    x = self.Mixed_7b(x)  # 8x8x2048
    x = self.Mixed_7c(x)  # 8x8x2048
    pool3 = jnp.mean(x, axis=(1, 2))  # AdaptiveAvgPool2d((1, 1)): [B, 2048]
    logits = self.fc(pool3)  # dropout is the identity in eval mode
    return pool3.astype(jnp.float32), logits.astype(jnp.float32)


@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef: nnx.GraphDef, state: nnx.State, x: jax.Array):
  return nnx.merge(graphdef, state)(x)


_preprocess = jax.jit(preprocess_images)


def make_apply(model: FIDInceptionV3):
  """`apply(images) -> (pool3 [B, 2048], logits [B, 1008])`, float32, jitted.

  Two jitted stages: the resize (compiled once per input shape, cheap) and the network on
  `[B, 299, 299, 3]` (compiled once per batch size), so datasets of different image sizes share
  the network's compilation.
  """
  graphdef, state = nnx.split(model)

  def apply(images: jax.Array) -> tuple[jax.Array, jax.Array]:
    return _forward(graphdef, state, _preprocess(images))

  return apply
