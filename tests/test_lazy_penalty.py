"""Lazy regularization (`train.penalty_interval`; Karras et al. 2020, StyleGAN2, section 4).

With interval k, a step whose `state.step % k == 0` must equal the every-step recipe with the
GP/R1/R2 weights multiplied by k (a separately compiled step with those weights), and any
other step the recipe without them. Checked for the host-dispatched programs
(`jit_train_step` of a `LazyTrainStep`) over consecutive steps and from arbitrary states,
with per-replica (traced) weights, for K replicas in one program, and for the traced
fallback (`jax.lax.cond`) under a caller's `jax.jit` and `jax.vmap`. Bad intervals are
one-line config errors.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import config as config_lib
from gan_jax.core import penalties
from gan_jax.core.sharding import batch_sharding, make_mesh, replicate
from gan_jax.core.state import create_state
from gan_jax.core.train_step import LazyTrainStep, jit_train_step, make_train_step_from_config
from gan_jax.errors import ConfigError
from gan_jax.training import replicas
from test_train import _assert_states_equal, _whole_and_resumed

B = 16  # the tiny config's batch size
K = 4
# One step moves a parameter by up to ~lr = 2e-4 (Adam's first update is ~lr * sign(g)). A
# lazy step and its reference, compiled apart, differ by float rounding, which Adam amplifies
# for gradients near 0: up to ~2e-6 here. The two programs' results differ by ~4e-4.
SAME, OTHER = 2e-5, 1e-4


def _max_diff(a, b) -> float:
  """Largest absolute difference over the floating leaves of two states."""
  diffs = [
    np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))
    for x, y in zip(jax.tree.leaves(jax.device_get(a)), jax.tree.leaves(jax.device_get(b)))
    if np.issubdtype(np.asarray(x).dtype, np.floating)
  ]
  return float(max(diffs))


def _batch(seed=0):
  images = jax.random.uniform(jax.random.PRNGKey(seed), (1, B, 28, 28, 1), minval=-1, maxval=1)
  return {'image': images}


def _configs(tiny_config):
  """(lazy: r1 2, r2 1, interval K; every step with K x the weights; no R1/R2)."""
  lazy = tiny_config.copy_and_resolve_references()
  lazy.train.r1_weight, lazy.train.r2_weight, lazy.train.penalty_interval = 2.0, 1.0, K
  on = lazy.copy_and_resolve_references()
  on.train.r1_weight, on.train.r2_weight, on.train.penalty_interval = 2.0 * K, 1.0 * K, 1
  off = lazy.copy_and_resolve_references()
  off.train.r1_weight, off.train.r2_weight, off.train.penalty_interval = 0.0, 0.0, 1
  for c in (lazy, on, off):
    config_lib.validate(c)
  return lazy, on, off


def _jitted(config, mesh):
  """(initial state on the mesh, jit_train_step of the config's step, without donation)."""
  gan, state = create_state(config)
  step = jit_train_step(make_train_step_from_config(gan, config, mesh=mesh), mesh, donate=False)
  return replicate(state, mesh), step


def _reference(config):
  """The every-step recipe of `config`, jitted without shardings (takes `hparams`)."""
  gan, _ = create_state(config)
  return jax.jit(make_train_step_from_config(gan, config))


def _check(got, on_result, off_result, penalised, label):
  want, other = (on_result, off_result) if penalised else (off_result, on_result)
  assert _max_diff(got, want) < SAME and _max_diff(got, other) > OTHER, label


def test_consecutive_steps_alternate_between_the_two_programs(tiny_config):
  """Steps 0-5 in a row (the host counts them), then states it did not return (a restore)."""
  mesh = make_mesh()
  lazy, on, off = _configs(tiny_config)
  state, lazy_step = _jitted(lazy, mesh)
  assert isinstance(lazy_step, LazyTrainStep) and lazy_step.interval == K
  _, on_step = _jitted(on, mesh)
  _, off_step = _jitted(off, mesh)
  batch = jax.device_put(_batch(), batch_sharding(mesh))
  s = state
  for i in range(6):
    got, metrics = lazy_step(s, batch)
    _check(got, on_step(s, batch)[0], off_step(s, batch)[0], i % K == 0, i)
    assert int(got.step) == i + 1
    assert (float(metrics['d_penalty']) > 0) == (i % K == 0), i
    s = got
  for i in (8, 3, 4, 4):  # arbitrary states: the step is read from each
    st = state.replace(step=jnp.int32(i))
    got, _ = lazy_step(st, batch)
    _check(got, on_step(st, batch)[0], off_step(st, batch)[0], i % K == 0, i)


def test_traced_weights_are_multiplied_too(tiny_config):
  """Per-replica weights enter the step as `hparams`; the penalised program scales them by K."""
  lazy, on, _ = _configs(tiny_config)
  gan, state = create_state(lazy)
  lazy_step = make_train_step_from_config(gan, lazy).map(jax.jit)  # host dispatch
  on_step = jax.jit(make_train_step_from_config(gan, on))
  batch = _batch(1)
  hp = lambda w: {'r1_weight': jnp.float32(w)}  # noqa: E731
  got, _ = lazy_step(state, batch, hp(3.0))
  assert _max_diff(got, on_step(state, batch, hp(3.0 * K))[0]) < SAME
  assert _max_diff(got, on_step(state, batch, hp(3.0))[0]) > OTHER


def test_replicas_in_one_program_use_both_programs(tiny_config):
  """K replicas (vmap), each with its own R1 weight, at steps 0 then 1."""
  mesh = make_mesh()
  lazy, on, off = _configs(tiny_config)
  gan, state = create_state(lazy)
  step = replicas.jit_replicated_train_step(
    replicas.make_replicated_train_step(make_train_step_from_config(gan, lazy)), mesh
  )
  assert isinstance(step, LazyTrainStep)
  stacked = replicate(replicas.stack([state, state]), mesh)
  batch = _batch(3)
  batches = jax.tree.map(lambda x: jnp.stack([x, x]), batch)
  hparams = {'r1_weight': jnp.float32([1.0, 2.0])}
  on_step, off_step = _reference(on), _reference(off)
  refs = [state, state]  # each replica's reference state
  for i in range(2):
    got, _ = step(stacked, batches, hparams)
    for r in range(2):
      hp = {'r1_weight': jnp.float32(hparams['r1_weight'][r] * (K if i % K == 0 else 1))}
      refs[r] = (on_step if i % K == 0 else off_step)(refs[r], batch, hp)[0]
      assert _max_diff(replicas.unstack(got, r), refs[r]) < SAME, (i, r)
    stacked = got


def test_under_a_callers_jit_and_vmap_the_step_branches_on_the_device(tiny_config):
  """Traced, a LazyTrainStep falls back to `jax.lax.cond`; under vmap, replicas at different
  steps each take their own branch."""
  lazy, on, off = _configs(tiny_config)
  gan, state = create_state(lazy)
  unjitted = make_train_step_from_config(gan, lazy)
  on_step, off_step = _reference(on), _reference(off)
  batch = _batch(2)
  traced = jax.jit(unjitted)
  for i in (0, 1):
    st = state.replace(step=jnp.int32(i))
    _check(traced(st, batch)[0], on_step(st, batch)[0], off_step(st, batch)[0], i == 0, i)
  steps = [0, 1, 4]
  stacked = jax.tree.map(
    lambda *x: jnp.stack(x), *[state.replace(step=jnp.int32(i)) for i in steps]
  )
  got, metrics = jax.jit(jax.vmap(unjitted, in_axes=(0, None)))(stacked, batch)
  for r, i in enumerate(steps):
    st = state.replace(step=jnp.int32(i))
    _check(replicas.unstack(got, r), on_step(st, batch)[0], off_step(st, batch)[0], i % K == 0, i)
    assert (float(metrics['d_penalty'][r]) > 0) == (i % K == 0)


def test_interval_one_builds_the_every_step_program(tiny_config):
  """penalty_interval=1 (or a config written before the field) is one plain step."""
  _, on, _ = _configs(tiny_config)
  gan, _ = create_state(on)
  assert not isinstance(make_train_step_from_config(gan, on), LazyTrainStep)
  with on.unlocked():
    del on.train['penalty_interval']
  assert not isinstance(make_train_step_from_config(gan, on), LazyTrainStep)


@pytest.mark.parametrize(
  'interval, weights, fragment',
  [
    (0, {'r1_weight': 1.0}, r'penalty_interval=0 is invalid: must be an integer >= 1'),
    (True, {'r1_weight': 1.0}, r'penalty_interval=True is invalid'),
    (4, {}, r'penalty_interval=4 has nothing to apply lazily: train\.gp_weight, train\.r1_weight'),
    (4, {'lecam_weight': 0.3}, r'penalty_interval=4 has nothing to apply lazily'),
  ],
)
def test_bad_intervals_are_one_line_config_errors(interval, weights, fragment):
  c = config_lib.base_config()
  c.train.update(weights)
  c.train['penalty_interval'] = interval
  with pytest.raises(ConfigError, match=fragment) as err:
    config_lib.validate(c)
  assert '\n' not in str(err.value)


def test_the_registry_says_which_penalties_are_lazy():
  assert penalties.LAZY_WEIGHT_FIELDS == ('gp_weight', 'r1_weight', 'r2_weight')
  assert not penalties.PENALTIES['lecam'].lazy
  c = config_lib.base_config()
  c.train.update({'gp_weight': 10.0, 'penalty_interval': 16})
  config_lib.validate(c)


def test_a_resumed_lazy_run_equals_the_uninterrupted_one(tiny_config, tmp_path):
  """Interval 2, stopped at step 3 (so the resumed run starts with an unpenalised step) and
  resumed to 6: bit for bit the 6-step run; its log has d_penalty > 0 exactly at the
  penalised steps 0, 2, 4 (logged as steps 1, 3, 5: the step count after the update)."""
  tiny_config.train.steps = 6
  tiny_config.train.r1_weight, tiny_config.train.penalty_interval = 1.0, 2
  tiny_config.log_every = 1
  config_lib.validate(tiny_config)
  _assert_states_equal(*_whole_and_resumed(tiny_config, tmp_path, 3))
  for run in ('whole', 'resumed'):
    lines = [json.loads(x) for x in (tmp_path / run / 'metrics.jsonl').read_text().splitlines()]
    penalised = {x['step']: x['d_penalty'] > 0 for x in lines if 'd_penalty' in x}
    assert penalised == {s: s % 2 == 1 for s in range(1, 7)}, (run, penalised)
