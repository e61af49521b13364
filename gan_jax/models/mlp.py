"""MLP GAN for flattened images (the seed tutorials' fully connected GAN).

G: z(100) -> 256 -> 256 -> H*W*C (ReLU, tanh out); D: H*W*C -> 256 -> 256 -> 1 (LeakyReLU
0.2). Architecture of Goodfellow et al. 2014's MNIST experiments, as in the common tutorials.
Both take `dtype`, the computation dtype of their layers: None (float32) or jnp.bfloat16
(mixed precision, `config.dtype`: float32 parameters, bfloat16 layers and output).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx


class MLPGenerator(nnx.Module):
  """Fully connected generator.

  Args:
    image_shape: (H, W, C) of the images produced, e.g. (28, 28, 1).
    latent_dim: size of z (default 100).
    hidden: widths of the hidden layers (default (256, 256)).
    dtype: computation dtype of the layers: None (float32) or jnp.bfloat16.
    rngs: `nnx.Rngs` for parameter initialisation.

  Call: `G(z, train=True)` with z float32 `[B, latent_dim]` returns images `[B, H, W, C]` in
  [-1, 1] (tanh; float32, or `dtype`). `train` is accepted for a uniform interface (no
  batch-dependent layers here).
  """

  def __init__(
    self,
    image_shape: tuple[int, int, int],
    latent_dim: int = 100,
    hidden: tuple[int, ...] = (256, 256),
    *,
    dtype: Any = None,
    rngs: nnx.Rngs,
  ):
    self.image_shape = tuple(image_shape)
    self.latent_dim = latent_dim
    dims = (latent_dim, *hidden)
    self.hidden = nnx.List(
      [nnx.Linear(a, b, dtype=dtype, rngs=rngs) for a, b in zip(dims[:-1], dims[1:])]
    )
    self.out = nnx.Linear(dims[-1], math.prod(self.image_shape), dtype=dtype, rngs=rngs)

  def __call__(self, z: jax.Array, *, train: bool = True) -> jax.Array:
    del train
    x = z
    for layer in self.hidden:
      x = jax.nn.relu(layer(x))
    x = jnp.tanh(self.out(x))
    return x.reshape((z.shape[0], *self.image_shape))


class MLPDiscriminator(nnx.Module):
  """Fully connected discriminator returning one logit per image (no sigmoid).

  Args:
    image_shape: (H, W, C) of the input images.
    hidden: widths of the hidden layers (default (256, 256)).
    dtype: computation dtype of the layers: None (float32) or jnp.bfloat16.
    rngs: `nnx.Rngs` for parameter initialisation.

  Call: `D(x, train=True)` with x float32 `[B, H, W, C]` in [-1, 1] returns logits `[B]`
  (float32, or `dtype`).
  """

  def __init__(
    self,
    image_shape: tuple[int, int, int],
    hidden: tuple[int, ...] = (256, 256),
    *,
    dtype: Any = None,
    rngs: nnx.Rngs,
  ):
    self.image_shape = tuple(image_shape)
    dims = (math.prod(self.image_shape), *hidden)
    self.hidden = nnx.List(
      [nnx.Linear(a, b, dtype=dtype, rngs=rngs) for a, b in zip(dims[:-1], dims[1:])]
    )
    self.out = nnx.Linear(dims[-1], 1, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool = True) -> jax.Array:
    del train
    x = x.reshape((x.shape[0], -1))
    for layer in self.hidden:
      x = jax.nn.leaky_relu(layer(x), 0.2)
    return self.out(x)[:, 0]
