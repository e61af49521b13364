"""K GANs in one vmapped program (gan_jax/training/replicas.py) on real MNIST.

Replica i must equal the separate run with the same seed; the replica folders must be
ordinary run folders (resumable alone); interruption and bad input behave as for one run.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

from gan_jax.training import replicas, train
from gan_jax.training.checkpoint import Checkpointer
from gan_jax.errors import ConfigError
from gan_jax.cli.main import main
from test_train import _lines


def _assert_close(a, b, rtol=2e-5, atol=2e-6):
  la, lb = jax.tree.leaves(jax.device_get(a)), jax.tree.leaves(jax.device_get(b))
  assert len(la) == len(lb)
  for x, y in zip(la, lb):
    assert x.shape == y.shape and x.dtype == y.dtype
    if np.issubdtype(x.dtype, np.floating):
      np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)
    else:
      np.testing.assert_array_equal(x, y)


def _strip(lines):
  return [{k: v for k, v in l.items() if not k.startswith('perf/')} for l in lines]


def test_each_replica_equals_the_separate_run_and_resumes_alone(tiny_config, tmp_path):
  """3 replicas (seeds 5, 6, 7) of the tiny MNIST DCGAN, 6 steps, in one program: replicas 0
  and 2 equal the separate runs with their seeds, folder and all; replica 1's folder resumes
  on its own, as an ordinary run, to the state of an uninterrupted 8-step run."""
  tiny_config.seed = 5
  tiny_config.num_replicas = 3
  tiny_config.train.steps = 6
  config, workdir = tiny_config, tmp_path / 'replicated'
  states = train.train_and_evaluate(config, str(workdir))
  assert replicas.resolve_replica_impl(config) == 'unroll'  # a conv model on the CPU
  assert np.asarray(states.step).tolist() == [6, 6, 6]
  separate = {}
  for i in (0, 2):  # the first and the last replica
    single = replicas.replica_configs(config)[i]
    assert single.seed == 5 + i and single.num_replicas == 1
    separate[i] = train.train_and_evaluate(single, str(tmp_path / f'seed_{5 + i}'))
    _assert_close(replicas.unstack(states, i), separate[i])
    # Its folder is the separate run's: same checkpoints (to fp32), logs and config.
    rdir = workdir / f'replica_{i}'
    with Checkpointer(str(rdir)) as ckpt:
      assert ckpt.all_steps() == [3, 6]
      _assert_close(ckpt.restore(separate[i]), separate[i])
    got, want = _strip(_lines(str(rdir))), _strip(_lines(str(tmp_path / f'seed_{5 + i}')))
    assert [l['step'] for l in got] == [l['step'] for l in want] == [2, 4, 6]
    for g, w in zip(got, want):
      assert g.keys() == w.keys()
      np.testing.assert_allclose([g[k] for k in g], [w[k] for k in g], rtol=1e-4, atol=1e-5)
    assert json.loads((rdir / 'config.json').read_text())['seed'] == 5 + i
    want_grids = sorted(os.listdir(tmp_path / f'seed_{5 + i}' / 'samples'))
    assert sorted(os.listdir(rdir / 'samples')) == want_grids and want_grids
  # Different seeds really are different GANs.
  g0 = jax.tree.leaves(replicas.unstack(states, 0).g_params)[0]
  g1 = jax.tree.leaves(replicas.unstack(states, 1).g_params)[0]
  assert not np.allclose(g0, g1)

  # Replica 1's folder is an ordinary run folder: `gan-jax train` resumes it alone.
  single = replicas.replica_configs(config)[1]
  single.train.steps = 8
  resumed = train.train_and_evaluate(single, str(workdir / 'replica_1'))
  assert int(resumed.step) == 8
  reference = train.train_and_evaluate(single, str(tmp_path / 'reference'))
  _assert_close(resumed, reference)


def test_interrupted_replicas_resume_from_their_last_common_checkpoint(tiny_config, tmp_path):
  tiny_config.num_replicas = 2
  tiny_config.train.steps = 6
  workdir = tmp_path / 'run'
  uninterrupted = train.train_and_evaluate(tiny_config, str(tmp_path / 'whole'))
  tiny_config.train.steps = 4
  train.train_and_evaluate(tiny_config, str(workdir))
  # A crash between the replicas' saves: replica 1 lacks the newest checkpoint.
  with Checkpointer(str(workdir / 'replica_1')) as ckpt:
    ckpt._manager.delete(4)  # pylint: disable=protected-access
  tiny_config.train.steps = 6
  resumed = train.train_and_evaluate(tiny_config, str(workdir))
  _assert_close(resumed, uninterrupted, rtol=0, atol=0)
  for i in range(2):
    steps = [l['step'] for l in _lines(str(workdir / f'replica_{i}'))]
    assert steps == [2, 4, 6]  # every step logged once


def test_cli_trains_replicas_and_rejects_what_replicas_cannot_share(tiny_config, tmp_path, capsys):
  base = [
    'train',
    '--config',
    str(__import__('conftest').REPO / 'experiments' / 'mnist_dcgan.py') + ':tiny',
    f'--config.data.data_dir={tiny_config.data.data_dir}',
    '--config.train.steps=2',
  ]
  assert main([*base, '--workdir', str(tmp_path / 'ok'), '--config.num_replicas=2']) == 0
  assert 'replica_{0..1}' in capsys.readouterr().out
  for i in range(2):
    summary = json.loads((tmp_path / 'ok' / f'replica_{i}' / 'summary.json').read_text())
    assert summary['end_step'] == 2 and summary['replica'] == i and summary['num_replicas'] == 2
  status = main(
    [
      *base,
      '--workdir',
      str(tmp_path / 'bad'),
      '--config.num_replicas=2',
      '--config.replica_values=model.g_width=8,16',
    ]
  )
  assert status == 2
  assert "'model.g_width' cannot differ between replicas" in capsys.readouterr().err
  assert main([*base, '--workdir', str(tmp_path / 'bad'), '--config.num_replicas=0']) == 2
  assert 'num_replicas=0 is invalid' in capsys.readouterr().err


def test_per_replica_learning_rates_and_penalty_weights_equal_separate_runs(tiny_config, tmp_path):
  tiny_config.num_replicas = 3
  tiny_config.replica_seeds = False  # one seed: only the hyperparameters differ
  tiny_config.train.steps = 4
  tiny_config.replica_values = (
    'train.d_lr=1e-4,4e-4,2e-4;train.b1=0.5,0.0,0.5;train.r1_weight=0,10,1'
  )
  # The other tests run 'auto' (unrolled on a CPU); this one runs the vmapped program.
  tiny_config.replica_impl = 'vmap'
  states = train.train_and_evaluate(tiny_config, str(tmp_path / 'replicated'))
  configs = replicas.replica_configs(tiny_config)
  assert [(c.seed, c.train.d_lr, c.train.b1, c.train.r1_weight) for c in configs] == [
    (0, 1e-4, 0.5, 0.0),
    (0, 4e-4, 0.0, 10.0),
    (0, 2e-4, 0.5, 1.0),
  ]
  for i in (0, 1):  # no penalty (computed, weighted 0) and another lr, b1 and penalty
    separate = train.train_and_evaluate(configs[i], str(tmp_path / f'separate_{i}'))
    _assert_close(replicas.unstack(states, i), separate)
    summary = json.loads((tmp_path / 'replicated' / f'replica_{i}' / 'config.json').read_text())
    assert summary['train']['d_lr'] == configs[i].train.d_lr and summary['replica_values'] == ''
  d0, d1 = (jax.tree.leaves(replicas.unstack(states, i).d_params)[0] for i in (0, 1))
  assert not np.allclose(d0, d1)


@pytest.mark.parametrize(
  'values, fragment',
  [
    ('train.g_lr=1e-4', 'has 1 values for num_replicas=2'),
    ('model.d_width=8,16', "'model.d_width' cannot differ between replicas"),
    ('train.g_lr=1e-4,fast', "train.g_lr needs numbers, got '1e-4,fast'"),
    ('train.g_lr=1e-4,2e-4;train.g_lr=1e-4,2e-4', 'train.g_lr is given twice'),
  ],
)
def test_bad_replica_values_are_one_line_errors(tiny_config, tmp_path, values, fragment):
  tiny_config.num_replicas = 2
  tiny_config.replica_values = values
  with pytest.raises(ConfigError, match='replica_values=') as info:
    train.train_and_evaluate(tiny_config, str(tmp_path / 'run'))
  assert fragment in str(info.value)
  assert not (tmp_path / 'run').exists()


def test_configs_that_differ_beyond_the_seed_are_refused(tiny_config, tmp_path):
  other = replicas.replica_configs(tiny_config)[0]
  other.model.g_width *= 2
  with pytest.raises(ConfigError, match=r'replica 1 differs from replica 0 in model\.g_width'):
    train.train_replicas([tiny_config, other], [str(tmp_path / 'a'), str(tmp_path / 'b')])
  with pytest.raises(ConfigError, match='distinct'):
    train.train_replicas([tiny_config, tiny_config], [str(tmp_path / 'a')] * 2)
  assert not (tmp_path / 'a').exists()  # refused before anything was written


def test_auto_replica_impl_unrolls_conv_models_on_cpu_only(tiny_config, tmp_path):
  assert jax.default_backend() == 'cpu'
  assert replicas.resolve_replica_impl(tiny_config) == 'unroll'
  tiny_config.model.name = 'mlp'
  assert replicas.resolve_replica_impl(tiny_config) == 'vmap'
  tiny_config.replica_impl = 'unroll'
  assert replicas.resolve_replica_impl(tiny_config) == 'unroll'
  tiny_config.model.name = 'dcgan28'
  tiny_config.replica_impl = 'pmap'
  tiny_config.num_replicas = 2
  with pytest.raises(ConfigError, match="replica_impl='pmap' is invalid.*auto, vmap, unroll"):
    train.train_and_evaluate(tiny_config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()
  with pytest.raises(ValueError, match="impl='pmap' is invalid"):
    replicas.make_replicated_train_step(lambda state, batch: (state, {}), impl='pmap')


# -- One loop: the reliability promises of a single run hold for replicas (issue 16). --------


def test_replicas_roll_back_together_and_name_the_replica(
  tiny_config, tmp_path, monkeypatch, caplog
):
  """A NaN in replica 0's batch at step 5 (replica 1's data is clean): both replicas go back
  to their checkpoint of step 3 with both learning rates halved and on to step 6, as a
  replicated run of 3 steps at the configured rates and 3 more at half of them does."""
  from test_reliability import _poison  # pylint: disable=g-import-not-at-top

  tiny_config.num_replicas = 2
  tiny_config.on_nonfinite = 'rollback'
  built = _poison(monkeypatch, steps=[5], times=1)  # the first stream opened: replica 0's
  workdir = tmp_path / 'rollback'
  state = train.train_and_evaluate(tiny_config, str(workdir))
  assert built == [0, 0, 3, 3]  # both streams restarted at the checkpoint's step
  assert 'rollback 1 of 3: resuming from step 3 with learning rates x0.5' in caplog.text
  for i in range(2):
    rdir = workdir / f'replica_{i}'
    rollbacks = json.loads((rdir / 'rollbacks.json').read_text())
    assert len(rollbacks) == 1 and rollbacks[0]['restored_step'] == 3
    assert rollbacks[0]['error'].startswith(f'replica 0 ({workdir / "replica_0"}): non-finite')
    summary = json.loads((rdir / 'summary.json').read_text())
    assert summary['rollbacks'] == 1 and summary['lr_scale'] == 0.5
    lines = _lines(str(rdir))
    assert [l['step'] for l in lines] == [2, 4, 6]  # step 4 once, the redone one
    assert all(0 <= l['perf/data_wait_fraction'] <= 1 for l in lines)

  monkeypatch.undo()
  tiny_config.on_nonfinite = 'stop'
  tiny_config.train.steps = 3
  train.train_and_evaluate(tiny_config, str(tmp_path / 'reference'))
  tiny_config.train.steps = 6
  tiny_config.train.g_lr *= 0.5
  tiny_config.train.d_lr *= 0.5
  reference = train.train_and_evaluate(tiny_config, str(tmp_path / 'reference'))
  _assert_close(state, reference, rtol=0, atol=0)


def test_replicas_stop_on_a_nan_naming_the_replica(tiny_config, tmp_path, monkeypatch):
  from gan_jax.errors import NonFiniteError  # pylint: disable=g-import-not-at-top
  from test_reliability import _poison  # pylint: disable=g-import-not-at-top

  tiny_config.num_replicas = 2
  _poison(monkeypatch, steps=[5], times=2)
  with pytest.raises(
    NonFiniteError, match=r'^replica 0 \(.*replica_0\): non-finite d_loss=nan at step 5'
  ):
    train.train_and_evaluate(tiny_config, str(tmp_path))
  for i in range(2):
    with Checkpointer(str(tmp_path / f'replica_{i}')) as ckpt:
      assert ckpt.all_steps() == [3]  # the last good checkpoint of each replica is kept


def test_a_damaged_replica_checkpoint_falls_back_to_the_last_common_one(
  tiny_config, tmp_path, caplog
):
  """Replica 1's newest checkpoint is garbled (same size, other bytes): it is named, moved
  aside, and every replica resumes from their previous common step to the uninterrupted
  result, where the single run would fall back the same way (test_train.py)."""
  import glob  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top

  tiny_config.num_replicas = 2
  full = train.train_and_evaluate(tiny_config, str(tmp_path / 'full'))
  damaged = tmp_path / 'damaged'
  shutil.copytree(tmp_path / 'full', damaged)
  pattern = str(damaged / 'replica_1' / 'checkpoints' / '6' / 'state' / '**' / 'd' / '*')
  biggest = max(glob.glob(pattern), key=os.path.getsize)
  with open(biggest, 'r+b') as f:
    f.seek(os.path.getsize(biggest) // 2)
    f.write(bytes(range(256)) * 4)
  resumed = train.train_and_evaluate(tiny_config, str(damaged))
  assert (
    'Replica 1: checkpoint' in caplog.text
    and 'replica_1/checkpoints/6 is unreadable' in caplog.text
  )
  assert 'resumed every replica from step 3' in caplog.text
  assert sorted(os.listdir(damaged / 'replica_1' / 'checkpoints')) == ['3', '6', '6.unreadable']
  assert sorted(os.listdir(damaged / 'replica_0' / 'checkpoints')) == ['3', '6']
  _assert_close(full, resumed, rtol=0, atol=0)


def test_replicas_with_no_readable_common_checkpoint_refuse_in_one_line(tiny_config, tmp_path):
  """Every common checkpoint of replica 0 unreadable: nothing is moved, the error names the
  replica, and the main command turns it into one line."""
  import shutil  # pylint: disable=g-import-not-at-top

  tiny_config.num_replicas = 2
  tiny_config.train.steps = 3
  train.train_and_evaluate(tiny_config, str(tmp_path))
  state_dir = tmp_path / 'replica_0' / 'checkpoints' / '3' / 'state'
  shutil.rmtree(state_dir)
  state_dir.mkdir()
  with pytest.raises(
    FileNotFoundError, match=r'^replica 0 \(.*replica_0\): none of the checkpoints'
  ):
    train.train_and_evaluate(tiny_config, str(tmp_path))
  assert sorted(os.listdir(tmp_path / 'replica_0' / 'checkpoints')) == ['3']
