"""A schedule of ADA's fixed augmentation probability (`train.schedules='ada_p=...'` with
`train.augment='fixed'`): p = ada_p_init * factor(step) against the closed form, the step
using exactly that p (the same bits as an unscheduled fixed p of that value), a resumed run
equal to the uninterrupted one bit for bit, vmapped replicas each with their own step's p,
and the one-line refusals (with 'ada', without ADA, p off or above 1)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import config as config_lib
from gan_jax.core import schedules
from gan_jax.core.state import create_state
from gan_jax.core.train_step import make_train_step_from_config
from gan_jax.errors import ConfigError
from gan_jax.training import replicas
from test_ada import CHEAP_TRANSFORMS
from test_train import _assert_states_equal, _whole_and_resumed

B = 16  # the tiny config's batch size
P0 = 0.5  # ada_p_init in the step tests: p = 0.5 * s / 4 is exact in float32
SPEC = 'ada_p=linear:0->1@4step'
# test_ada's two cheap transforms: what is tested here is which p the step uses, not the
# transforms (tests/test_ada.py checks those); the full 'bgc' pipeline triples the compile
# time of each step.
TRANSFORMS = CHEAP_TRANSFORMS


def _fixed(config, p_init=P0, spec=SPEC):
  config.train.augment = 'fixed'
  config.train.ada_transforms = TRANSFORMS
  config.train.ada_p_init = p_init
  config.train.schedules = spec
  return config


@pytest.mark.parametrize(
  'spec, closed_form',
  [
    ('ada_p=linear:0->1@100kimg', lambda s: np.minimum(s * B / 1e5, 1.0)),
    (
      'ada_p=cosine:1->0.2@512img',
      lambda s: 0.2 + 0.8 * 0.5 * (1 + np.cos(np.pi * np.minimum(s * B / 512, 1.0))),
    ),
    (
      'ada_p=constant:0.5@3step,linear:0.5->1@3step',
      lambda s: np.where(s < 3, 0.5, 0.5 + 0.5 * np.minimum((s - 3) / 3, 1.0)),
    ),
  ],
)
def test_scheduled_p_is_ada_p_init_times_the_closed_form(spec, closed_form):
  c = _fixed(config_lib.base_config(), p_init=0.8, spec=spec)
  c.train.batch_size = B
  config_lib.validate(c)
  sched = schedules.Schedules.from_config(c.train)
  steps = np.array([0, 1, 2, 3, 4, 5, 6, 31, 32, 33, 1000, 6250, 7000])
  got = np.array([float(sched.augment_probability(0.8, jnp.int32(s))) for s in steps])
  want = 0.8 * closed_form(steps.astype(np.float64))
  np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7)
  assert schedules.Schedules().augment_probability(0.8, 3) is None  # unscheduled: p_init


def _stepper(config):
  gan, state = create_state(config)
  step_fn = jax.jit(make_train_step_from_config(gan, config))
  return state, step_fn


def _batch(seed=0):
  images = jax.random.uniform(jax.random.PRNGKey(seed), (1, B, 28, 28, 1), minval=-1, maxval=1)
  return {'image': images}


def test_the_step_uses_and_logs_the_scheduled_p(tiny_config):
  """At state.step s the scheduled step logs p = 0.5 * s / 4 and equals, bit for bit, the
  unscheduled 'fixed' step whose ada_p_init is that p (a separately built step)."""
  state, run = _stepper(_fixed(tiny_config))
  batch = _batch()
  outs = {s: run(state.replace(step=jnp.int32(s)), batch) for s in (0, 1, 2, 4, 9)}
  for s, (_, m) in outs.items():
    assert float(m['ada_p']) == P0 * min(s / 4, 1.0)
  _fixed(tiny_config, p_init=0.25, spec='')  # p(2) = 0.5 * 2 / 4, as a constant
  state_c, run_c = _stepper(tiny_config)
  want, m_want = run_c(state_c.replace(step=jnp.int32(2)), batch)
  assert 'ada_p' not in m_want  # an unscheduled fixed p logs nothing, as before
  _assert_states_equal(outs[2][0], want)
  assert float(outs[2][1]['d_loss']) == float(m_want['d_loss'])
  assert float(outs[1][1]['d_loss']) != float(m_want['d_loss'])  # p matters


def test_vmapped_replicas_each_use_their_own_steps_p(tiny_config):
  """Replicas stacked along a leading axis (gan_jax.training.replicas, 'vmap'): the traced p
  follows each replica's own state.step; each replica equals its separate step."""
  state, run = _stepper(_fixed(tiny_config))
  gan, _ = create_state(tiny_config)
  step = replicas.make_replicated_train_step(make_train_step_from_config(gan, tiny_config), 'vmap')
  states = [state.replace(step=jnp.int32(s)) for s in (1, 3)]
  batches = [_batch(0), _batch(1)]
  new, metrics = jax.jit(step)(replicas.stack(states), replicas.stack(batches))
  np.testing.assert_array_equal(np.asarray(metrics['ada_p']), [P0 / 4, P0 * 3 / 4])
  for i in range(2):
    want, m = run(states[i], batches[i])
    for a, b in zip(jax.tree.leaves(replicas.unstack(new, i)), jax.tree.leaves(want)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(metrics['d_loss'][i]), float(m['d_loss']), rtol=1e-5)


def test_a_scheduled_p_run_resumes_bit_for_bit(tiny_config, tmp_path):
  """4 steps in one go equal 2 steps, stopped, then resumed to 4; the log's p at steps 1..4
  is 0.5 * s / 4 for state.step s = 0..3, and summary.json's schedules_final its last."""
  _fixed(tiny_config)
  tiny_config.log_every = 1
  tiny_config.checkpoint_every = 2
  tiny_config.train.steps = 4
  config_lib.validate(tiny_config)
  whole, resumed = _whole_and_resumed(tiny_config, tmp_path, 2)
  _assert_states_equal(resumed, whole)
  assert whole.extras == {}  # a scheduled fixed p is no state
  for name in ('whole', 'resumed'):
    with open(tmp_path / name / 'metrics.jsonl') as f:
      logged = {r['step']: r['ada_p'] for r in map(json.loads, f) if 'ada_p' in r}
    assert logged == {s + 1: P0 * s / 4 for s in range(4)}, (name, logged)
    summary = json.loads((tmp_path / name / 'summary.json').read_text())
    assert summary['schedules_final'] == {'ada_p': P0 * 3 / 4}


BAD = [
  ({'augment': 'ada'}, "ada_p cannot be scheduled with train.augment='ada'"),
  ({'augment': ''}, "train.augment='' (augmentation is off); set train.augment='fixed'"),
  ({'augment': '', 'diffaugment': 'color'}, 'DiffAugment has no probability'),
  ({'ada_p_init': 0.0}, 'train.ada_p_init=0.0 is off'),
  ({'ada_p_init': 0.6, 'schedules': 'ada_p=linear:1->2@5step'}, 'a probability is <= 1'),
]


@pytest.mark.parametrize('fields, fragment', BAD, ids=[str(b[0]) for b in BAD])
def test_bad_ada_p_schedules_are_one_line_config_errors(fields, fragment):
  c = _fixed(config_lib.base_config())
  for name, value in fields.items():
    c.train[name] = value
  with pytest.raises(ConfigError) as e:
    config_lib.validate(c)
  message = str(e.value)
  assert fragment in message and '\n' not in message, message
  assert message.startswith(f'train.schedules={c.train.schedules!r} is invalid: ')


def test_a_valid_ada_p_schedule_passes_validation():
  c = _fixed(config_lib.base_config(), p_init=0.6, spec='ada_p=linear:0->1@100kimg')
  config_lib.validate(c)
  assert schedules.parse(c.train.schedules)['ada_p'][0].end == 1.0
