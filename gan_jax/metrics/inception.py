"""The FID InceptionV3 of pytorch-fid ("pt_inception-2015-12-05") in Flax NNX, loaded without torch.

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
HWIO.

Weights: the pytorch-fid state dict `pt_inception-2015-12-05-6726825d.pth` (`WEIGHTS_URL`), read
by `read_torch_state_dict` with zipfile + pickle only. Both of torch's formats are read: the zip
archive of `torch.save` since torch 1.6 and the older "legacy" stream (magic number, protocol,
system info, the pickle, then the raw storages); which of the two the real file uses was not
checked here (it was published in 2019, before torch 1.6 made zip the default, so probably the
legacy one). The unpickler resolves only `collections.OrderedDict`,
`torch._utils._rebuild_tensor_v2` / `_rebuild_tensor` / `_rebuild_parameter` and torch's typed
storage classes (`torch.FloatStorage`, `torch.LongStorage`, ...), each to a stand-in defined here
that builds numpy arrays; any other global is refused with `UnsafeCheckpointError`, so no code
from the file ever runs. A `.npz` with the same keys and torch layouts is read as well. Conv
weights go from OIHW to HWIO and the fc weight from [out, in] to [in, out]; `num_batches_tracked`
buffers are ignored; every other key must be present with the expected shape, or
`InceptionWeightsError` lists everything missing, unexpected and mis-shaped at once.

Verified here (tests/test_inception.py; the torch comparisons ran with torch 2.13 CPU and are
skipped without torch): the key names and shapes, transcribed from torchvision's `Inception3` and
pytorch-fid's FID blocks (the state dict pytorch-fid loads strictly: 472 keys, 94 BasicConv2d x 5
+ fc, plus 94 ignored `num_batches_tracked`; 23,850,960 parameters, which is torchvision's
27,161,264 less the aux head plus 8 classes, and 34,432 running-statistic values); that
`torch.load` reads the files the tests' stdlib writer makes and that this reader reads files
written by `torch.save` in both formats (strided views, shared storages, 0-d, float16/bfloat16/
float64/int64/bool tensors, a module's state dict with `_metadata`); the forward pass's shapes and
finiteness with random weights; and agreement, with the same random weights, with an
independent plain-torch transcription of pytorch-fid's `InceptionV3` (F.interpolate, conv2d,
batch_norm, pooling): pool3 and logits within about 1e-6 of their largest magnitude, at 32x32,
299x299 and 512x384 (one channel) inputs; the resize alone matches `F.interpolate` to 2e-6 when
upsampling and downsampling. NOT verified: numerical agreement with pytorch-fid on the real
weights, and which of torch's two formats the real file uses, since it cannot be downloaded
here; a first run with the real file should compare a few images' features with pytorch-fid's.

`load_inception` finds the file (argument, `$GAN_JAX_INCEPTION_WEIGHTS`, then
`<cache_dir or $GAN_JAX_CACHE_DIR or ~/.cache/gan_jax>/pt_inception-2015-12-05-6726825d.pth`),
downloads it only when asked (`download=True`), and returns a `FeatureNet`.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import io
import os
import pickle
import struct
import tempfile
import urllib.request
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gan_jax.metrics.features import FeatureNet

WEIGHTS_FILENAME = 'pt_inception-2015-12-05-6726825d.pth'
WEIGHTS_URL = (
  'https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/' + WEIGHTS_FILENAME
)
# torch.hub names a file <name>-<first 8 hex digits of its SHA-256>.<ext>.
WEIGHTS_SHA256_PREFIX = '6726825d'
ENV_WEIGHTS = 'GAN_JAX_INCEPTION_WEIGHTS'
ENV_CACHE_DIR = 'GAN_JAX_CACHE_DIR'
DEFAULT_CACHE_DIR = '~/.cache/gan_jax'

INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_CLASSES = 1008
_BN_EPS = 1e-3


class InceptionWeightsNotFoundError(FileNotFoundError):
  """The Inception weights file was not found; the message lists where and how to get it."""


class InceptionWeightsError(ValueError):
  """A weights file is unreadable, has the wrong keys or shapes, or fails its SHA-256 check."""


class UnsafeCheckpointError(InceptionWeightsError, pickle.UnpicklingError):
  """A checkpoint's pickle names a global that is not a tensor, storage or OrderedDict."""


# ----------------------------------------------------------------------------------------------
# The network.
# ----------------------------------------------------------------------------------------------


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
  is `model.Mixed_5b.branch1x1.conv.kernel` (see `torch_key_for_path`).

  Args:
    rngs: `nnx.Rngs` for placeholder initialisation (He-normal convs, unit BN); load real
      weights with `build_inception_model`.

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


# ----------------------------------------------------------------------------------------------
# Torch key names and layouts.
# ----------------------------------------------------------------------------------------------

# NNX variable name -> torch parameter/buffer name, by the module that holds it.
_BN_NAMES = {'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean', 'var': 'running_var'}


def torch_key_for_path(path: tuple[Any, ...]) -> str:
  """The torch state-dict key of an NNX variable path of `FIDInceptionV3`.

  E.g. ('Mixed_5b', 'branch1x1', 'conv', 'kernel') -> 'Mixed_5b.branch1x1.conv.weight',
  ('Conv2d_1a_3x3', 'bn', 'mean') -> 'Conv2d_1a_3x3.bn.running_mean', ('fc', 'kernel') ->
  'fc.weight'.

  Raises:
    ValueError: for a path that is not a variable of the network.
  """
  *modules, name = (str(p) for p in path)
  if modules and modules[-1] == 'bn' and name in _BN_NAMES:
    name = _BN_NAMES[name]
  elif modules and modules[-1] in ('conv', 'fc') and name in ('kernel', 'bias'):
    name = 'weight' if name == 'kernel' else 'bias'
  else:
    raise ValueError(f'Not a FIDInceptionV3 variable path: {path!r}.')
  return '.'.join([*modules, name])


def _to_nnx_layout(key: str, array: np.ndarray) -> np.ndarray:
  """Torch layout -> NNX layout: conv OIHW -> HWIO, Linear [out, in] -> [in, out]."""
  if key.endswith('.conv.weight'):
    return np.transpose(array, (2, 3, 1, 0))
  if key == 'fc.weight':
    return np.transpose(array)
  return array


def _to_torch_shape(key: str, shape: tuple[int, ...]) -> tuple[int, ...]:
  """NNX shape -> torch shape (inverse of `_to_nnx_layout`)."""
  if key.endswith('.conv.weight'):
    kh, kw, i, o = shape
    return (o, i, kh, kw)
  if key == 'fc.weight':
    return tuple(reversed(shape))
  return tuple(shape)


@functools.cache
def _abstract_model() -> tuple[nnx.GraphDef, nnx.State]:
  model = nnx.eval_shape(lambda: FIDInceptionV3(rngs=nnx.Rngs(0)))
  return nnx.split(model)


def inception_torch_shapes() -> dict[str, tuple[int, ...]]:
  """The keys and torch-layout shapes a pytorch-fid Inception state dict must have.

  Returns:
    {torch key: shape}, 472 entries sorted by key: for each of the 94 BasicConv2d
    `<name>.conv.weight` [O, I, kh, kw] and `<name>.bn.{weight,bias,running_mean,running_var}`
    [O], then `fc.weight` [1008, 2048] and `fc.bias` [1008]. (The file may also hold the 94
    scalar `<name>.bn.num_batches_tracked` buffers, which are ignored.)
  """
  _, state = _abstract_model()
  shapes = {}
  for path, var in nnx.to_flat_state(state):
    key = torch_key_for_path(path)
    shapes[key] = _to_torch_shape(key, tuple(var.get_value().shape))
  return shapes


def _check_state_dict(state_dict: Mapping[str, Any], source: str) -> dict[str, np.ndarray]:
  """Checks keys, shapes and dtypes; returns float32 arrays in torch layout."""
  expected = inception_torch_shapes()
  problems = []
  missing = [k for k in expected if k not in state_dict]
  unexpected = [
    k for k in state_dict if k not in expected and not str(k).endswith('.num_batches_tracked')
  ]
  out = {}
  for key, shape in expected.items():
    if key not in state_dict:
      continue
    array = np.asarray(state_dict[key])
    if tuple(array.shape) != shape:
      problems.append(f'{key}: shape {tuple(array.shape)}, expected {shape}')
    elif not (np.issubdtype(array.dtype, np.floating) or array.dtype.name == 'bfloat16'):
      problems.append(f'{key}: dtype {array.dtype}, expected a float dtype')
    else:
      out[key] = np.ascontiguousarray(array, dtype=np.float32)
  if missing or unexpected or problems:
    lines = [
      f'{source} is not the pytorch-fid FID Inception state dict '
      f'({WEIGHTS_FILENAME}, keys as in torchvision Inception3 with pytorch-fid\'s FID blocks):'
    ]
    if missing:
      lines.append(f'  {len(missing)} missing key(s): {", ".join(missing[:20])}')
      if len(missing) > 20:
        lines.append(f'    ... and {len(missing) - 20} more')
    if unexpected:
      lines.append(f'  {len(unexpected)} unexpected key(s): {", ".join(map(str, unexpected[:20]))}')
      if len(unexpected) > 20:
        lines.append(f'    ... and {len(unexpected) - 20} more')
    for p in problems[:20]:
      lines.append(f'  {p}')
    if len(problems) > 20:
      lines.append(f'  ... and {len(problems) - 20} more wrong shapes/dtypes')
    lines.append(f'Get the right file from {WEIGHTS_URL}.')
    raise InceptionWeightsError('\n'.join(lines))
  return out


# ----------------------------------------------------------------------------------------------
# Reading torch checkpoints without torch.
# ----------------------------------------------------------------------------------------------

_STORAGE_DTYPES = {
  'DoubleStorage': np.dtype(np.float64),
  'FloatStorage': np.dtype(np.float32),
  'HalfStorage': np.dtype(np.float16),
  'BFloat16Storage': np.dtype(jnp.bfloat16),
  'LongStorage': np.dtype(np.int64),
  'IntStorage': np.dtype(np.int32),
  'ShortStorage': np.dtype(np.int16),
  'CharStorage': np.dtype(np.int8),
  'ByteStorage': np.dtype(np.uint8),
  'BoolStorage': np.dtype(np.bool_),
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class _StorageType:
  """Stands in for `torch.FloatStorage` etc. in a pickle: only carries the dtype."""

  def __init__(self, name: str):
    self.name = name
    self.dtype = _STORAGE_DTYPES[name]


class _Storage:
  """A torch storage: numel elements of dtype; `data` (1-D numpy) is filled in after unpickling."""

  def __init__(self, key: str, dtype: np.dtype, numel: int):
    self.key, self.dtype, self.numel = key, dtype, numel
    self.data: np.ndarray | None = None


class _Tensor:
  """A strided view of a `_Storage`, turned into a numpy array once the storage is read."""

  def __init__(self, storage: Any, offset: int, size: tuple[int, ...], stride: tuple[int, ...]):
    if not isinstance(storage, _Storage):
      raise InceptionWeightsError(f'Malformed checkpoint: a tensor has storage {storage!r}.')
    self.storage, self.offset, self.size, self.stride = storage, int(offset), size, stride

  def to_numpy(self) -> np.ndarray:
    data = self.storage.data
    size, stride = tuple(int(s) for s in self.size), tuple(int(s) for s in self.stride)
    if (
      data is None or len(size) != len(stride) or min((*size, *stride, self.offset), default=0) < 0
    ):
      raise InceptionWeightsError(f'Malformed checkpoint tensor (storage {self.storage.key}).')
    if 0 not in size:
      last = self.offset + sum((n - 1) * s for n, s in zip(size, stride))
      if last >= data.size:
        raise InceptionWeightsError(
          f'Malformed checkpoint: a tensor of size {size} reads past the end of storage '
          f'{self.storage.key} ({data.size} elements); the file is probably truncated.'
        )
    view = np.lib.stride_tricks.as_strided(
      data[self.offset :] if 0 not in size else data[:0],
      shape=size,
      strides=tuple(s * data.itemsize for s in stride),
      writeable=False,
    )
    return np.array(view)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *unused_args):
  """Stands in for `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`."""
  del unused_args  # requires_grad, backward_hooks, metadata
  return _Tensor(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_tensor(storage, storage_offset, size, stride):
  """Stands in for torch's older `torch._utils._rebuild_tensor`."""
  return _Tensor(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, *unused_args):
  """Stands in for `torch._utils._rebuild_parameter(data, requires_grad, backward_hooks)`."""
  del unused_args
  return data


_ALLOWED_GLOBALS = {
  ('collections', 'OrderedDict'): collections.OrderedDict,
  ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor_v2,
  ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
  ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
}


class _RestrictedUnpickler(pickle.Unpickler):
  """Unpickles a torch state dict into `_Tensor`s, refusing every other global.

  Args:
    file: binary stream positioned at the pickle.
    source: the file's name, for messages.
  """

  def __init__(self, file: BinaryIO, source: str):
    super().__init__(file)
    self.source = source
    self.storages: dict[str, _Storage] = {}

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) in _ALLOWED_GLOBALS:
      return _ALLOWED_GLOBALS[(module, name)]
    if module == 'torch' and name in _STORAGE_DTYPES:
      return _StorageType(name)
    raise UnsafeCheckpointError(
      f'{self.source}: refusing to unpickle the global {module}.{name}: a weights file may only '
      'hold tensors (torch._utils._rebuild_tensor_v2, torch.*Storage) in dicts, and running '
      'anything else from a pickle could execute arbitrary code. Is this really '
      f'{WEIGHTS_FILENAME}?'
    )

  def persistent_load(self, pid: Any) -> _Storage:
    # Zip format: ('storage', storage_type, key, location, numel); legacy format adds
    # view_metadata (None unless the tensor views part of a larger storage, pre torch 0.4).
    if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == 'storage'):
      raise InceptionWeightsError(f'{self.source}: unsupported persistent id {pid!r}.')
    storage_type, key, numel = pid[1], str(pid[2]), pid[4]
    if len(pid) == 6 and pid[5] is not None:
      raise InceptionWeightsError(f'{self.source}: storage views are not supported.')
    if not isinstance(storage_type, _StorageType) or not isinstance(numel, int) or numel < 0:
      raise InceptionWeightsError(f'{self.source}: malformed storage record {pid!r}.')
    if key not in self.storages:
      self.storages[key] = _Storage(key, storage_type.dtype, numel)
    return self.storages[key]


def _materialize(obj: Any) -> Any:
  if isinstance(obj, _Tensor):
    return obj.to_numpy()
  if isinstance(obj, dict):
    return type(obj)((k, _materialize(v)) for k, v in obj.items())
  if isinstance(obj, (list, tuple)):
    return type(obj)(_materialize(v) for v in obj)
  return obj


def _storage_array(raw: bytes, storage: _Storage, byteorder: str, source: str) -> np.ndarray:
  dtype = storage.dtype.newbyteorder('<' if byteorder == 'little' else '>')
  nbytes = storage.numel * dtype.itemsize
  if len(raw) < nbytes:
    raise InceptionWeightsError(
      f'{source}: storage {storage.key} has {len(raw)} bytes, expected {nbytes}; '
      'the file is probably truncated.'
    )
  return np.frombuffer(raw[:nbytes], dtype=dtype).astype(storage.dtype, copy=False)


def _read_zip_checkpoint(path: Path) -> Any:
  source = str(path)
  with zipfile.ZipFile(path) as zf:
    names = zf.namelist()
    pickles = [n for n in names if n.endswith('/data.pkl') and n.count('/') == 1]
    if len(pickles) != 1:
      raise InceptionWeightsError(
        f'{source} is a zip file but not a torch checkpoint (no <name>/data.pkl).'
      )
    prefix = pickles[0][: -len('data.pkl')]
    byteorder = 'little'
    if prefix + 'byteorder' in names:
      byteorder = zf.read(prefix + 'byteorder').decode().strip()
    unpickler = _RestrictedUnpickler(io.BytesIO(zf.read(pickles[0])), source)
    obj = unpickler.load()
    for key, storage in unpickler.storages.items():
      record = f'{prefix}data/{key}'
      if record not in names:
        raise InceptionWeightsError(f'{source}: storage record {record} is missing.')
      storage.data = _storage_array(zf.read(record), storage, byteorder, source)
  return _materialize(obj)


def _read_legacy_checkpoint(path: Path) -> Any:
  source = str(path)
  with open(path, 'rb') as f:
    try:
      magic = _RestrictedUnpickler(f, source).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
      if isinstance(e, UnsafeCheckpointError):
        raise
      raise InceptionWeightsError(
        f'{source} is neither a torch checkpoint (zip or legacy format) nor an .npz: {e}'
      ) from e
    if magic != _LEGACY_MAGIC:
      raise InceptionWeightsError(
        f'{source} is neither a torch checkpoint (zip or legacy format) nor an .npz '
        '(wrong magic number).'
      )
    protocol = _RestrictedUnpickler(f, source).load()
    if protocol != _LEGACY_PROTOCOL:
      raise InceptionWeightsError(f'{source}: unsupported legacy protocol {protocol!r}.')
    sys_info = _RestrictedUnpickler(f, source).load()
    little = sys_info.get('little_endian', True) if isinstance(sys_info, dict) else True
    unpickler = _RestrictedUnpickler(f, source)
    obj = unpickler.load()
    keys = _RestrictedUnpickler(f, source).load()
    for key in keys:
      storage = unpickler.storages.get(str(key))
      if storage is None:
        raise InceptionWeightsError(f'{source}: unknown storage key {key!r}.')
      header = f.read(8)
      if len(header) != 8:
        raise InceptionWeightsError(f'{source} is truncated (storage {key}).')
      (numel,) = struct.unpack('<q' if little else '>q', header)
      raw = f.read(numel * storage.dtype.itemsize)
      storage.numel = max(storage.numel, numel)
      storage.data = _storage_array(raw, storage, 'little' if little else 'big', source)
  return _materialize(obj)


def read_torch_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
  """Reads a state dict saved by `torch.save` (zip or legacy format) without torch.

  Only tensors in (ordered) dicts are understood; the pickle may name no other global.

  Args:
    path: the checkpoint file.

  Returns:
    {key: numpy array} in the file's order, with the tensors' dtypes (float32 for float tensors
    saved as such) and torch layouts, contiguous.

  Raises:
    UnsafeCheckpointError: if the pickle names any global but OrderedDict, the tensor rebuild
      functions and the typed storages (nothing from the file is executed).
    InceptionWeightsError: if the file is not a torch checkpoint, is truncated, or does not hold
      a dict of tensors.
  """
  path = Path(path)
  with open(path, 'rb') as f:
    is_zip = f.read(4) == b'PK\x03\x04'
  obj = _read_zip_checkpoint(path) if is_zip else _read_legacy_checkpoint(path)
  if isinstance(obj, dict) and 'state_dict' in obj and isinstance(obj['state_dict'], dict):
    obj = obj['state_dict']
  if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
    raise InceptionWeightsError(f'{path} does not hold a state dict (a dict of tensors).')
  return {str(k): v for k, v in obj.items()}


def read_inception_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
  """Reads and checks the pytorch-fid Inception weights (torch file or `.npz`).

  Args:
    path: a torch checkpoint (`.pth`, see `read_torch_state_dict`) or an `.npz` with the same
      keys and torch layouts.

  Returns:
    {torch key: float32 array in torch layout} with exactly the keys of
    `inception_torch_shapes()` (`num_batches_tracked` dropped).

  Raises:
    InceptionWeightsError: unreadable file, or keys missing / unexpected / mis-shaped (all
      listed in one message).
    UnsafeCheckpointError: a pickle with a disallowed global.
  """
  path = Path(path)
  if path.suffix == '.npz':
    with np.load(path, allow_pickle=False) as npz:
      state_dict = {k: npz[k] for k in npz.files}
  else:
    state_dict = read_torch_state_dict(path)
  return _check_state_dict(state_dict, str(path))


def build_inception_model(state_dict: Mapping[str, np.ndarray]) -> FIDInceptionV3:
  """An `FIDInceptionV3` holding the given torch-layout weights (checked, converted to NHWC).

  Args:
    state_dict: {torch key: array}, e.g. from `read_inception_state_dict`.

  Returns:
    The model; conv kernels HWIO, fc kernel [2048, 1008], BN running statistics as given.

  Raises:
    InceptionWeightsError: keys missing / unexpected / mis-shaped.
  """
  arrays = _check_state_dict(state_dict, 'the state dict')
  graphdef, abstract = _abstract_model()
  flat = []
  for path, var in nnx.to_flat_state(abstract):
    key = torch_key_for_path(path)
    flat.append((path, var.replace(jnp.asarray(_to_nnx_layout(key, arrays[key])))))
  return nnx.merge(graphdef, nnx.from_flat_state(flat))


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


# ----------------------------------------------------------------------------------------------
# Finding, downloading and loading the weights.
# ----------------------------------------------------------------------------------------------


def default_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
  """`cache_dir`, else `$GAN_JAX_CACHE_DIR`, else `~/.cache/gan_jax` (user-expanded)."""
  return Path(cache_dir or os.environ.get(ENV_CACHE_DIR) or DEFAULT_CACHE_DIR).expanduser()


def _not_found(searched: list[str], why: str) -> InceptionWeightsNotFoundError:
  cache = Path(DEFAULT_CACHE_DIR) / WEIGHTS_FILENAME
  return InceptionWeightsNotFoundError(
    f'{why}\nSearched:\n' + ''.join(f'  {s}\n' for s in searched) + 'To get them, either\n'
    f'  * download them: curl -L -o {cache} {WEIGHTS_URL}\n'
    f'    (mkdir -p {cache.parent} first; or into $GAN_JAX_CACHE_DIR or your cache_dir), or\n'
    f'  * set {ENV_WEIGHTS}=/path/to/{WEIGHTS_FILENAME} (or pass weights_path), or\n'
    '  * let gan_jax download them: load_inception(download=True), or --download-inception on '
    'the command line.'
  )


def resolve_weights_path(
  weights_path: str | os.PathLike[str] | None = None,
  *,
  cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
  """Finds the weights file without downloading anything.

  Order: `weights_path`, else `$GAN_JAX_INCEPTION_WEIGHTS`, else
  `<cache_dir or $GAN_JAX_CACHE_DIR or ~/.cache/gan_jax>/pt_inception-2015-12-05-6726825d.pth`.
  A path given explicitly (argument or environment) must exist; the cache is not searched then.

  Raises:
    InceptionWeightsNotFoundError: listing the path(s) searched and how to get the file.
  """
  for given, what in ((weights_path, 'weights_path'), (os.environ.get(ENV_WEIGHTS), ENV_WEIGHTS)):
    if given:
      path = Path(given).expanduser()
      if path.is_file():
        return path
      raise _not_found([f'{path} ({what})'], f'Inception weights not found at {path} ({what}).')
  path = default_cache_dir(cache_dir) / WEIGHTS_FILENAME
  if path.is_file():
    return path
  raise _not_found(
    [f'{path} (cache)', f'${ENV_WEIGHTS} (not set)'],
    f'The FID Inception weights ({WEIGHTS_FILENAME}) are not on this machine.',
  )


def _sha256(path: Path) -> str:
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      h.update(chunk)
  return h.hexdigest()


def download_inception_weights(
  cache_dir: str | os.PathLike[str] | None = None, *, url: str = WEIGHTS_URL
) -> Path:
  """Downloads the weights into the cache directory (atomically) and checks their SHA-256.

  Args:
    cache_dir: target directory (default: `$GAN_JAX_CACHE_DIR` or `~/.cache/gan_jax`).
    url: where from (default: pytorch-fid's GitHub release, `WEIGHTS_URL`).

  Returns:
    The path of the verified file, `<cache dir>/pt_inception-2015-12-05-6726825d.pth`.

  Raises:
    InceptionWeightsError: if the download's SHA-256 does not start with 6726825d (the file name's
      hash prefix); the partial file is deleted.
    OSError: network or disk errors (urllib.error.URLError is one); nothing is left behind.
  """
  target = default_cache_dir(cache_dir) / WEIGHTS_FILENAME
  target.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=WEIGHTS_FILENAME + '.', suffix='.part')
  try:
    h = hashlib.sha256()
    with os.fdopen(fd, 'wb') as out, urllib.request.urlopen(url, timeout=60) as response:
      for chunk in iter(lambda: response.read(1 << 20), b''):
        h.update(chunk)
        out.write(chunk)
    digest = h.hexdigest()
    if not digest.startswith(WEIGHTS_SHA256_PREFIX):
      raise InceptionWeightsError(
        f'The file downloaded from {url} has SHA-256 {digest}, which does not start with '
        f'{WEIGHTS_SHA256_PREFIX} as {WEIGHTS_FILENAME} must; it was deleted. Try again, or '
        f'download it by hand and set {ENV_WEIGHTS}.'
      )
    os.replace(tmp, target)
  except BaseException:
    Path(tmp).unlink(missing_ok=True)
    raise
  return target


def load_inception(
  weights_path: str | None = None, *, download: bool = False, cache_dir: str | None = None
) -> FeatureNet:
  """The pytorch-fid FID InceptionV3 as a `FeatureNet` ("FID (Inception)").

  Args:
    weights_path: `pt_inception-2015-12-05-6726825d.pth` (torch zip or legacy format) or an
      `.npz` with the same keys. Default: `$GAN_JAX_INCEPTION_WEIGHTS`, else the file in the
      cache directory.
    download: if the file is not found (and no path was given explicitly), download it from
      `WEIGHTS_URL` into the cache directory. Never downloads otherwise.
    cache_dir: cache directory; default `$GAN_JAX_CACHE_DIR`, else `~/.cache/gan_jax`.

  Returns:
    `FeatureNet(name='inception_v3', label='Inception', weights_sha256=<SHA-256 of the file>,
    feature_dim=2048, num_classes=1008, image_shape=None, apply=...)`; `apply(images)` takes
    float32 `[B, H, W, C]` in [-1, 1], C = 1 or 3, any H and W (resized to 299x299), and
    returns `(pool3 float32 [B, 2048], logits float32 [B, 1008])`. The hash is that of the file
    read, so a `.npz` conversion of the same weights gets a different hash (and its own cached
    reference statistics).

  Raises:
    InceptionWeightsNotFoundError: no file found and download=False; the message lists the
      paths searched and how to get the file.
    InceptionWeightsError: wrong keys/shapes, unreadable file, or a download whose SHA-256 does
      not match.
    UnsafeCheckpointError: the checkpoint's pickle names a disallowed global.
  """
  try:
    path = resolve_weights_path(weights_path, cache_dir=cache_dir)
  except InceptionWeightsNotFoundError:
    if not download or weights_path or os.environ.get(ENV_WEIGHTS):
      raise
    path = download_inception_weights(cache_dir)
  model = build_inception_model(read_inception_state_dict(path))
  return FeatureNet(
    name='inception_v3',
    label='Inception',
    weights_sha256=_sha256(path),
    feature_dim=FEATURE_DIM,
    num_classes=NUM_CLASSES,
    image_shape=None,
    apply=make_apply(model),
  )
