"""Mixed precision (`config.dtype`): float32 is today's program bit for bit; bfloat16 computes
G and D in bfloat16 while the state stays float32 and G/D hand float32 to the losses."""

from __future__ import annotations

import re
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gan_jax import config as config_lib
from gan_jax.models.layers import ConvTranspose
from gan_jax.core.losses import get_loss
from gan_jax.core.state import create_state
from gan_jax.core.train_step import make_train_step

STEPS = 5  # real MNIST steps of the tiny config (batch 16) per dtype
# Observed on CPU (jax 0.10.2), seed 0, tiny MNIST DCGAN (d_loss ~1.38, g_loss ~0.69):
# |bf16 - fp32| <= 1.0e-5 for d_loss and <= 1.4e-4 for g_loss over these 5 steps (<= 7.3e-5
# and 4.5e-4 over 20 steps). The tolerance leaves more than 10x room.
LOSS_ATOL = 2e-3

# The layers' matrix products: dense layers and convolutions, whose outputs have a batch axis
# (rank >= 2; the spectral-norm power iteration's float32 matrix-vector products have rank 1).
_MATMUL = re.compile(r':(\w+)\[\d+(?:,\d+)+\] = (?:dot_general|conv_general_dilated)\b')
# XLA CPU options that halve the compile time of these small steps (LLVM's optimisation
# level; the HLO, and so every bfloat16 rounding, is the same).
_FAST_COMPILE = {'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True}


def _without_dtype(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The config as an older run's config.json gives it: no `dtype` field."""
  d = config.to_dict()
  del d['dtype']
  return ml_collections.ConfigDict(d)


def _float_dtypes(tree) -> set[str]:
  return {str(x.dtype) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)}


def _jaxprs(gan, state, train: bool, batch: int = 4) -> tuple[str, str]:
  """The jaxpr texts of `gan.generate` and `gan.discriminate` (EMA G, as sampling uses)."""
  z = gan.sample_latents(jax.random.PRNGKey(0), batch)
  x = jnp.zeros((batch, *gan.image_shape), jnp.float32)
  g = jax.make_jaxpr(lambda z: gan.generate(state.ema_params, state.g_batch_stats, z, train=train))
  d = jax.make_jaxpr(
    lambda x: gan.discriminate(state.d_params, state.d_batch_stats, x, train=train)
  )
  return str(g(z)), str(d(x))


def _matmul_dtypes(jaxpr: str) -> list[str]:
  """Output dtypes of every dot_general / convolution in a jaxpr's text."""
  return [m.group(1) for m in _MATMUL.finditer(jaxpr)]


def _lowered_step(config, gan, state, images: np.ndarray):
  """The train step lowered for `state` and a batch like `images`."""
  fn = make_train_step(gan, get_loss(config.train.loss), ema_decay=config.train.ema_decay)
  return jax.jit(fn).lower(state, {'image': images})


def _run(config, images: np.ndarray, steps: int) -> types.SimpleNamespace:
  """`steps` train steps on consecutive batches of `images`: the GAN, the initial state,
  the compiled step and its StableHLO, the state after the first and after the last step,
  and the metrics of every step."""
  gan, state = create_state(config)
  b = config.train.batch_size
  lowered = _lowered_step(config, gan, state, images[:b])
  run = types.SimpleNamespace(gan=gan, init=state, hlo=lowered.as_text(), history=[])
  run.step = lowered.compile(_FAST_COMPILE)
  for i in range(steps):
    state, metrics = run.step(state, {'image': images[i * b : (i + 1) * b]})
    run.history.append(jax.device_get(metrics))
    run.first = run.first if i else state
  run.final = state
  return run


@pytest.fixture(scope='module')
def runs(tfds_dir):
  """The tiny MNIST DCGAN on real MNIST: without the field, with 'float32', with 'bfloat16'."""
  from conftest import load_experiment  # pylint: disable=g-import-not-at-top
  from gan_jax.data.pipeline import load_images  # pylint: disable=g-import-not-at-top

  config = load_experiment('mnist_dcgan', 'tiny')
  config.data.data_dir = tfds_dir
  n = STEPS * config.train.batch_size
  ds = load_images('mnist', f'train[:{n}]', data_dir=tfds_dir, image_size=28, channels=1)
  images = next(ds.batch(n).as_numpy_iterator())['image']
  out = {'images': images}
  for dtype in ('float32', 'bfloat16'):
    c = config.copy_and_resolve_references()
    c.dtype = dtype
    out[dtype] = _run(c, images, STEPS)
  # The config as an older run's config.json gives it (no field): its program is compared
  # with the float32 one, and run through the same executable (saving a compile).
  old = _without_dtype(config)
  gan, state = create_state(old)
  b = config.train.batch_size
  out['old'] = types.SimpleNamespace(
    init=state, hlo=_lowered_step(old, gan, state, images[:b]).as_text()
  )
  return out


def _leaves_equal(a, b) -> bool:
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(la) == len(lb) and all(
    np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb)
  )


def test_float32_is_bitwise_the_config_without_the_field(runs):
  old, f32 = runs['old'], runs['float32']
  assert config_lib.base_config().dtype == 'float32'
  assert _leaves_equal(f32.init, old.init)  # the same state ...
  assert f32.hlo == old.hlo  # ... and the same train step program (StableHLO text) ...
  first, metrics = f32.step(old.init, {'image': runs['images'][:16]})
  assert _leaves_equal(first, f32.first)  # ... give the same bits after a step.
  assert jax.device_get(metrics) == f32.history[0]


def test_bfloat16_state_stays_float32_and_matches_float32_at_init(runs):
  gan, init_bf16, state_bf16 = runs['bfloat16'].gan, runs['bfloat16'].init, runs['bfloat16'].final
  init_f32, state_f32 = runs['float32'].init, runs['float32'].final
  # Same structure and dtypes as a float32 run (so checkpoints are interchangeable), and the
  # same initial values: the dtype changes only how G and D compute.
  assert jax.tree.structure(state_bf16) == jax.tree.structure(state_f32)
  for tree in (
    state_bf16.g_params,
    state_bf16.d_params,
    state_bf16.ema_params,
    state_bf16.g_opt_state,
    state_bf16.d_opt_state,
    state_bf16.g_batch_stats,
  ):
    assert _float_dtypes(tree) == {'float32'}
  assert _float_dtypes(state_bf16) == {'float32'}
  assert _leaves_equal(init_bf16, init_f32)
  # G's images and D's logits are float32, in training and in evaluation mode.
  s = state_bf16
  z = gan.sample_latents(jax.random.PRNGKey(0), 4)
  x = jnp.zeros((4, *gan.image_shape), jnp.float32)
  for train in (True, False):
    images, g_stats = jax.eval_shape(
      lambda z, t=train: gan.generate(s.ema_params, s.g_batch_stats, z, train=t), z
    )
    logits, _ = jax.eval_shape(
      lambda x, t=train: gan.discriminate(s.d_params, s.d_batch_stats, x, train=t), x
    )
    assert images.dtype == jnp.float32 and images.shape == (4, 28, 28, 1)
    assert logits.dtype == jnp.float32 and logits.shape == (4,)
    assert _float_dtypes(g_stats) == {'float32'}


def test_bfloat16_layers_compute_in_bfloat16_and_float32_ones_do_not(runs):
  for dtype, want in (('bfloat16', 'bf16'), ('float32', 'f32')):
    gan, state = runs[dtype].gan, runs[dtype].final
    for train in (True, False):
      g_jaxpr, d_jaxpr = _jaxprs(gan, state, train)
      # dcgan28: G is a dense layer and two transposed convolutions, D two convolutions and
      # a dense layer; every one of them in the run's dtype. On CPU the first transposed
      # convolution (to w > 1 channels) runs as 2 x 2 phase convolutions
      # (gan_jax.models.layers.ConvTranspose), the second (to 1 channel) as one.
      subpixel = ConvTranspose.impl == 'subpixel' or (
        ConvTranspose.impl == 'auto' and jax.default_backend() == 'cpu'
      )
      g_ops = 1 + (4 if subpixel else 1) + (4 if ConvTranspose.impl == 'subpixel' else 1)
      assert _matmul_dtypes(g_jaxpr) == [want] * g_ops, (dtype, train, g_jaxpr)
      assert _matmul_dtypes(d_jaxpr) == [want] * 3, (dtype, train, d_jaxpr)
      if dtype == 'float32':
        assert 'bf16' not in g_jaxpr + d_jaxpr


def test_bfloat16_trains_on_mnist_close_to_float32(runs):
  state_bf16, hist_bf16 = runs['bfloat16'].final, runs['bfloat16'].history
  hist_f32 = runs['float32'].history
  assert int(state_bf16.step) == STEPS
  for m16, m32 in zip(hist_bf16, hist_f32):
    assert all(np.isfinite(v) and v.dtype == np.float32 for v in m16.values()), m16
    for key in ('d_loss', 'g_loss'):
      assert abs(m16[key] - m32[key]) < LOSS_ATOL, (key, m16[key], m32[key])
  # Not bit-identical: bfloat16 really changes the computation.
  assert any(m16['g_loss'] != m32['g_loss'] for m16, m32 in zip(hist_bf16, hist_f32))


@pytest.mark.parametrize(
  'name,size,channels,options',
  [
    ('mlp', 28, 1, {}),
    ('dcgan', 32, 3, {}),
    ('sngan32', 32, 3, {}),
    ('dcgan28', 28, 1, {'spectral_norm': True, 'pack': 2, 'minibatch_std': 4}),
  ],
)
def test_every_model_family_takes_a_bfloat16_step(name, size, channels, options):
  # (The plain dcgan28 is the MNIST model of the tests above.)
  c = config_lib.base_config()
  c.dtype = 'bfloat16'
  c.model.name = name
  c.model.g_width = c.model.d_width = 8
  c.model.hidden = (32, 32)
  c.data.image_size, c.data.channels = size, channels
  c.train.batch_size = 8
  for k, v in options.items():
    c.model[k] = v
  config_lib.validate(c)
  gan, state = create_state(c)
  for train in (True, False):
    for jaxpr in _jaxprs(gan, state, train, batch=8):
      ops = _matmul_dtypes(jaxpr)
      assert ops and set(ops) == {'bf16'}, (train, jaxpr)
  images = np.random.default_rng(0).uniform(-1, 1, (8, size, size, channels)).astype(np.float32)
  step = _lowered_step(c, gan, state, images).compile(_FAST_COMPILE)
  new, metrics = step(state, {'image': images})
  metrics = jax.device_get(metrics)
  assert all(v.dtype == np.float32 and np.isfinite(v) for v in metrics.values()), metrics
  assert _float_dtypes(new) == {'float32'}
  assert jax.tree.structure(new) == jax.tree.structure(state)


def test_bfloat16_batch_norm_normalises_with_float32_statistics():
  from flax import nnx  # pylint: disable=g-import-not-at-top

  from gan_jax.models.sngan import batch_norm  # pylint: disable=g-import-not-at-top

  bn = batch_norm(2, nnx.Rngs(0), jnp.bfloat16)
  x = jnp.ones((4, 2), jnp.bfloat16)
  y = bn(x, use_running_average=False)  # batch statistics, computed in float32
  assert y.dtype == jnp.bfloat16
  assert bn.mean[...].dtype == bn.var[...].dtype == jnp.float32
  assert bn.scale[...].dtype == jnp.float32
  # A running mean that bfloat16 cannot hold (1 + 2^-10 rounds to 1): evaluation uses it
  # in float32, so x = 1 normalises to -2^-10, not to 0 as with nnx's default promotion.
  bn.mean[...] = jnp.full((2,), 1 + 2.0**-10, jnp.float32)
  bn.var[...] = jnp.ones((2,), jnp.float32)
  y = bn(x, use_running_average=True)
  assert y.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(y, np.float32), -(2.0**-10), rtol=1e-2)


@pytest.mark.parametrize('value', ['float16', 'bf16', '', 'Float32'])
def test_a_bad_dtype_is_a_one_line_config_error(value):
  c = config_lib.base_config()
  c.dtype = value
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(c)
  msg = str(e.value)
  assert msg.startswith(f'dtype={value!r} is invalid') and '\n' not in msg
  assert "'float32'" in msg and "'bfloat16'" in msg


def test_an_older_config_without_dtype_is_valid():
  c = _without_dtype(config_lib.base_config())
  config_lib.validate(c)
  for ok in ('float32', 'bfloat16'):
    d = config_lib.base_config()
    d.dtype = ok
    config_lib.validate(d)
