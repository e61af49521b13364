"""Lazy regularization (`train.penalty_interval`; Karras et al. 2020, StyleGAN2, section 4).

With interval k, a step whose `state.step % k == 0` must equal the every-step recipe with the
GP/R1/R2 weights multiplied by k (checked against a separately compiled step with those
weights), and any other step must equal the recipe without those penalties. The same holds
with per-replica (traced) weights, and under `jax.vmap`, where the replicas are at different
steps. Bad intervals are one-line config errors.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import config as config_lib
from gan_jax.core import penalties
from gan_jax.core.state import create_state
from gan_jax.core.train_step import make_train_step_from_config
from gan_jax.errors import ConfigError

B = 16  # the tiny config's batch size
K = 4
# One step moves a parameter by up to ~lr = 2e-4 (Adam's first update is ~lr * sign(g)). The
# lazy step and its reference, compiled apart, differ by float rounding that Adam can amplify
# for gradients near 0: up to ~2e-6 here. The two branches differ by ~4e-4.
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


def _step(config):
  gan, state = create_state(config)
  return state, jax.jit(make_train_step_from_config(gan, config))


def test_every_kth_step_is_penalised_with_k_times_the_weights(tiny_config):
  lazy, on, off = _configs(tiny_config)
  state, lazy_step = _step(lazy)
  _, on_step = _step(on)
  _, off_step = _step(off)
  batch = _batch()
  for s in (0, 1, 3, 4, 5, 8):
    st = state.replace(step=jnp.int32(s))
    got, got_metrics = lazy_step(st, batch)
    (want, want_metrics), (other, _) = [f(st, batch) for f in (on_step, off_step)][
      :: 1 if s % K == 0 else -1
    ]
    assert _max_diff(got, want) < SAME and _max_diff(got, other) > OTHER, s
    if s % K == 0:
      assert float(got_metrics['d_penalty']) > 0
      np.testing.assert_allclose(got_metrics['d_penalty'], want_metrics['d_penalty'], rtol=1e-5)
    else:
      assert float(got_metrics['d_penalty']) == 0.0
    np.testing.assert_allclose(got_metrics['d_loss'], want_metrics['d_loss'], rtol=1e-5)


def test_traced_weights_are_multiplied_too(tiny_config):
  """Per-replica weights enter the step as `hparams`; a lazy step scales them by K."""
  lazy, on, _ = _configs(tiny_config)
  state, lazy_step = _step(lazy)
  _, on_step = _step(on)
  batch = _batch(1)
  got, _ = lazy_step(state, batch, {'r1_weight': jnp.float32(3.0)})
  want, _ = on_step(state, batch, {'r1_weight': jnp.float32(3.0 * K)})
  unscaled, _ = on_step(state, batch, {'r1_weight': jnp.float32(3.0)})
  assert _max_diff(got, want) < SAME and _max_diff(got, unscaled) > OTHER


def test_vmapped_replicas_at_different_steps_each_take_their_own_branch(tiny_config):
  """Under vmap the condition is batched (both branches run, one is selected per replica)."""
  lazy, on, off = _configs(tiny_config)
  state, _ = _step(lazy)
  gan, _ = create_state(lazy)
  vmapped = jax.jit(jax.vmap(make_train_step_from_config(gan, lazy), in_axes=(0, None)))
  steps = [0, 1, 4]
  stacked = jax.tree.map(
    lambda *x: jnp.stack(x), *[state.replace(step=jnp.int32(s)) for s in steps]
  )
  got, metrics = vmapped(stacked, _batch(2))
  _, on_step = _step(on)
  _, off_step = _step(off)
  for i, s in enumerate(steps):
    want, _ = (on_step if s % K == 0 else off_step)(state.replace(step=jnp.int32(s)), _batch(2))
    assert _max_diff(jax.tree.map(lambda x, i=i: x[i], got), want) < SAME, s
    assert (float(metrics['d_penalty'][i]) > 0) == (s % K == 0)


def test_interval_one_is_the_every_step_recipe(tiny_config):
  """penalty_interval=1 builds the step without `lax.cond`: bitwise the same as before."""
  _, on, _ = _configs(tiny_config)
  state, step = _step(on)
  with on.unlocked():
    del on.train['penalty_interval']  # an older run's config, written before the field
  _, old_step = _step(on)
  a, _ = step(state, _batch())
  b, _ = old_step(state, _batch())
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(jax.device_get(x)), np.asarray(jax.device_get(y)))


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
