"""The jitted, sharded train step: determinism, compile-once, n_critic, EMA, multi-device."""

import json
import textwrap

import chex
import jax
import numpy as np
import optax
import pytest

from gan_jax import config as config_lib
from gan_jax.core.losses import get_loss
from gan_jax.core.state import create_state
from gan_jax.core.sharding import batch_sharding, check_batch_size, make_mesh, replicate
from gan_jax.core.train_step import (
  Stabilizers,
  jit_train_step,
  make_train_step,
  make_train_step_from_config,
)

from conftest import run_python


def _config(model='dcgan28', width=8, **train):
  c = config_lib.base_config()
  c.model.name = model
  c.model.g_width = width
  c.model.d_width = width
  for k, v in train.items():
    c.train[k] = v
  return c


def _batch(n_critic, batch_size, seed=0, shape=(28, 28, 1)):
  rng = np.random.default_rng(seed)
  return {'image': rng.uniform(-1, 1, (n_critic, batch_size, *shape)).astype(np.float32)}


def _run(config, steps, batch_size=8, traced=None):
  gan, state = create_state(config)
  mesh = make_mesh()
  fn = make_train_step(
    gan,
    get_loss(config.train.loss),
    n_critic=config.train.n_critic,
    ema_decay=config.train.ema_decay,
  )
  if traced is not None:
    fn = traced(fn)
  step = jit_train_step(fn, mesh)
  state = replicate(state, mesh)
  history = []
  for i in range(steps):
    batch = jax.device_put(_batch(config.train.n_critic, batch_size, seed=i), batch_sharding(mesh))
    state, metrics = step(state, batch)
    history.append(jax.device_get(metrics))
  return gan, state, history


def _leaves_equal(a, b):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(la) == len(lb)
  return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


def test_same_seed_gives_bitwise_identical_state_and_different_seed_does_not():
  c = _config()
  _, s1, h1 = _run(c, 3)
  _, s2, h2 = _run(c, 3)
  assert _leaves_equal(s1, s2)
  assert h1 == h2
  c.seed = 1
  _, s3, _ = _run(c, 3)
  assert not np.array_equal(
    np.asarray(s1.g_params['fc']['kernel']), np.asarray(s3.g_params['fc']['kernel'])
  )


def test_step_compiles_once_and_reports_sane_metrics():
  _, state, history = _run(_config(), 4, traced=lambda f: chex.assert_max_traces(f, n=1))
  assert int(state.step) == 4
  for m in history:
    assert set(m) == {'d_loss', 'g_loss', 'd_real', 'd_fake', 'd_grad_norm', 'g_grad_norm'}
    assert all(np.isfinite(v) for v in m.values())
    assert 0 <= m['d_real'] <= 1 and 0 <= m['d_fake'] <= 1
    assert m['d_grad_norm'] > 0 and m['g_grad_norm'] > 0
  # At initialisation D outputs ~0.5: the loss is close to 2 log 2.
  assert abs(history[0]['d_loss'] - 2 * np.log(2)) < 0.1


def test_n_critic_updates_d_n_times_per_g_update():
  c = _config(n_critic=3)
  _, state, _ = _run(c, 2)
  d_adam = [
    s
    for s in jax.tree.leaves(
      state.d_opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState)
    )
    if isinstance(s, optax.ScaleByAdamState)
  ][0]
  g_adam = [
    s
    for s in jax.tree.leaves(
      state.g_opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState)
    )
    if isinstance(s, optax.ScaleByAdamState)
  ][0]
  assert int(d_adam.count) == 6 and int(g_adam.count) == 2


def test_n_critic_batch_shape_is_checked():
  c = _config(n_critic=2)
  gan, state = create_state(c)
  fn = make_train_step(gan, get_loss('non_saturating'), n_critic=2)
  with pytest.raises(ValueError, match=r'n_critic=2, B, H, W, C'):
    jax.jit(fn)(state, _batch(1, 8))


def test_ema_decay_zero_is_raw_weights_and_positive_decay_averages():
  _, s0, _ = _run(_config(ema_decay=0.0), 2)
  assert _leaves_equal(s0.ema_params, s0.g_params)
  c = _config(ema_decay=0.5)
  gan, init = create_state(c)
  init_params = jax.device_get(init.g_params)
  _, s1, _ = _run(c, 1)
  expected = jax.tree.map(
    lambda p0, p1: 0.5 * p0 + 0.5 * p1, init_params, jax.device_get(s1.g_params)
  )
  chex.assert_trees_all_close(jax.device_get(s1.ema_params), expected, rtol=1e-6)


def test_minimax_loss_and_mlp_train():
  _, state, history = _run(_config(model='mlp', loss='minimax'), 2)
  assert int(state.step) == 2
  assert history[0]['g_loss'] < 0  # E[log(1 - D(G(z)))] is negative.


def test_invalid_step_arguments():
  gan, _ = create_state(_config())
  with pytest.raises(ValueError, match='n_critic=0'):
    make_train_step(gan, get_loss('minimax'), n_critic=0)
  with pytest.raises(ValueError, match='ema_decay=1.0'):
    make_train_step(gan, get_loss('minimax'), ema_decay=1.0)


def test_step_from_config_equals_the_keyword_step():
  # Every setting away from make_train_step's defaults, so that one the config builder
  # dropped would show as a different state.
  c = _config(model='mlp', loss='hinge', n_critic=2, ema_decay=0.5, r1_weight=1.0, reuse_fakes=True)
  gan, state = create_state(c)
  batch = _batch(2, 8)
  from_config = jax.jit(make_train_step_from_config(gan, c))(state, batch)
  by_keyword = jax.jit(
    make_train_step(
      gan,
      get_loss('hinge'),
      n_critic=2,
      ema_decay=0.5,
      stabilizers=Stabilizers(r1_weight=1.0),
      aux_weight=c.train.aux_weight,
      reuse_fakes=True,
    )
  )(state, batch)
  assert _leaves_equal(from_config, by_keyword)
  assert 'd_penalty' in from_config[1]
  defaults = jax.jit(make_train_step(gan, get_loss('hinge'), n_critic=2))(state, batch)
  assert not _leaves_equal(from_config[0].g_params, defaults[0].g_params)
  c.train.loss = 'wgan'
  with pytest.raises(ValueError, match="train.loss='wgan'"):
    make_train_step_from_config(gan, c)


_SHARDED = textwrap.dedent('''
    import json, jax, numpy as np
    from gan_jax import config as config_lib
    from gan_jax.core.losses import get_loss
    from gan_jax.core.state import create_state
    from gan_jax.core.sharding import *
    from gan_jax.core.train_step import *
    assert jax.device_count() == 8, jax.devices()
    c = config_lib.base_config()
    c.model.name = 'dcgan'; c.data.image_size = 16; c.data.channels = 3
    c.model.g_width = 8; c.model.d_width = 8; c.train.n_critic = 2
    rng = np.random.default_rng(0)
    batches = [rng.uniform(-1, 1, (2, 16, 16, 16, 3)).astype(np.float32) for _ in range(3)]
    out = {}
    for name, devices in (('one', jax.devices()[:1]), ('eight', jax.devices())):
      gan, state = create_state(c)
      mesh = make_mesh(devices)
      step = jit_train_step(make_train_step(gan, get_loss('non_saturating'), n_critic=2,
                                            ema_decay=0.9, mesh=mesh), mesh)
      state = replicate(state, mesh)
      for b in batches:
        x = jax.device_put({'image': b}, batch_sharding(mesh))
        state, m = step(state, x)
      if name == 'eight':
        # Each device's program works on its 1/8 of the batch: XLA's FLOP count per device
        # must be far below the whole step's (it was ~0.9x when G ran unsharded).
        compiled = step.lower(state, x).compile()
        out['flops_ratio'] = (compiled.cost_analysis()['flops'] /
                              step.lower(state, x).cost_analysis()['flops'])
        out['shards'] = len(x['image'].addressable_shards)
        out['shard_shape'] = list(x['image'].addressable_shards[0].data.shape)
      out[name] = [np.asarray(l).ravel().tolist() for l in jax.tree.leaves(jax.device_get(state))]
    try:
      check_batch_size(12, make_mesh())
    except ValueError as e:
      out['error'] = str(e)
    print('RESULT' + json.dumps(out))
''')


def test_sharded_step_on_8_devices_equals_one_device():
  """DCGAN with BatchNorm in G and D, n_critic=2, EMA: 8 fake CPU devices vs 1."""
  proc = run_python(_SHARDED, {'XLA_FLAGS': '--xla_force_host_platform_device_count=8'})
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.split('RESULT', 1)[1])
  assert out['shards'] == 8 and out['shard_shape'] == [2, 2, 16, 16, 3]
  assert out['flops_ratio'] < 0.25, out['flops_ratio']
  assert len(out['one']) == len(out['eight'])
  for a, b in zip(out['one'], out['eight']):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=2e-4, atol=2e-5)
  assert 'train.batch_size=12' in out['error'] and '(8' in out['error']


def test_batch_size_must_divide_over_devices():
  mesh = make_mesh()
  check_batch_size(7, mesh)  # one device: anything positive works
  with pytest.raises(config_lib.ConfigError, match='train.batch_size=0'):
    check_batch_size(0, mesh)
