"""Generators and discriminators: shapes, ranges, parameter counts, BatchNorm modes."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from gan_jax import models


@nnx.jit(static_argnames='train')
def _run(module, x, train=True):
  """One compiled call (op-by-op eager dispatch of a conv net is much slower to test)."""
  return module(x, train=train)


def _count(module, kind=nnx.Param):
  return sum(x.size for x in jax.tree.leaves(nnx.state(module, kind)))


def test_mlp_matches_the_tutorial_architecture():
  g = models.MLPGenerator((28, 28, 1), rngs=nnx.Rngs(0))
  d = models.MLPDiscriminator((28, 28, 1), rngs=nnx.Rngs(1))
  # G: 100*256+256 + 256*256+256 + 256*784+784; D: 784*256+256 + 256*256+256 + 256+1.
  assert _count(g) == 293_136
  assert _count(d) == 267_009
  x = _run(g, jax.random.normal(jax.random.PRNGKey(0), (5, 100)))
  assert x.shape == (5, 28, 28, 1) and x.dtype == jnp.float32
  assert float(x.min()) >= -1 and float(x.max()) <= 1
  assert _run(d, x).shape == (5,)


def test_dcgan28_shapes_and_layers():
  g = models.DCGAN28Generator((28, 28, 1), rngs=nnx.Rngs(0))
  d = models.DCGAN28Discriminator((28, 28, 1), rngs=nnx.Rngs(1))
  assert g.fc.kernel.shape == (100, 7 * 7 * 128)
  assert g.up1.kernel.shape[-1] == 64 and g.up2.kernel.shape[-1] == 1
  assert d.conv1.kernel.shape[-1] == 64 and d.conv2.kernel.shape[-1] == 128
  x = _run(g, jax.random.normal(jax.random.PRNGKey(0), (4, 100)))
  assert x.shape == (4, 28, 28, 1)
  assert float(jnp.abs(x).max()) <= 1
  logits = _run(d, x)
  assert logits.shape == (4,) and logits.dtype == jnp.float32


@pytest.mark.parametrize('res,width,first_channels', [(32, 128, 512), (64, 64, 512), (8, 16, 16)])
def test_dcgan_any_power_of_two(res, width, first_channels):
  g = models.DCGANGenerator((res, res, 3), width=width, rngs=nnx.Rngs(0))
  d = models.DCGANDiscriminator((res, res, 3), width=width, rngs=nnx.Rngs(1))
  assert g.c0 == first_channels
  x = _run(g, jnp.ones((2, 100)))
  assert x.shape == (2, res, res, 3)
  assert _run(d, x).shape == (2,)


@pytest.mark.parametrize('res', [7, 28, 48])
def test_dcgan_rejects_non_power_of_two(res):
  with pytest.raises(ValueError, match='power-of-two'):
    models.DCGANGenerator((res, res, 3), rngs=nnx.Rngs(0))


def test_batchnorm_train_updates_statistics_and_eval_uses_them():
  g = models.DCGAN28Generator((28, 28, 1), width=8, rngs=nnx.Rngs(0))
  z = jax.random.normal(jax.random.PRNGKey(1), (16, 100))
  before = jax.tree.map(jnp.copy, nnx.state(g, nnx.BatchStat))
  y_eval = _run(g, z, train=False)
  assert jax.tree.all(jax.tree.map(jnp.array_equal, before, nnx.state(g, nnx.BatchStat)))
  y_train = _run(g, z, train=True)
  after = nnx.state(g, nnx.BatchStat)
  assert not jax.tree.all(jax.tree.map(jnp.array_equal, before, after))
  assert not np.allclose(y_eval, y_train)


def test_build_models_registry():
  cfg = ml_collections.ConfigDict(dict(name='dcgan', latent_dim=64, g_width=16, d_width=16))
  g, d = models.build_models(cfg, (32, 32, 3), seed=0)
  assert _run(g, jnp.zeros((1, 64))).shape == (1, 32, 32, 3)
  g2, _ = models.build_models(cfg, (32, 32, 3), seed=0)
  assert jax.tree.all(
    jax.tree.map(jnp.array_equal, nnx.state(g, nnx.Param), nnx.state(g2, nnx.Param))
  )
  cfg.name = 'stylegan9'
  with pytest.raises(ValueError, match="model.name='stylegan9'.*dcgan28"):
    models.build_models(cfg, (32, 32, 3), seed=0)
