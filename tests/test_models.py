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


@pytest.mark.parametrize(
  'make',
  [
    lambda: models.DCGAN28Discriminator((28, 28, 1), 8, spectral_norm=True, rngs=nnx.Rngs(0)),
    lambda: models.DCGANDiscriminator((16, 16, 3), 8, spectral_norm=True, rngs=nnx.Rngs(0)),
  ],
  ids=['dcgan28', 'dcgan16'],
)
def test_dcgan_discriminators_with_spectral_norm_wrap_every_layer(make):
  d = nnx.eval_shape(make)  # structure and shapes only, no initialisation
  modules = [m for _, m in nnx.iter_modules(d)]
  layers = [m for m in modules if isinstance(m, (nnx.Conv, nnx.Linear))]
  wrapped = [m.layer for m in modules if isinstance(m, models.SpectralNorm)]
  assert layers and len(wrapped) == len(layers)
  assert all(any(w is m for w in wrapped) for m in layers)
  assert all(m.bias is not None for m in layers)  # no BatchNorm after them any more
  assert not any(isinstance(m, nnx.BatchNorm) for m in modules)
  # One u [out] and one sigma per layer, in the non-Param state.
  assert _count(d, nnx.BatchStat) == sum(m.kernel.shape[-1] + 1 for m in wrapped)


def test_dcgan_spectral_norm_forward_modes():
  d = models.DCGANDiscriminator((16, 16, 3), 8, spectral_norm=True, rngs=nnx.Rngs(0))
  x = jax.random.uniform(jax.random.PRNGKey(0), (3, 16, 16, 3), minval=-1, maxval=1)
  before = nnx.to_pure_dict(jax.tree.map(jnp.copy, nnx.state(d, nnx.BatchStat)))

  @nnx.jit
  def eval_then_train(d, x):
    y_eval = d(x, train=False)
    stats_after_eval = nnx.to_pure_dict(nnx.state(d, nnx.BatchStat))
    return y_eval, stats_after_eval, d(x, train=True)

  y_eval, after_eval, y_train = eval_then_train(d, x)
  assert y_eval.shape == (3,) and y_eval.dtype == jnp.float32
  assert jax.tree.all(jax.tree.map(jnp.array_equal, before, after_eval))
  after_train = nnx.to_pure_dict(nnx.state(d, nnx.BatchStat))
  assert not np.array_equal(after_train['first']['u'], before['first']['u'])
  # Both calls start from the same stored u, so they normalise by the same sigma.
  np.testing.assert_allclose(y_train, y_eval, rtol=1e-5, atol=1e-6)


def test_spectral_norm_never_asks_a_tracer_for_its_sharding(monkeypatch):
  """Traced, SpectralNorm stores u, sigma and the normalised kernel without probing the
  tracer's `.sharding` (as `Variable[...] = v` does): in JAX 0.10 each probe builds an error
  message by walking the whole trace so far, which made tracing SNGAN's step quadratic."""
  d = models.DCGANDiscriminator((16, 16, 3), 8, spectral_norm=True, rngs=nnx.Rngs(0))
  x = jnp.zeros((2, 16, 16, 3))
  probes = []
  original = jax.core.Tracer.sharding

  def counting(tracer):
    probes.append(type(tracer).__name__)
    return original.fget(tracer)

  monkeypatch.setattr(jax.core.Tracer, 'sharding', property(counting))
  before = nnx.state(d, nnx.BatchStat)['first']['u'][...]
  nnx.jit(lambda d, x: d(x, train=True))(d, x)
  assert probes == []
  assert not np.array_equal(nnx.state(d, nnx.BatchStat)['first']['u'][...], before)


def test_spectral_norm_config_through_state_and_train_step():
  from gan_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from gan_jax.core.losses import get_loss  # pylint: disable=g-import-not-at-top
  from gan_jax.core.state import create_state  # pylint: disable=g-import-not-at-top
  from gan_jax.core.train_step import make_train_step  # pylint: disable=g-import-not-at-top

  config = config_lib.base_config()
  with config.unlocked():
    config.model.spectral_norm = True
    config.model.g_width = 8
    config.model.d_width = 8
  gan, state = create_state(config)
  d_stats = state.d_batch_stats
  assert set(d_stats) == {'conv1', 'conv2', 'fc'}
  assert all(set(v) == {'u', 'sigma'} for v in d_stats.values())
  step = jax.jit(make_train_step(gan, get_loss('non_saturating')))
  real = jax.random.uniform(jax.random.PRNGKey(0), (8, 28, 28, 1), minval=-1, maxval=1)
  new_state, metrics = step(state, {'image': real})
  assert all(np.isfinite(v) for v in metrics.values())
  new_stats = new_state.d_batch_stats
  for name in d_stats:  # sigma estimated by the training-mode D calls
    assert float(new_stats[name]['sigma']) != 1.0
  for name in ('conv1', 'conv2'):  # (fc has one output: its u is just a sign)
    assert not np.array_equal(new_stats[name]['u'], d_stats[name]['u'])
