"""The R3GAN architecture (gan_jax/models/r3gan.py): shapes and ranges for 28, 32 and 64 px,
identity residual blocks at initialisation, grouped-convolution parameter count and
implementations, the resampling filters against numpy, the registry entry and its checks, and
a tiny training run that resumes bit for bit."""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from conftest import load_experiment
from gan_jax import config as config_lib
from gan_jax import models
from gan_jax.errors import ConfigError
from gan_jax.models import r3gan


def _model_cfg(**kw):
  base = dict(name='r3gan', latent_dim=8, g_width=8, d_width=8, num_classes=0,
              g_conditioning='concat', d_conditioning='projection', label_embed_dim=0)
  return ml_collections.ConfigDict({**base, **kw})


@pytest.mark.parametrize('size,channels,classes', [(28, 1, 0), (32, 3, 10), (64, 3, 0), (28, 1, 10)])
def test_shapes_and_ranges(size, channels, classes):
  g, d = models.build_models(_model_cfg(num_classes=classes), (size, size, channels), 0)
  z = jax.random.normal(jax.random.key(1), (3, 8))
  y = jnp.array([0, 1, 9]) if classes else None
  images = g(z, y, train=False) if classes else g(z, train=False)
  assert images.shape == (3, size, size, channels) and images.dtype == jnp.float32
  assert float(jnp.max(jnp.abs(images))) <= 1 and float(jnp.std(images)) > 0.05
  logits = d(images, y) if classes else d(images)
  assert logits.shape == (3,) and bool(jnp.all(jnp.isfinite(logits)))
  # No BatchNorm, no spectral norm: nothing but parameters.
  for model in (g, d):
    assert not jax.tree.leaves(nnx.split(model, nnx.Param, ...)[2])
  if classes:  # the label changes the image and the logit
    y2 = jnp.array([5, 5, 5])
    assert not np.allclose(g(z, y2), images) and not np.allclose(d(images, y2), logits)


def test_stage_layout_and_refused_sizes():
  assert r3gan.stage_layout(28) == (7, 3)
  assert r3gan.stage_layout(32) == (4, 4)
  assert r3gan.stage_layout(64) == (4, 5)
  assert r3gan.stage_layout(14) == (7, 2)
  for bad in (4, 7, 6, 24, 48, 30):
    with pytest.raises(ValueError, match='4 \\* 2\\^k or 7 \\* 2\\^k'):
      r3gan.stage_layout(bad)


def test_every_residual_block_is_the_identity_at_init_and_not_after_a_change():
  block = r3gan.ResidualBlock(8, expansion=2, group_size=4, num_blocks=3, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(2), (2, 7, 7, 8))
  np.testing.assert_array_equal(np.asarray(block(x)), np.asarray(x))
  assert not np.any(np.asarray(block.project.kernel[...]))  # the zero-initialised last 1x1
  # The branch itself is not trivial: with a non-zero last layer the block changes x.
  block.project.kernel[...] = jnp.ones_like(block.project.kernel[...]) * 0.1
  assert not np.allclose(np.asarray(block(x)), np.asarray(x))
  # The whole generator: each block of each stage is the identity at init.
  g, _ = models.build_models(_model_cfg(stage_blocks=(2,)), (28, 28, 1), 0)
  h = jax.random.normal(jax.random.key(3), (2, 14, 14, 8))
  for block in g.stages[1]:
    np.testing.assert_array_equal(np.asarray(block(h)), np.asarray(h))


def test_branch_initialisation_follows_the_variance_scaling_rule():
  """First two layers of a branch: N(0, (gain L^-1/4)^2 / fan_in), gain = sqrt(2 / 1.04)."""
  blocks = 16
  block = r3gan.ResidualBlock(64, expansion=2, group_size=16, num_blocks=blocks, rngs=nnx.Rngs(0))
  gain = math.sqrt(2 / (1 + 0.2**2)) * blocks**-0.25
  expand, spatial = np.asarray(block.expand.kernel[...]), np.asarray(block.spatial.kernel[...])
  assert expand.shape == (1, 1, 64, 128) and spatial.shape == (3, 3, 16, 128)
  np.testing.assert_allclose(expand.std(), gain / math.sqrt(64), rtol=0.03)
  np.testing.assert_allclose(spatial.std(), gain / math.sqrt(9 * 16), rtol=0.03)
  assert not np.any(np.asarray(block.expand.bias[...]))


def _count(module) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def test_parameter_count_is_the_hand_computed_formula():
  """G for 28 px, widths (8, 4, 4), blocks (1, 0, 1), expansion 2, group size 4, latent 5,
  C = 1, unconditional, counted by hand:
    basis 7*7*8 + modulation 5*8                                  = 392 + 40   = 432
    block at width 8: 1x1 8->16 + bias 16; grouped 3x3 16 ch in 4 groups: 3*3*(16/4)*16 + 16;
                      1x1 16->8 (no bias)       = 128+16 + 576+16 + 128      = 864
    transition 1x1 8->4 (no bias)                                              = 32
    (no transition 4->4)
    block at width 4: 1x1 4->8 + bias 8; grouped 3x3 8 ch in 2 groups: 3*3*(8/2)*8 + 8;
                      1x1 8->4                  = 40 + 296 + 32                = 368
    aggregate 1x1 4->1                                                         = 4
  """
  g = r3gan.R3GANGenerator(
    (28, 28, 1), 5, (8, 4, 4), (1, 0, 1), expansion=2, group_size=4, rngs=nnx.Rngs(0)
  )
  assert _count(g) == 432 + 864 + 32 + 368 + 4
  # The grouped 3x3 alone: kernel [3, 3, C/G, C] + bias, a quarter of a dense one's weights.
  conv = r3gan.GroupedConv3x3(16, 4, kernel_init=r3gan.msr_init(), rngs=nnx.Rngs(0))
  assert _count(conv) == 3 * 3 * 4 * 16 + 16


def test_grouped_convolution_implementations_agree_with_a_numpy_reference():
  conv = r3gan.GroupedConv3x3(8, 4, kernel_init=r3gan.msr_init(), rngs=nnx.Rngs(0))
  conv.bias[...] = jnp.arange(8.0)
  x = jax.random.normal(jax.random.key(4), (2, 5, 6, 8))
  k, xs = np.asarray(conv.kernel[...]), np.pad(np.asarray(x), ((0, 0), (1, 1), (1, 1), (0, 0)))
  ref = np.zeros((2, 5, 6, 8)) + np.arange(8.0)
  for o in range(8):
    g = o // 2  # output channel o belongs to group g, which reads input channels 2g, 2g + 1
    for c in range(2):
      for i in range(3):
        for j in range(3):
          ref[..., o] += xs[:, i : i + 5, j : j + 6, 2 * g + c] * k[i, j, c, o]
  for impl in ('native', 'dense'):
    conv.impl = impl
    np.testing.assert_allclose(np.asarray(conv(x)), ref, rtol=1e-5, atol=1e-5)


def _upfirdn_reference(x: np.ndarray, up: bool) -> np.ndarray:
  """Their upfirdn2d along one axis (axis 0): zero insertion (up) / stride (down), zero
  padding and the [1, 3, 3, 1] filter (x 2 / 8 up, / 8 down), by np.convolve."""
  f = np.array([1.0, 3.0, 3.0, 1.0]) / 8
  out = []
  for col in x.T:
    if up:
      u = np.zeros(2 * len(col))
      u[::2] = col
      out.append(np.convolve(np.pad(u, (2, 1)), 2 * f, mode='valid'))
    else:
      out.append(np.convolve(np.pad(col, (1, 1)), f, mode='valid')[::2])
  return np.array(out).T


def test_resampling_matches_upfirdn_filters():
  x = np.asarray(jax.random.normal(jax.random.key(5), (1, 6, 8, 2)))
  up, down = np.asarray(r3gan.upsample2x(jnp.asarray(x))), np.asarray(r3gan.downsample2x(x))
  assert up.shape == (1, 12, 16, 2) and down.shape == (1, 3, 4, 2)
  for c in range(2):
    ref_up = _upfirdn_reference(_upfirdn_reference(x[0, :, :, c], True).T, True).T
    ref_down = _upfirdn_reference(_upfirdn_reference(x[0, :, :, c], False).T, False).T
    np.testing.assert_allclose(up[0, :, :, c], ref_up, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(down[0, :, :, c], ref_down, rtol=1e-5, atol=1e-6)
  # A constant image stays constant away from the zero-padded border.
  ones = jnp.ones((1, 8, 8, 1))
  np.testing.assert_allclose(np.asarray(r3gan.upsample2x(ones))[0, 1:-1, 1:-1], 1.0)
  np.testing.assert_allclose(np.asarray(r3gan.downsample2x(ones))[0, 1:-1, 1:-1], 1.0)


def _error(config) -> str:
  with pytest.raises(ConfigError) as info:
    config_lib.validate(config)
  return str(info.value)


def test_registry_accepts_the_config_and_refuses_bad_fields_in_one_line(tfds_dir):
  c = load_experiment('mnist_r3gan')
  c.data.data_dir = tfds_dir
  config_lib.validate(c)
  entry = models.MODELS['r3gan']
  assert entry.conditional and entry.d_options == () and entry.image_size(64)
  cases = [
    (('data', 'image_size', 24), 'data.image_size=24 is invalid: model "r3gan" needs 4 * 2^k'),
    (('model', 'stage_widths', (32, 16)), 'model.stage_widths=(32, 16) is invalid: give one'),
    (('model', 'stage_blocks', (1, -1, 1)), 'model.stage_blocks=(1, -1, 1) is invalid: each'),
    (('model', 'group_size', 5), 'model.group_size=5 is invalid: it must divide'),
    (('model', 'expansion', 0), 'model.expansion=0 is invalid: must be a positive integer'),
    (('model', 'pack', 2), 'model.pack=2 is invalid: model "r3gan" does not support it'),
  ]
  for (section, field, value), message in cases:
    bad = load_experiment('mnist_r3gan')
    bad.data.data_dir = tfds_dir
    bad[section][field] = value
    error = _error(bad)
    assert error.startswith(message) and '\n' not in error, error
  bad = load_experiment('mnist_r3gan')
  bad.data.data_dir = tfds_dir
  bad.model.num_classes, bad.model.g_conditioning = 10, 'cbn'
  assert "model.g_conditioning='cbn' is invalid: model \"r3gan\" has no normalisation" in _error(
    bad
  )
  bad.model.g_conditioning = 'concat'
  config_lib.validate(bad)  # conditional with concat: fine


def test_stage_config_defaults_and_mirroring():
  s = r3gan.stage_config(_model_cfg(g_width=16, d_width=8), 32)
  assert (s.g_widths, s.d_widths, s.g_blocks) == ((16,) * 4, (8,) * 4, (1,) * 4)
  s = r3gan.stage_config(_model_cfg(stage_widths=(32, 16, 8), stage_blocks=(2, 1, 0)), 28)
  assert (s.g_widths, s.d_widths) == ((32, 16, 8), (8, 16, 32))
  assert (s.g_blocks, s.d_blocks) == ((2, 1, 0), (0, 1, 2))


def test_tiny_training_is_finite_and_resumes_bit_for_bit(tfds_dir, tmp_path):
  from gan_jax.training import train  # pylint: disable=g-import-not-at-top

  c = load_experiment('mnist_r3gan', 'tiny')
  c.data.data_dir = tfds_dir
  c.train.steps = 3
  c.sample_every = c.log_every = 3
  c.checkpoint_every = 2
  full = train.train_and_evaluate(c, str(tmp_path / 'full'))
  leaves = jax.tree.leaves(jax.device_get((full.g_params, full.d_params)))
  assert all(np.isfinite(x).all() for x in leaves)
  c.train.steps = 2
  resumed_dir = str(tmp_path / 'resumed')
  train.train_and_evaluate(c, resumed_dir)
  c.train.steps = 3
  resumed = train.train_and_evaluate(c, resumed_dir)
  assert sorted(os.listdir(os.path.join(resumed_dir, 'checkpoints'))) == ['2', '3']
  a, b = jax.device_get(full), jax.device_get(resumed)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
