"""LeCam in the train step (Tseng et al. 2021): its EMAs live in GANState.extras, are updated
from each D update's outputs, checkpointed and resumed; and checkpoints written before
`extras` existed still restore."""

from __future__ import annotations

import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from gan_jax.training import train
from gan_jax.training.checkpoint import Checkpointer, state_digest
from gan_jax.errors import ConfigError
from gan_jax.core.losses import get_loss
from gan_jax.core.state import GANState, create_state
from gan_jax.core.train_step import Stabilizers, make_train_step
from test_train import _assert_states_equal


def _batch(config, seed=0):
  shape = (1, config.train.batch_size, 28, 28, 1)
  return {'image': np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)}


def _step(config, weight):
  config.train.lecam_weight = weight
  gan, state = create_state(config)
  step = jax.jit(
    make_train_step(
      gan, get_loss(config.train.loss), stabilizers=Stabilizers.from_config(config.train)
    )
  )
  return state, step


def test_lecam_emas_follow_d_outputs_and_the_penalty_scales_with_its_weight(tiny_config):
  tiny_config.train.loss = 'hinge'  # raw scores: d_real and d_fake are the mean logits
  state, step = _step(tiny_config, 0.3)
  assert {k: float(v) for k, v in state.extras.items()} == {
    'lecam_ema_real': 0.0,
    'lecam_ema_fake': 0.0,
  }
  s1, m1 = step(state, _batch(tiny_config, 0))
  decay = tiny_config.train.lecam_decay
  np.testing.assert_allclose(s1.extras['lecam_ema_real'], (1 - decay) * m1['d_real'], rtol=1e-5)
  np.testing.assert_allclose(s1.extras['lecam_ema_fake'], (1 - decay) * m1['d_fake'], rtol=1e-5)
  s2, m2 = step(s1, _batch(tiny_config, 1))
  for side in ('real', 'fake'):
    want = decay * s1.extras[f'lecam_ema_{side}'] + (1 - decay) * m2[f'd_{side}']
    np.testing.assert_allclose(s2.extras[f'lecam_ema_{side}'], want, rtol=1e-5, atol=1e-8)
  assert float(m1['d_penalty']) > 0

  # The same forward pass with twice the weight: the penalty doubles, the loss is the same,
  # and D moves differently than without LeCam.
  state2, step2 = _step(tiny_config, 0.6)
  _, m1_double = step2(state2, _batch(tiny_config, 0))
  np.testing.assert_allclose(m1_double['d_penalty'], 2 * m1['d_penalty'], rtol=1e-5)
  np.testing.assert_allclose(m1_double['d_loss'], m1['d_loss'], rtol=1e-6)
  state0, step0 = _step(tiny_config, 0.0)
  assert state0.extras == {}
  s1_off, m1_off = step0(state0, _batch(tiny_config, 0))
  assert 'd_penalty' not in m1_off and s1_off.extras == {}
  # (Adam's first update is +-lr wherever the gradient's sign is the same: compare them all.)
  pairs = zip(jax.tree.leaves(s1.d_params), jax.tree.leaves(s1_off.d_params))
  assert any(not np.array_equal(on, off) for on, off in pairs)


def test_a_lecam_run_resumes_its_emas_and_refuses_to_resume_without_lecam(tiny_config, tmp_path):
  tiny_config.train.lecam_weight = 0.3
  tiny_config.train.steps = 6
  whole = train.train_and_evaluate(tiny_config, str(tmp_path / 'whole'))
  assert float(whole.extras['lecam_ema_real']) != 0.0
  tiny_config.train.steps = 3
  train.train_and_evaluate(tiny_config, str(tmp_path / 'resumed'))
  tiny_config.train.steps = 6
  resumed = train.train_and_evaluate(tiny_config, str(tmp_path / 'resumed'))
  _assert_states_equal(resumed, whole)

  tiny_config.train.lecam_weight = 0.0
  with pytest.raises(ConfigError, match=r'train\.lecam \(on\): True -> False'):
    train.train_and_evaluate(tiny_config, str(tmp_path / 'resumed'))


def test_a_checkpoint_written_before_extras_existed_restores(tiny_config, tmp_path):
  _, state = create_state(tiny_config)
  assert state.extras == {}
  old = {k: v for k, v in vars(state).items() if k != 'extras'}  # the GANState of before
  with Checkpointer(str(tmp_path)) as ckpt:
    ckpt._manager.save(  # pylint: disable=protected-access
      7,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(old),
        meta=ocp.args.JsonSave({'step': 7, 'sha256': state_digest(state)}),
      ),
    )
  with Checkpointer(str(tmp_path)) as ckpt:
    restored = ckpt.restore(state)
  assert isinstance(restored, GANState) and restored.extras == {}
  _assert_states_equal(restored, state)


def test_no_checkpoint_is_moved_aside_when_none_fits_the_state(tiny_config, tmp_path):
  tiny_config.train.steps = 3
  train.train_and_evaluate(tiny_config, str(tmp_path))
  tiny_config.train.lecam_weight = 0.3  # a state with LeCam EMAs the checkpoints lack
  _, target = create_state(tiny_config)
  before = sorted(os.listdir(tmp_path / 'checkpoints'))
  assert before  # the run's checkpoints
  with Checkpointer(str(tmp_path)) as ckpt:
    with pytest.raises(FileNotFoundError, match='they were left in place'):
      ckpt.restore(target)
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == before  # none renamed .unreadable
