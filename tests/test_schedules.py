"""Schedules (gan_jax/core/schedules.py) and the EMA half-life, against closed forms.

Each curve is checked at chosen steps against its formula computed in numpy; a scheduled run
stopped at step 3 and resumed to 6 must equal the uninterrupted run bit for bit; the penalty
weight the step uses at step s must be the schedule's; the EMA half-life must give
beta = 0.5 ** (B / nimg) (with the ramp-up early on); bad strings are one-line ConfigErrors.
"""

from __future__ import annotations

import json
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gan_jax import config as config_lib
from gan_jax.core import schedules
from gan_jax.core.state import create_state, make_optimizers
from gan_jax.core.train_step import make_train_step_from_config
from gan_jax.errors import ConfigError
from gan_jax.training import replicas, train
from test_replicas import _assert_close
from test_train import _assert_states_equal, _whole_and_resumed

B = 16  # the tiny config's batch size


def _cos(a, b, t):
  """b + (a - b) (1 + cos(pi min(t, 1))) / 2: a at t = 0, b from t = 1 on."""
  return b + (a - b) * 0.5 * (1 + np.cos(np.pi * np.minimum(t, 1.0)))


def _lin(a, b, t):
  return a + (b - a) * np.minimum(t, 1.0)


STEPS = np.array([0, 1, 2, 5, 10, 31, 32, 33, 63, 64, 100, 1000])
CASES = [
  ('cosine:1->0.25@512img', lambda s: _cos(1, 0.25, s * B / 512)),  # the R3GAN form
  ('cosine:0->1@2step', lambda s: _cos(0, 1, s / 2)),  # a cosine ramp-up from 0
  ('linear:0->1@10step', lambda s: _lin(0, 1, s / 10)),  # linear warm-up
  ('linear:1->0@1kimg', lambda s: _lin(1, 0, s * B / 1000)),  # linear decay
  ('constant:0.5', lambda s: 0.5 + 0 * s),
  # warm-up then cosine decay, and a held constant then a decay: joined segments
  (
    'linear:0->1@5step,cosine:1->0.1@0.0016Mimg',
    lambda s: np.where(s < 5, _lin(0, 1, s / 5), _cos(1, 0.1, (s - 5) * B / 1600)),
  ),
  (
    'constant:2@32steps,linear:2->0@512img',
    lambda s: np.where(s < 32, 2.0, _lin(2, 0, (s - 32) * B / 512)),
  ),
]


@pytest.mark.parametrize('spec, closed_form', CASES, ids=[c[0] for c in CASES])
def test_each_curve_equals_its_closed_form(spec, closed_form):
  (segments,) = schedules.parse(f'g_lr={spec}').values()
  factor = jax.jit(schedules.curve(segments, B))
  got = np.array([float(factor(jnp.int32(s))) for s in STEPS])
  np.testing.assert_allclose(got, closed_form(STEPS.astype(np.float64)), rtol=2e-6, atol=1e-7)


def test_warmup_then_cosine_equals_optax_warmup_cosine_decay():
  (segments,) = schedules.parse('g_lr=linear:0->1@8step,cosine:1->0.05@40step').values()
  factor = schedules.curve(segments, B)
  reference = optax.warmup_cosine_decay_schedule(0.0, 1.0, 8, 48, end_value=0.05)
  for s in (0, 3, 8, 9, 20, 47, 48, 60):
    np.testing.assert_allclose(float(factor(s)), float(reference(s)), rtol=1e-6, atol=1e-7)


def test_scheduled_learning_rates_and_beta2_match_a_numpy_adam():
  """G's Adam counts steps, D's counts n_critic = 2 updates per step: the lr and beta2 of
  update k are base * factor(k // updates per step), in a numpy Adam with those values."""
  t = types.SimpleNamespace(
    g_lr=1e-2,
    d_lr=3e-2,
    b1=0.5,
    b2=0.9,
    batch_size=B,
    n_critic=2,
    schedules='g_lr,d_lr=linear:1->0.25@3step; b2=cosine:1->1.1@4step',
  )
  lr_f = lambda s: _lin(1, 0.25, s / 3)  # noqa: E731
  b2_f = lambda s: _cos(1, 1.1, s / 4)  # noqa: E731
  g_tx, d_tx = make_optimizers(t)
  grads = [np.array([0.3, -1.0, 2.0]) * (k + 1) ** 0.5 * (-1) ** k for k in range(8)]
  for tx, base, per_step in ((g_tx, t.g_lr, 1), (d_tx, t.d_lr, 2)):
    params = jnp.zeros(3, jnp.float32)
    state = tx.init(params)
    m = v = np.zeros(3)
    p = np.zeros(3)
    for k, g in enumerate(grads):
      updates, state = tx.update(jnp.asarray(g, jnp.float32), state, params)
      params = optax.apply_updates(params, updates)
      s = k // per_step
      b2 = t.b2 * b2_f(s)
      m = t.b1 * m + (1 - t.b1) * g
      v = b2 * v + (1 - b2) * g**2
      m_hat, v_hat = m / (1 - t.b1 ** (k + 1)), v / (1 - b2 ** (k + 1))
      p = p - base * lr_f(s) * m_hat / (np.sqrt(v_hat) + 1e-8)
      np.testing.assert_allclose(np.asarray(params), p, rtol=1e-5, atol=1e-7)


def test_without_schedules_the_optimizers_and_their_state_are_plain_adam():
  t = config_lib.base_config().train
  g_tx, _ = make_optimizers(t)
  params = {'w': jnp.ones(3)}
  plain = optax.adam(t.g_lr, b1=t.b1, b2=t.b2)
  assert jax.tree.structure(g_tx.init(params)) == jax.tree.structure(plain.init(params))
  with t.unlocked():
    t.schedules = 'g_lr=linear:0->1@2step'
  # A learning-rate schedule adds its count to the state; documented in docs/configs.md.
  assert jax.tree.structure(make_optimizers(t)[0].init(params)) != jax.tree.structure(
    plain.init(params)
  )


def test_resume_with_schedules_is_bit_exact(tiny_config, tmp_path):
  """Learning rates, beta2 and the EMA half-life scheduled: a run stopped at step 3 and
  resumed to 6 equals the uninterrupted 6-step run bit for bit."""
  tiny_config.train.steps = 6
  tiny_config.train.ema_half_life_images = 64.0
  tiny_config.train.ema_rampup = 0.5
  tiny_config.train.schedules = (
    'g_lr,d_lr=linear:0.5->1@2step,cosine:1->0.1@3step; b2=linear:1->0.9@96img; '
    'ema_half_life_images=cosine:0.5->1@5step'
  )
  config_lib.validate(tiny_config)
  full, resumed = _whole_and_resumed(tiny_config, tmp_path, 3)
  _assert_states_equal(full, resumed)
  # The schedules ran: G's last update (step 5) used b2 * (1 - 0.1 * 5 / 6) and g_lr * 0.1.
  hyper, t = full.g_opt_state.hyperparams, tiny_config.train
  np.testing.assert_allclose(float(hyper['b2']), t.b2 * (1 - 0.1 * 5 / 6), rtol=1e-6)
  np.testing.assert_allclose(float(hyper['learning_rate']), t.g_lr * 0.1, rtol=1e-6)
  # summary.json records those last values, the same for the resumed run.
  final = {
    name: json.loads((tmp_path / name / 'summary.json').read_text())['schedules_final']
    for name in ('whole', 'resumed')
  }
  assert final['whole'] == final['resumed']
  np.testing.assert_allclose(final['whole']['b2'], float(hyper['b2']), rtol=1e-6)
  np.testing.assert_allclose(final['whole']['g_lr'], float(hyper['learning_rate']), rtol=1e-6)
  # H * cosine 0.5->1 at step 5 of 5 = 64, under the ramp-up's 5 * 16 * 0.5 = 40 images.
  np.testing.assert_allclose(final['whole']['ema_half_life_images'], 40.0, rtol=1e-6)


def _stepper(config, ema_zero=False):
  """`run(step, batch) -> (state, metrics)`: one jitted train step (compiled once) from the
  config's initial state with `state.step = step`."""
  gan, state = create_state(config)
  if ema_zero:
    state = state.replace(ema_params=jax.tree.map(jnp.zeros_like, state.ema_params))
  step_fn = jax.jit(make_train_step_from_config(gan, config))
  return lambda step, batch: step_fn(state.replace(step=jnp.int32(step)), batch)


def _batch(seed=0):
  images = jax.random.uniform(jax.random.PRNGKey(seed), (1, B, 28, 28, 1), minval=-1, maxval=1)
  return {'image': images}


def test_penalty_weight_used_at_step_s_is_the_schedules(tiny_config):
  """d_penalty (gamma/2 * R1, R1 on the real batch: the same at every step from one state)
  at step s with r1_weight=4 and a factor 2 -> 0 over 4 steps is the unscheduled step's
  d_penalty (r1_weight=4) times 2 - s / 2."""
  batch = _batch()
  tiny_config.train.r1_weight = 4.0
  plain = float(_stepper(tiny_config)(0, batch)[1]['d_penalty'])
  assert plain > 0
  tiny_config.train.schedules = 'r1_weight=linear:2->0@4step'
  run = _stepper(tiny_config)
  for s in (0, 1, 3, 4, 9):
    got = float(run(s, batch)[1]['d_penalty'])
    np.testing.assert_allclose(got, plain * max(2 - s / 2, 0), rtol=1e-5, atol=0)


def _rate(step, half_life, rampup, batch=B):
  """1 - beta, StyleGAN2-ADA's formula in float64."""
  nimg = half_life if not rampup else min(half_life, step * batch * rampup)
  return 1 - 0.5 ** (batch / max(nimg, 1e-8))


@pytest.mark.parametrize('rampup', [0.0, 0.05])
def test_ema_half_life_gives_stylegan2_adas_beta(rampup):
  s = schedules.Schedules(batch_size=64, ema_half_life_images=10_000.0, ema_rampup=rampup)
  for step in (0, 1, 2, 10, 100, 3125, 3126, 10**5, 10**7):
    np.testing.assert_allclose(
      float(s.ema_rate(jnp.int32(step))), _rate(step, 10_000.0, rampup, 64), rtol=2e-6
    )
  assert schedules.Schedules(ema_half_life_images=0.0).ema_rate(5) is None  # off


def test_the_steps_ema_uses_the_half_life(tiny_config):
  """With the EMA zeroed before the step, the new EMA is (1 - beta) * G's new weights."""
  tiny_config.train.ema_half_life_images = 256.0
  tiny_config.train.ema_rampup = 0.5  # ramped up (to min(256, 8 * step)) before step 32
  run = _stepper(tiny_config, ema_zero=True)
  for step in (0, 1, 3, 40):
    state, _ = run(step, _batch())
    want = _rate(step, 256.0, 0.5)
    for g, ema in zip(jax.tree.leaves(state.g_params), jax.tree.leaves(state.ema_params)):
      np.testing.assert_allclose(np.asarray(ema), want * np.asarray(g), rtol=2e-6, atol=1e-12)
    if step == 0:  # beta = 0: the EMA is G itself
      _assert_states_equal(state.ema_params, state.g_params)


def test_no_half_life_keeps_the_constant_decay_exactly(tiny_config):
  tiny_config.train.ema_decay = 0.9
  state, _ = _stepper(tiny_config, ema_zero=True)(2, _batch())
  for g, ema in zip(jax.tree.leaves(state.g_params), jax.tree.leaves(state.ema_params)):
    np.testing.assert_array_equal(np.asarray(ema), np.float32(1 - 0.9) * np.asarray(g))


def test_schedules_compose_with_per_replica_values(tiny_config, tmp_path):
  """Per-replica g_lr and r1_weight times the shared schedules: each replica equals the
  separate run with its values and the same schedules."""
  tiny_config.num_replicas = 2
  tiny_config.replica_seeds = False
  tiny_config.train.steps = 3
  tiny_config.train.r1_weight = 1.0
  tiny_config.replica_values = 'train.g_lr=1e-4,4e-4;train.r1_weight=1,8'
  tiny_config.train.schedules = 'g_lr=cosine:1->0.1@2step; r1_weight=linear:0.5->0@3step'
  tiny_config.replica_impl = 'vmap'
  config_lib.validate(tiny_config)
  states = train.train_and_evaluate(tiny_config, str(tmp_path / 'replicated'))
  for i, single in enumerate(replicas.replica_configs(tiny_config)):
    separate = train.train_and_evaluate(single, str(tmp_path / f'separate_{i}'))
    _assert_close(replicas.unstack(states, i), separate)
  g0, g1 = (jax.tree.leaves(replicas.unstack(states, i).g_params)[0] for i in (0, 1))
  assert not np.allclose(g0, g1)
  # Each replica's summary.json: its own base values times the factors of the last step (2).
  for i, (g_lr, r1) in enumerate([(1e-4, 1.0), (4e-4, 8.0)]):
    summary = json.loads((tmp_path / 'replicated' / f'replica_{i}' / 'summary.json').read_text())
    assert summary['g_lr'] == g_lr  # the base rate, as before
    final = summary['schedules_final']
    assert list(final) == ['g_lr', 'r1_weight']
    np.testing.assert_allclose(final['g_lr'], g_lr * 0.1, rtol=1e-6)
    np.testing.assert_allclose(final['r1_weight'], r1 * 0.5 * (1 - 2 / 3), rtol=1e-6)


def test_summary_records_the_scheduled_fields_final_values(tiny_config, tmp_path):
  """summary.json's schedules_final: each scheduled field at the last step (state.step 3 of
  a 4-step run), in closed form; the other keys as without schedules."""
  tiny_config.train.steps = 4
  tiny_config.train.r1_weight = 2.0
  tiny_config.train.schedules = 'g_lr,d_lr=cosine:1->0.25@3step; r1_weight=cosine:1->0@6step'
  config_lib.validate(tiny_config)
  train.train_and_evaluate(tiny_config, str(tmp_path / 'run'))
  summary = json.loads((tmp_path / 'run' / 'summary.json').read_text())
  t = tiny_config.train
  final = summary['schedules_final']
  assert list(final) == ['g_lr', 'd_lr', 'r1_weight']
  np.testing.assert_allclose(final['g_lr'], t.g_lr * 0.25, rtol=1e-6)  # the cosine's end
  np.testing.assert_allclose(final['d_lr'], t.d_lr * 0.25, rtol=1e-6)
  # Halfway along 1 -> 0 over 6 steps at step 3: (1 + cos(pi / 2)) / 2 = 0.5.
  np.testing.assert_allclose(final['r1_weight'], 2.0 * 0.5, rtol=1e-6)
  assert summary['g_lr'] == t.g_lr and summary['d_lr'] == t.d_lr and summary['end_step'] == 4
  assert train.schedules_final(t, 4) == final
  # Without schedules: an empty dict.
  tiny_config.train.schedules = ''
  assert train.schedules_final(tiny_config.train, 4) == {}


BAD = [
  ('g_lr', 'is not FIELD=KIND:A->B@N'),
  ('lr=cosine:1->0@5step', "'lr' cannot be scheduled"),
  ('g_lr=cosnie:1->0@5step', "unknown schedule 'cosnie'"),
  ('g_lr=cosine:1->0', 'needs a length'),
  ('g_lr=cosine:1->0@5', "the length '5' is not N with a unit"),
  ('g_lr=cosine:1->0@5days', "the length '5days' is not N with a unit"),
  ('g_lr=cosine:1@5step', 'cosine needs a start and an end'),
  ('g_lr=linear:1->-1@5step', 'factors must be >= 0'),
  ('g_lr=linear:1->nan@5step', "factor 'nan' must be finite"),
  ('g_lr=linear:x->1@5step', "factor 'x' is not a number"),
  ('g_lr=linear:0->1@0step', 'the length must be > 0'),
  ('g_lr=constant:1,linear:1->0@5step', "'constant:1' needs a length"),
  ('g_lr=constant:1@2step; g_lr=constant:2', 'g_lr is scheduled twice'),
  ('r1_weight=linear:0->1@5step', 'train.r1_weight=0.0 is off'),
  ('ema_half_life_images=linear:0->1@5step', 'train.ema_half_life_images=0.0 is off'),
  ('b2=linear:1->1.01@5step', 'Adam needs beta2 < 1'),
]


@pytest.mark.parametrize('spec, fragment', BAD, ids=[b[0] for b in BAD])
def test_bad_schedules_are_one_line_config_errors(spec, fragment):
  c = config_lib.base_config()
  c.train.schedules = spec
  with pytest.raises(ConfigError) as e:
    config_lib.validate(c)
  message = str(e.value)
  assert fragment in message and '\n' not in message, message
  assert message.startswith(f'train.schedules={spec!r} is invalid: ')


@pytest.mark.parametrize(
  'fields, fragment',
  [
    ({'ema_half_life_images': -1.0}, 'train.ema_half_life_images=-1.0 is invalid'),
    ({'ema_half_life_images': math.inf}, 'must be a finite number >= 0'),
    ({'ema_rampup': 0.05}, 'set train.ema_half_life_images > 0'),
    ({'ema_half_life_images': 1e4, 'ema_decay': 0.0}, 'set train.ema_decay > 0'),
  ],
)
def test_bad_ema_half_life_fields_are_one_line_config_errors(fields, fragment):
  c = config_lib.base_config()
  for name, value in fields.items():
    c.train[name] = value
  with pytest.raises(ConfigError) as e:
    config_lib.validate(c)
  assert fragment in str(e.value) and '\n' not in str(e.value), str(e.value)
