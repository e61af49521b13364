"""CycleGAN's ResNet generator (Zhu et al. 2017, appendix 7.2; after Johnson et al. 2016).

"Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks" (Zhu, Park,
Isola, Efros, ICCV 2017), and their reference code (junyanz/pytorch-CycleGAN-and-pix2pix,
`ResnetGenerator`). In the paper's notation, for `num_blocks` = n and `width` = k = 64:

    c7s1-k, d2k, d4k, R4k x n, u2k, uk, c7s1-C_out

* c7s1-k: reflection padding 3, 7x7 convolution with k filters, stride 1, instance norm,
  ReLU.
* dk: 3x3 convolution with k filters, stride 2 ('SAME' zero padding: H -> H / 2), instance
  norm, ReLU.
* Rk: a residual block, x + [reflect-pad 1, 3x3 conv k, instance norm, ReLU, reflect-pad 1,
  3x3 conv k, instance norm](x).
* uk: 3x3 transposed convolution with k filters, stride 2 (H -> 2 H), instance norm, ReLU.
* c7s1-C_out: reflection padding 3, 7x7 convolution to the output channels, then tanh (no
  norm).

The paper uses n = 6 blocks at 128x128 and n = 9 at 256x256; at 28 or 32 px a few blocks of
a narrower network suffice (`gan_jax.translation.cyclegan`). The image side must be a
multiple of 4 (two halvings and two doublings return the input size) and at least 8 (the
reflect-padded residual blocks need a bottleneck of at least 2x2): 28 -> 14 -> 7 -> 14 -> 28.

Instance norm (`gan_jax.models.layers.instance_norm`) has no parameters and no running
statistics, so the module holds only `nnx.Param`s and behaves the same in training and
evaluation. Convolutions followed by a norm have no bias (the norm removes it); weights start
from N(0, 0.02) as in the paper (use `gan_jax.models.unet.init_fast`). Images are float32
`[B, H, W, C]` in [-1, 1].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from gan_jax.models.layers import Conv, ConvTranspose, instance_norm

_INIT = nnx.initializers.normal(0.02)


def _reflect(x: jax.Array, pad: int) -> jax.Array:
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode='reflect')


def check_resnet_size(image_size: int) -> int:
  """Returns `image_size` if the ResNet generator accepts it (a multiple of 4, >= 8).

  Raises:
    ValueError: otherwise, in one line saying which sizes work.
  """
  if not isinstance(image_size, int) or image_size < 8 or image_size % 4:
    raise ValueError(
      f'ResnetGenerator needs square images whose side is a multiple of 4 and at least 8 '
      f'(e.g. 28 or 32), got size {image_size!r}.'
    )
  return image_size


class ResnetGenerator(nnx.Module):
  """CycleGAN's ResNet generator (see the module docstring for the layers).

  Args:
    image_size: H = W of input and output images; a multiple of 4, >= 8.
    in_channels: channels of the input image.
    out_channels: channels of the output image.
    width: k, the channels of the first layer (64 in the paper); the bottleneck and the
      residual blocks have 4 k.
    num_blocks: n, the residual blocks at the bottleneck (6 at 128 px, 9 at 256 px in the
      paper), >= 0.
    rngs: `nnx.Rngs` for initialisation.

  Call: `G(x)`, x float32 `[B, H, H, in_channels]` in [-1, 1] -> float32 `[B, H, H,
  out_channels]` in [-1, 1] (tanh). Deterministic (no dropout, no running statistics).

  Raises:
    ValueError: for an image size that is not a multiple of 4 or below 8, width < 1 or
      num_blocks < 0; at call time for inputs of another shape.
  """

  def __init__(
    self,
    image_size: int,
    in_channels: int,
    out_channels: int,
    *,
    width: int = 64,
    num_blocks: int = 6,
    rngs: nnx.Rngs,
  ):
    check_resnet_size(image_size)
    if width < 1 or num_blocks < 0:
      raise ValueError(
        f'ResnetGenerator needs width >= 1 and num_blocks >= 0, got {width}, {num_blocks}.'
      )
    self.image_size = image_size
    self.in_channels = in_channels
    self.out_channels = out_channels
    self.num_blocks = int(num_blocks)
    k = width
    conv = dict(kernel_init=_INIT, rngs=rngs)
    self.stem = Conv(in_channels, k, (7, 7), padding='VALID', use_bias=False, **conv)
    self.downs = nnx.List(
      [
        Conv(k, 2 * k, (3, 3), (2, 2), padding='SAME', use_bias=False, **conv),
        Conv(2 * k, 4 * k, (3, 3), (2, 2), padding='SAME', use_bias=False, **conv),
      ]
    )
    blocks = []
    for _ in range(num_blocks):
      blocks.append(
        nnx.List(
          [
            Conv(4 * k, 4 * k, (3, 3), padding='VALID', use_bias=False, **conv),
            Conv(4 * k, 4 * k, (3, 3), padding='VALID', use_bias=False, **conv),
          ]
        )
      )
    self.blocks = nnx.List(blocks)
    self.ups = nnx.List(
      [
        ConvTranspose(4 * k, 2 * k, (3, 3), (2, 2), padding='SAME', use_bias=False, **conv),
        ConvTranspose(2 * k, k, (3, 3), (2, 2), padding='SAME', use_bias=False, **conv),
      ]
    )
    self.head = Conv(k, out_channels, (7, 7), padding='VALID', use_bias=True, **conv)

  def __call__(self, x: jax.Array) -> jax.Array:
    s, c = self.image_size, self.in_channels
    if x.ndim != 4 or x.shape[1:] != (s, s, c):
      raise ValueError(
        f'ResnetGenerator takes inputs [B, {s}, {s}, {c}], got shape {tuple(x.shape)}.'
      )
    h = jax.nn.relu(instance_norm(self.stem(_reflect(x, 3))))
    for down in self.downs:
      h = jax.nn.relu(instance_norm(down(h)))
    for conv1, conv2 in self.blocks:
      r = jax.nn.relu(instance_norm(conv1(_reflect(h, 1))))
      h = h + instance_norm(conv2(_reflect(r, 1)))
    for up in self.ups:
      h = jax.nn.relu(instance_norm(up(h)))
    return jnp.tanh(self.head(_reflect(h, 3)))
