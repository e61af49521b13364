"""The model registry (`gan_jax.models.registry`): each entry's declared constraints match
what its builder accepts, and a model registered from outside the package (a toy, here) is
validated, built, trained and restored through the ordinary path, then unregistered."""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from gan_jax import config as config_lib
from gan_jax import models
from gan_jax.errors import ConfigError
from gan_jax.models import registry


class ToyGenerator(nnx.Module):
  """z [B, latent_dim] -> tanh(z W + b) as [B, H, W, C]: one linear layer."""

  def __init__(self, shape, latent_dim, *, dtype=None, rngs):
    self.shape = tuple(shape)
    self.linear = nnx.Linear(latent_dim, int(np.prod(shape)), dtype=dtype, rngs=rngs)

  def __call__(self, z, *, train=True):
    del train
    return jnp.tanh(self.linear(z)).reshape((z.shape[0], *self.shape))


class ToyDiscriminator(nnx.Module):
  """images [B, H, W, C] -> one logit each: one linear layer."""

  def __init__(self, shape, *, dtype=None, rngs):
    self.linear = nnx.Linear(int(np.prod(shape)), 1, dtype=dtype, rngs=rngs)

  def __call__(self, x, *, train=True):
    del train
    return self.linear(x.reshape((x.shape[0], -1)))[:, 0]


def _build_toy(cfg, shape, rngs, dtype):
  return (
    ToyGenerator(shape, cfg.latent_dim, dtype=dtype, rngs=rngs),
    ToyDiscriminator(shape, dtype=dtype, rngs=rngs),
  )


TOY = registry.Model(
  'toy',
  _build_toy,
  'one linear layer each, 28x28 grayscale only',
  image_size=lambda s: s == 28,
  image_size_need='needs 28 (it is a toy)',
  channels=(1,),
  size_fields=('latent_dim',),
)


@pytest.fixture
def toy():
  """The toy model registered for one test, and unregistered after it even if it fails."""
  models.register(TOY)
  try:
    yield TOY
  finally:
    models.unregister('toy')


def _toy_config(tiny_config):
  c = tiny_config
  c.model.name = 'toy'
  c.model.latent_dim = 8
  return c


def _error(config) -> str:
  with pytest.raises(ConfigError) as info:
    config_lib.validate(config)
  return str(info.value)


def test_a_registered_toy_model_is_validated_by_its_own_constraints(toy, tiny_config):
  c = _toy_config(tiny_config)
  config_lib.validate(c)  # the tiny MNIST config fits it: 28x28x1
  c.data.channels = 3
  assert _error(c) == ('data.channels=3 is invalid: model "toy" makes images of 1 channels.')
  c.data.channels, c.data.image_size = 1, 32
  assert _error(c) == 'data.image_size=32 is invalid: model "toy" needs 28 (it is a toy).'
  c.data.image_size, c.model.pack = 28, 2
  # Refused, and the message offers the entries whose D packs: the two DCGANs, not the toy.
  assert _error(c) == (
    'model.pack=2 is invalid: model "toy" does not support it; use '
    'model.name=dcgan28 or dcgan, or set model.pack=1.'
  )
  c.model.pack, c.model.num_classes = 1, 10
  assert _error(c) == (
    'model.num_classes=10 is invalid: model "toy" has no class '
    'conditioning; use model.name=dcgan28, dcgan, sngan32 or r3gan, or set '
    'model.num_classes=0.'
  )
  with pytest.raises(ValueError, match='model "toy" has no class conditioning'):
    models.build_models(c.model, (28, 28, 1), 0)  # build_models refuses it too


def test_a_toy_model_trains_and_restores_through_the_ordinary_path(toy, tiny_config, tmp_path):
  from gan_jax.training import train  # pylint: disable=g-import-not-at-top
  from gan_jax.training.checkpoint import load_run  # pylint: disable=g-import-not-at-top
  from gan_jax.core.state import create_state  # pylint: disable=g-import-not-at-top

  c = _toy_config(tiny_config)
  workdir = str(tmp_path / 'run')
  state = train.train_and_evaluate(c, workdir)
  assert int(state.step) == c.train.steps
  config, gan, restored = load_run(workdir)
  assert config.model.name == 'toy'
  g = nnx.merge(gan.g_graphdef, restored.g_params, restored.g_batch_stats)
  assert isinstance(g, ToyGenerator)
  # Its parameters are the toy's (one [latent, 784] kernel), trained away from their init.
  assert restored.g_params['linear']['kernel'].shape == (8, 28 * 28)
  _, init = create_state(config)
  assert not np.array_equal(
    init.g_params['linear']['kernel'], restored.g_params['linear']['kernel']
  )
  np.testing.assert_array_equal(
    state.g_params['linear']['kernel'], restored.g_params['linear']['kernel']
  )
  images, _ = gan.generate(
    restored.ema_params, restored.g_batch_stats, jnp.zeros((2, 8)), train=False
  )
  assert images.shape == (2, 28, 28, 1) and float(jnp.max(jnp.abs(images))) <= 1


def test_unregistering_removes_the_model_everywhere(tiny_config):
  models.register(TOY)
  assert 'toy' in models.MODELS
  with pytest.raises(ValueError, match='registered already'):
    models.register(TOY)
  models.unregister('toy')
  c = _toy_config(tiny_config)
  assert _error(c) == (
    "model.name='toy' is invalid: choose one of ['dcgan', 'dcgan28', 'mlp', 'r3gan', 'sngan32']."
  )
  with pytest.raises(ValueError, match="model.name='toy' is not a known model"):
    models.build_models(c.model, (28, 28, 1), 0)


def test_register_refuses_an_unknown_d_option():
  bad = registry.Model('bad', _build_toy, d_options=('pack', 'dropout'))
  with pytest.raises(ValueError, match=r"unknown d_options \['dropout'\]"):
    models.register(bad)
  assert 'bad' not in models.MODELS


def _builds(name: str, size: int, channels: int) -> bool:
  """Whether the builder of `name` accepts (size, size, channels): shapes only, nothing
  allocated."""
  cfg = ml_collections.ConfigDict(dict(name=name, latent_dim=8, g_width=4, d_width=4, hidden=(8,)))
  try:
    nnx.eval_shape(lambda: models.build_models(cfg, (size, size, channels), 0))
  except ValueError:
    return False
  return True


@pytest.mark.parametrize('name', ['mlp', 'dcgan28', 'dcgan', 'sngan32', 'r3gan'])
def test_each_entry_declares_exactly_the_sizes_its_builder_accepts(name):
  """The entry's declared image sizes and channels against its architecture: a size the
  entry accepts builds, a size it refuses fails to build (the builder's own check)."""
  entry = models.MODELS[name]
  for size in (6, 8, 16, 24, 28, 32, 64):
    declared = entry.image_size is None or entry.image_size(size)
    for channels in (1, 3):
      assert _builds(name, size, channels) == (declared and channels in entry.channels), (
        name,
        size,
        channels,
      )


def test_entries_declare_the_options_their_discriminators_take():
  """A declared D option changes D's output (packing halves the logits); the others are
  refused by validate (see test_configs / test_pacgan for the messages)."""
  for name, entry in models.MODELS.items():
    size = 8 if name != 'dcgan28' else 28
    cfg = ml_collections.ConfigDict(
      dict(name=name, latent_dim=8, g_width=4, d_width=4, hidden=(8,), pack=2, minibatch_std=0)
    )
    if 'pack' not in entry.d_options:
      continue

    def logits(cfg=cfg, size=size):
      _, d = models.build_models(cfg, (size, size, 3), 0)
      return d(jnp.zeros((4, size, size, 3)), train=False)

    assert nnx.eval_shape(logits).shape == (2,), name  # shapes only, nothing computed
  assert {n for n, e in models.MODELS.items() if e.d_options} == {'dcgan28', 'dcgan'}
  assert registry.conditional_names() == ['dcgan28', 'dcgan', 'sngan32', 'r3gan']


def test_either():
  assert registry.either(['a']) == 'a'
  assert registry.either(['a', 'b']) == 'a or b'
  assert registry.either(('a', 'b', 'c')) == 'a, b or c'
  assert registry.either(x for x in (1, 3)) == '1 or 3'


def test_model_check_covers_shape_and_conditioning():
  """`Model.check` alone (no validate) refuses what its two parts refuse."""
  c = config_lib.base_config()
  c.model.name, c.data.image_size = 'sngan32', 28
  with pytest.raises(ConfigError, match='model "sngan32" needs 32'):
    registry.check(c)
  c.model.name, c.model.num_classes = 'mlp', 10
  with pytest.raises(ConfigError, match='model "mlp" has no class conditioning'):
    registry.check(c)
  c.model.name = 'dcgan28'
  registry.check(c)  # 28x28, conditional: fine
