"""Lazy regularization (`train.penalty_interval`; Karras et al. 2020, StyleGAN2, section 4).

With interval k, a step whose `state.step % k == 0` must equal the every-step recipe with the
GP/R1/R2 weights multiplied by k (a separately compiled step with those weights), and any
other step the recipe without them. Checked for the host-dispatched programs
(`jit_train_step` of a `LazyTrainStep`) over consecutive steps and from arbitrary states,
for K replicas in one program with per-replica (traced) weights, for the traced fallback
(`jax.lax.cond`) under a caller's `jax.vmap`, and across a resume. Bad intervals are
one-line config errors.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

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
R1, R2 = 2.0, 1.0  # the lazy config's weights
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


class Refs(NamedTuple):
  lazy: Any  # the lazy config
  state: Any  # its initial state
  on: Any  # the every-step recipe with K x the weights, jitted (takes hparams too)
  off: Any  # the recipe without R1/R2, jitted

  def check(self, got, state, batch, r1_weight=R1):
    """`got` equals the step of `state` that the lazy schedule says (with this R1 weight),
    and not the other. The references run on host copies, `on` with the R1 weight as a
    traced input (`off` has none), so that each compiles once for the whole module, not
    once per input sharding and arity."""
    state, batch = jax.device_get((state, batch))
    penalised = int(state.step) % K == 0
    on = self.on(state, batch, {'r1_weight': np.float32(r1_weight * K)})[0]
    off = self.off(state, batch)[0]
    want, other = (on, off) if penalised else (off, on)
    assert _max_diff(got, want) < SAME and _max_diff(got, other) > OTHER, int(state.step)


@pytest.fixture(scope='module')
def refs(tfds_dir):
  """The lazy config (r1 2, r2 1, interval K) and its two references, compiled once."""
  from conftest import load_experiment  # pylint: disable=g-import-not-at-top

  lazy = load_experiment('mnist_dcgan', 'tiny')
  lazy.data.data_dir = tfds_dir
  lazy.train.r1_weight, lazy.train.r2_weight, lazy.train.penalty_interval = R1, R2, K
  on = lazy.copy_and_resolve_references()
  on.train.r1_weight, on.train.r2_weight, on.train.penalty_interval = R1 * K, R2 * K, 1
  off = lazy.copy_and_resolve_references()
  off.train.r1_weight, off.train.r2_weight, off.train.penalty_interval = 0.0, 0.0, 1
  for c in (lazy, on, off):
    config_lib.validate(c)
  gan, state = create_state(lazy)
  step = lambda c: jax.jit(make_train_step_from_config(gan, c))  # noqa: E731
  return Refs(lazy, state, step(on), step(off))


def test_consecutive_steps_alternate_between_the_two_programs(refs):
  """Steps 0-5 in a row (the host counts them), then states it did not return (a restore),
  through `jit_train_step`, as training runs it."""
  mesh = make_mesh()
  gan, _ = create_state(refs.lazy)
  lazy_step = jit_train_step(
    make_train_step_from_config(gan, refs.lazy, mesh=mesh), mesh, donate=False
  )
  assert isinstance(lazy_step, LazyTrainStep) and lazy_step.interval == K
  batch = jax.device_put(_batch(), batch_sharding(mesh))
  s = replicate(refs.state, mesh)
  for i in range(6):
    got, metrics = lazy_step(s, batch)
    refs.check(got, s, batch)
    assert int(got.step) == i + 1
    assert (float(metrics['d_penalty']) > 0) == (i % K == 0), i
    s = got
  for i in (8, 3, 4, 4):  # arbitrary states: the step is read from each
    st = refs.state.replace(step=jnp.int32(i))
    refs.check(lazy_step(st, batch)[0], st, batch)


def test_replicas_in_one_program_use_both_programs(refs):
  """K replicas (vmap), each with its own R1 weight (traced, scaled by K in the penalised
  program), at steps 0 then 1."""
  mesh = make_mesh()
  gan, _ = create_state(refs.lazy)
  step = replicas.jit_replicated_train_step(
    replicas.make_replicated_train_step(make_train_step_from_config(gan, refs.lazy)), mesh
  )
  assert isinstance(step, LazyTrainStep)
  stacked = replicate(replicas.stack([refs.state, refs.state]), mesh)
  batch = _batch(3)
  batches = jax.tree.map(lambda x: jnp.stack([x, x]), batch)
  weights = [1.0, 2.0]
  hparams = {'r1_weight': jnp.float32(weights)}
  before = [refs.state, refs.state]  # each replica's state before the step
  for _ in range(2):
    got, _ = step(stacked, batches, hparams)
    for r in range(2):
      refs.check(replicas.unstack(got, r), before[r], batch, weights[r])
      before[r] = replicas.unstack(got, r)
    stacked = got


def test_under_a_callers_vmap_the_step_branches_on_the_device(refs):
  """Traced, a LazyTrainStep falls back to `jax.lax.cond`; under vmap, replicas at different
  steps each take their own branch."""
  gan, _ = create_state(refs.lazy)
  unjitted = make_train_step_from_config(gan, refs.lazy)
  batch = _batch(2)
  states = [refs.state.replace(step=jnp.int32(i)) for i in (0, 1, 4)]
  stacked = jax.tree.map(lambda *x: jnp.stack(x), *states)
  got, metrics = jax.jit(jax.vmap(unjitted, in_axes=(0, None)))(stacked, batch)
  for r, st in enumerate(states):
    refs.check(replicas.unstack(got, r), st, batch)
    assert (float(metrics['d_penalty'][r]) > 0) == (int(st.step) % K == 0)


def test_interval_one_builds_the_every_step_program(tiny_config):
  """penalty_interval=1 (or a config written before the field) is one plain step."""
  tiny_config.train.r1_weight = 1.0
  gan, _ = create_state(tiny_config)
  assert not isinstance(make_train_step_from_config(gan, tiny_config), LazyTrainStep)
  with tiny_config.unlocked():
    del tiny_config.train['penalty_interval']
  assert not isinstance(make_train_step_from_config(gan, tiny_config), LazyTrainStep)


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
