"""The training loop on real MNIST: files written, learning, resume equality, NaN handling."""

import json
import os

import jax
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from gan_jax.data import pipeline as data_lib
from gan_jax.training import train
from gan_jax.training.checkpoint import Checkpointer


def _lines(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(l) for l in f]


def _whole_and_resumed(config, tmp_path, stop: int):
  """(final state of `config.train.steps` steps in one run in tmp_path/whole, that of a run
  in tmp_path/resumed stopped at step `stop` and resumed to the end). `config` is left as
  it was."""
  steps = config.train.steps
  whole = train.train_and_evaluate(config, str(tmp_path / 'whole'))
  config.train.steps = stop
  train.train_and_evaluate(config, str(tmp_path / 'resumed'))
  config.train.steps = steps
  return whole, train.train_and_evaluate(config, str(tmp_path / 'resumed'))


def _assert_states_equal(a, b):
  la, lb = jax.tree.leaves(jax.device_get(a)), jax.tree.leaves(jax.device_get(b))
  assert len(la) == len(lb)
  for x, y in zip(la, lb):
    np.testing.assert_array_equal(x, y)


def test_short_real_mnist_run_writes_checkpoints_samples_and_logs(tiny_config, tmp_path):
  workdir = str(tmp_path / 'run')
  state = train.train_and_evaluate(tiny_config, workdir)
  assert int(state.step) == 6
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['3', '6']
  assert sorted(os.listdir(os.path.join(workdir, 'samples'))) == [
    'step_0000003.png',
    'step_0000006.png',
  ]
  grid = np.asarray(Image.open(os.path.join(workdir, 'samples', 'step_0000006.png')))
  assert grid.shape == (2 * (4 * 30 + 2), 2 * (4 * 30 + 2))  # 16 images of 28 px, 2 px gaps, x2
  lines = _lines(workdir)
  assert [l['step'] for l in lines] == [2, 4, 6]
  for l in lines:
    assert np.isfinite([l['d_loss'], l['g_loss']]).all() and 0 <= l['d_real'] <= 1
    assert l['perf/images_per_sec'] > 0 and 0 <= l['perf/data_wait_fraction'] <= 1
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(workdir))
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['data']['data_dir'] == tiny_config.data.data_dir
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  assert summary['end_step'] == 6 and summary['images_per_sec'] > 0


def test_discriminator_learns_on_real_mnist(tiny_config, tmp_path):
  """60 steps are enough for D to separate real digits from an untrained G's output."""
  tiny_config.train.steps = 60
  tiny_config.log_every = 10
  tiny_config.checkpoint_every = 60
  tiny_config.sample_every = 60
  train.train_and_evaluate(tiny_config, str(tmp_path))
  lines = _lines(str(tmp_path))
  first, last = lines[0], lines[-1]
  assert last['d_loss'] < first['d_loss'] < 1.45  # starts near 2 log 2 = 1.386
  assert last['d_real'] > last['d_fake']


def test_resume_gives_the_same_final_state_as_an_uninterrupted_run(tiny_config, tmp_path):
  full = train.train_and_evaluate(tiny_config, str(tmp_path / 'full'))
  resumed_dir = str(tmp_path / 'resumed')
  tiny_config.train.steps = 3
  train.train_and_evaluate(tiny_config, resumed_dir)
  tiny_config.train.steps = 6
  resumed = train.train_and_evaluate(tiny_config, resumed_dir)
  with open(os.path.join(resumed_dir, 'summary.json')) as f:
    assert json.load(f)['start_step'] == 3
  _assert_states_equal(full, resumed)
  strip = lambda ls: [{k: v for k, v in l.items() if not k.startswith('perf/')} for l in ls]
  resumed_log, full_log = strip(_lines(resumed_dir)), strip(_lines(str(tmp_path / 'full')))
  steps = [l['step'] for l in resumed_log]
  assert steps == sorted(set(steps))  # no step logged twice
  # Identical values; the short run also logged its last step (3).
  assert [l for l in resumed_log if l['step'] != 3] == full_log
  # Running a finished run again changes nothing.
  again = train.train_and_evaluate(tiny_config, resumed_dir)
  _assert_states_equal(full, again)


def test_nan_loss_stops_the_run_naming_the_step_and_keeps_the_last_good_checkpoint(
  tiny_config, tmp_path, monkeypatch
):
  real_build = data_lib.build_train_dataset

  def poisoned(*args, **kwargs):  # step 5's real batch is NaN
    ds = real_build(*args, **kwargs)
    return ds.enumerate().map(
      lambda i, b: {**b, 'image': tf.where(i + kwargs['start_step'] == 4, np.nan, b['image'])}
    )

  monkeypatch.setattr(data_lib, 'build_train_dataset', poisoned)
  with pytest.raises(train.NonFiniteError, match=r'non-finite d_loss=nan at step 5'):
    train.train_and_evaluate(tiny_config, str(tmp_path))
  with Checkpointer(str(tmp_path)) as ckpt:
    assert ckpt.all_steps() == [3]
  assert [l['step'] for l in _lines(str(tmp_path))] == [2, 4]


def test_missing_dataset_names_the_data_dir(tiny_config, tmp_path):
  empty = tmp_path / 'no_data'
  empty.mkdir()
  tiny_config.data.data_dir = str(empty)
  with pytest.raises(data_lib.DatasetNotFoundError, match=str(empty)):
    train.train_and_evaluate(tiny_config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run' / 'checkpoints').exists() or not os.listdir(
    tmp_path / 'run' / 'checkpoints'
  )


@pytest.mark.parametrize('signame', ['SIGTERM', 'SIGINT'])
def test_sigterm_saves_the_current_step_and_exits_0(tiny_config, tmp_path, signame):
  """Preemption (SIGTERM) or Ctrl-C (SIGINT): the step in flight finishes, is checkpointed,
  and the process exits 0 within 10 s."""
  import signal  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top

  from conftest import REPO  # pylint: disable=g-import-not-at-top

  workdir = tmp_path / 'preempted'
  gan_jax = str(os.path.join(os.path.dirname(sys.executable), 'gan-jax'))
  proc = subprocess.Popen(
    [
      gan_jax,
      'train',
      '--config',
      str(REPO / 'experiments' / 'mnist_dcgan.py') + ':tiny',
      '--workdir',
      str(workdir),
      f'--config.data.data_dir={tiny_config.data.data_dir}',
      '--config.train.steps=100000',
      '--config.checkpoint_every=100000',
    ],
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  metrics = workdir / 'metrics.jsonl'
  deadline = time.time() + 300
  while not (metrics.exists() and metrics.stat().st_size) and time.time() < deadline:
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    time.sleep(0.05)
  sent = time.time()
  proc.send_signal(getattr(signal, signame))
  out, err = proc.communicate(timeout=60)
  elapsed = time.time() - sent
  assert proc.returncode == 0, err[-2000:]
  assert elapsed < 10
  assert f'Received {signame}' in err and 'run the same command again to resume' in out
  with open(workdir / 'summary.json') as f:
    summary = json.load(f)
  stopped = summary['end_step']
  assert summary['stopped_by_signal'] == signame and 2 <= stopped < 100000
  with Checkpointer(str(workdir)) as ckpt:
    assert ckpt.all_steps() == [stopped]
  # The checkpoint holds exactly the state of an uninterrupted run of that many steps.
  tiny_config.train.steps = stopped
  reference = train.train_and_evaluate(tiny_config, str(tmp_path / 'reference'))
  with Checkpointer(str(workdir)) as ckpt:
    _assert_states_equal(ckpt.restore(reference), reference)


@pytest.mark.parametrize('damage', ['truncate', 'garble'])
def test_unreadable_latest_checkpoint_falls_back_to_the_previous_one(
  tiny_config, tmp_path, caplog, damage
):
  import glob  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top

  full = train.train_and_evaluate(tiny_config, str(tmp_path / 'full'))
  damaged = tmp_path / 'damaged'
  shutil.copytree(tmp_path / 'full', damaged)
  data_files = glob.glob(str(damaged / 'checkpoints' / '6' / 'state' / '**' / 'd' / '*'))
  biggest = max(data_files, key=os.path.getsize)
  with open(biggest, 'r+b') as f:
    if damage == 'truncate':
      f.truncate(os.path.getsize(biggest) // 3)
    else:  # same size, different bytes: only the stored SHA-256 digest can tell
      f.seek(os.path.getsize(biggest) // 2)
      f.write(bytes(range(256)) * 4)
  resumed = train.train_and_evaluate(tiny_config, str(damaged))
  assert 'checkpoints/6 is unreadable' in caplog.text
  assert sorted(os.listdir(damaged / 'checkpoints')) == ['3', '6', '6.unreadable']
  _assert_states_equal(full, resumed)  # resumed from step 3 and redid steps 4-6 exactly


def test_resuming_with_another_model_shape_is_refused_with_a_diff(tiny_config, tmp_path):
  from gan_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top

  tiny_config.train.steps = 2
  train.train_and_evaluate(tiny_config, str(tmp_path))
  saved = (tmp_path / 'config.json').read_text()
  tiny_config.model.g_width = 16
  tiny_config.data.channels = 3
  with pytest.raises(ConfigError) as e:
    train.train_and_evaluate(tiny_config, str(tmp_path))
  assert 'data.channels: 1 -> 3' in str(e.value) and 'model.g_width: 8 -> 16' in str(e.value)
  assert 'new --workdir' in str(e.value)
  assert (tmp_path / 'config.json').read_text() == saved  # nothing in the workdir changed
  # Fields that do not change shapes may change: here, more steps and another learning rate.
  tiny_config.model.g_width, tiny_config.data.channels = 8, 1
  tiny_config.train.steps, tiny_config.train.g_lr = 4, 1e-4
  assert int(train.train_and_evaluate(tiny_config, str(tmp_path)).step) == 4


def test_a_run_from_before_a_model_field_existed_resumes(tiny_config, tmp_path):
  """config.json of an older version lacks fields added since (e.g. model.spectral_norm):
  they count as their defaults, so the run resumes instead of being refused."""
  tiny_config.train.steps = 3
  train.train_and_evaluate(tiny_config, str(tmp_path))
  path = tmp_path / 'config.json'
  old = json.loads(path.read_text())
  del old['model']['spectral_norm'], old['model']['pack']
  path.write_text(json.dumps(old))
  tiny_config.train.steps = 6
  assert int(train.train_and_evaluate(tiny_config, str(tmp_path)).step) == 6
  tiny_config.model.spectral_norm = True  # a real change is still refused
  path.write_text(json.dumps(old))
  with pytest.raises(train.ConfigError, match='model.spectral_norm: False -> True'):
    train.train_and_evaluate(tiny_config, str(tmp_path))
