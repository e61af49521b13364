"""Reliability: SIGKILL at random moments, non-finite rollback, a full disk, --overwrite.

The crash tests run real training of the tiny MNIST DCGAN in subprocesses and compare the
final state, bit for bit, with an uninterrupted run of the same config and seed.
"""

import glob
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO
from gan_jax.data import pipeline as data_lib
from gan_jax.training import train
from gan_jax.training.checkpoint import Checkpointer
from gan_jax.errors import NonFiniteError
from test_train import _assert_states_equal, _lines

CONFIG = str(REPO / 'experiments' / 'mnist_dcgan.py') + ':tiny'

# Runs `gan-jax train` in this interpreter after optional sabotage chosen by environment:
#   CRASH_AT_SAVE=N  SIGKILL itself inside Orbax's save of checkpoint N, after the files are
#                    written to the temporary folder and before the rename that commits them;
#   FSIZE_AFTER=N    after checkpoint N is written, cap the size of any file this process
#                    writes (RLIMIT_FSIZE) so the next checkpoint's data file cannot be
#                    written: the OS fails the write with EFBIG, as a full disk fails it
#                    with ENOSPC.
DRIVER = r"""
import os, resource, signal, sys
from gan_jax.training import checkpoint

from gan_jax.cli import main
crash_at = int(os.environ.get('CRASH_AT_SAVE', '-1'))
if crash_at >= 0:
  from orbax.checkpoint._src.path import atomicity
  finalize = atomicity.AtomicRenameTemporaryPath.finalize
  async def finalize_or_die(self, *args, **kwargs):
    if os.path.basename(str(self._final_path)) == str(crash_at):
      os.kill(os.getpid(), signal.SIGKILL)
    return await finalize(self, *args, **kwargs)
  atomicity.AtomicRenameTemporaryPath.finalize = finalize_or_die

fsize_after = int(os.environ.get('FSIZE_AFTER', '-1'))
if fsize_after >= 0:
  save = checkpoint.Checkpointer.save
  def save_then_cap(self, state, **kwargs):
    step = save(self, state, **kwargs)
    if step == fsize_after:
      signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
      resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    return step
  checkpoint.Checkpointer.save = save_then_cap

kill_at = os.environ.get('KILL_AT', '')  # a boundary at the end of the run: SIGKILL there
if kill_at == 'last_step':  # after the last step, before its checkpoint is written
  save = checkpoint.Checkpointer.save
  def die_before_last(self, state, **kwargs):
    if int(state.step) == int(os.environ['TOTAL']):
      os.kill(os.getpid(), signal.SIGKILL)
    return save(self, state, **kwargs)
  checkpoint.Checkpointer.save = die_before_last
elif kill_at == 'final_eval':  # inside the final evaluation, after the final checkpoint
  from gan_jax.training import run_actions, train
  evaluate = run_actions.evaluate_and_log
  def die_in_final(evaluator, gan, state, step, *args, **kwargs):
    if step == int(os.environ['TOTAL']):
      os.kill(os.getpid(), signal.SIGKILL)
    return evaluate(evaluator, gan, state, step, *args, **kwargs)
  train.evaluate_and_log = die_in_final
elif kill_at == 'summary':  # after everything but summary.json
  from gan_jax.training import train
  def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
  train._Training.write_summaries = die

sys.exit(main.main(sys.argv[1:]))
"""


def _command(workdir, data_dir, overrides):
  return [
    sys.executable,
    '-c',
    DRIVER,
    'train',
    '--config',
    CONFIG,
    '--workdir',
    str(workdir),
    f'--config.data.data_dir={data_dir}',
    *overrides,
  ]


def _last_logged_step(path) -> int:
  try:
    with open(path) as f:
      lines = f.read().splitlines()
  except FileNotFoundError:
    return 0
  for line in reversed(lines):
    try:
      return json.loads(line)['step']
    except ValueError:
      continue
  return 0


def _kill_when(proc, metrics_path, step, delay, timeout=300):
  """SIGKILLs `proc` `delay` seconds after its log reaches `step`; returns its exit code."""
  deadline = time.time() + timeout
  while _last_logged_step(metrics_path) < step:
    if proc.poll() is not None:
      return proc.returncode
    assert time.time() < deadline, 'the run never reached the step'
    time.sleep(0.005)
  time.sleep(delay)
  proc.send_signal(signal.SIGKILL)
  return proc.wait(timeout=60)


def _strip_perf(lines):
  return [{k: v for k, v in l.items() if not k.startswith('perf/')} for l in lines]


def _tmp_folders(workdir):
  return glob.glob(os.path.join(workdir, 'checkpoints', '*tmp*'))


def test_sigkill_at_three_random_moments_then_resume_is_bitwise_equal(tiny_config, tmp_path):
  """Killed by SIGKILL three times (once inside a checkpoint save) and resumed each time,
  the run ends with exactly the state, logs and samples of an uninterrupted run."""
  seed = int(os.environ.get('GAN_JAX_CRASH_SEED', time.time_ns() % 100_000))
  rng = random.Random(seed)
  where = f'(GAN_JAX_CRASH_SEED={seed} reproduces this draw)'
  overrides = {
    'train.steps': 30,
    'checkpoint_every': 4,
    'log_every': 1,
    'sample_every': 10,
    'keep_checkpoints': 3,
  }
  for key, value in overrides.items():
    tiny_config.update_from_flattened_dict({key: value})
  reference_dir = tmp_path / 'reference'
  reference = train.train_and_evaluate(tiny_config, str(reference_dir))

  workdir = tmp_path / 'crashed'
  metrics = workdir / 'metrics.jsonl'
  args = [f'--config.{k}={v}' for k, v in overrides.items()]
  command = _command(workdir, tiny_config.data.data_dir, args)
  env = dict(os.environ)

  # 1. A random moment early in the run.
  proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  assert _kill_when(proc, metrics, rng.randint(2, 10), rng.uniform(0, 0.2)) == -9, where
  # 2. Inside the save of a checkpoint: its files written, not yet committed.
  with Checkpointer(str(workdir)) as ckpt:
    latest = ckpt.latest_step() or 0
  crash_step = (latest // 4 + 2) * 4
  proc = subprocess.run(
    command, env={**env, 'CRASH_AT_SAVE': str(crash_step)}, capture_output=True, timeout=300
  )
  assert proc.returncode == -9, (where, proc.stderr[-2000:])
  assert _tmp_folders(workdir), 'the kill did not land inside the save'
  with Checkpointer(str(workdir)) as ckpt:
    assert ckpt.latest_step() == crash_step - 4, where  # the half-saved one is not listed
  # 3. Another random moment, later.
  proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  code = _kill_when(proc, metrics, rng.randint(crash_step, 27), rng.uniform(0, 0.2))
  assert code == -9, (where, proc.stderr.read()[-2000:])
  # Resume to the end.
  proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, (where, proc.stderr[-2000:])

  with Checkpointer(str(workdir)) as ckpt:
    assert ckpt.all_steps() == [24, 28, 30]  # keep_checkpoints=3, across the restarts
    _assert_states_equal(ckpt.restore(reference), reference)
  assert not _tmp_folders(workdir), 'an uncommitted checkpoint folder was left behind'
  # Every step logged exactly once, with the uninterrupted run's values.
  logged = _strip_perf(_lines(str(workdir)))
  assert [l['step'] for l in logged] == list(range(1, 31)), where
  assert logged == _strip_perf(_lines(str(reference_dir))), where
  for name in ('step_0000010.png', 'step_0000020.png', 'step_0000030.png'):
    assert (workdir / 'samples' / name).read_bytes() == (
      reference_dir / 'samples' / name
    ).read_bytes()


def _poison(monkeypatch, steps, times):
  """Makes the real batch of each step in `steps` NaN, in the first `times` data streams."""
  real_build = data_lib.build_train_dataset
  built = []

  def poisoned(*args, **kwargs):
    ds = real_build(*args, **kwargs)
    built.append(kwargs['start_step'])
    if len(built) > times:
      return ds
    bad = tf.constant([s - 1 for s in steps], tf.int64)  # the batch index of step s is s-1
    return ds.enumerate().map(
      lambda i, b: {
        **b,
        'image': tf.where(
          tf.reduce_any(tf.equal(i + kwargs['start_step'], bad)), np.nan, b['image']
        ),
      }
    )

  monkeypatch.setattr(data_lib, 'build_train_dataset', poisoned)
  return built


def test_rollback_reloads_the_last_good_checkpoint_with_lower_learning_rates(
  tiny_config, tmp_path, monkeypatch, caplog
):
  """NaN at step 5: back to the checkpoint of step 3, rates halved, and on to step 6; the
  result equals 3 steps at the configured rates followed by 3 at half of them."""
  tiny_config.on_nonfinite = 'rollback'
  tiny_config.rollback_lr_factor = 0.5
  built = _poison(monkeypatch, steps=[5], times=1)
  workdir = tmp_path / 'rollback'
  state = train.train_and_evaluate(tiny_config, str(workdir))
  assert built == [0, 3]  # the stream restarted at the checkpoint's step
  assert 'rollback 1 of 3: resuming from step 3 with learning rates x0.5' in caplog.text
  assert json.loads((workdir / 'rollbacks.json').read_text()) == [
    {'error': 'non-finite d_loss=nan at step 5', 'restored_step': 3, 'lr_scale': 0.5}
  ]
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['rollbacks'] == 1 and summary['lr_scale'] == 0.5
  assert [l['step'] for l in _lines(str(workdir))] == [2, 4, 6]  # step 4 once, the redone one

  monkeypatch.undo()
  tiny_config.train.steps = 3
  reference = train.train_and_evaluate(tiny_config, str(tmp_path / 'reference'))
  tiny_config.train.steps = 6
  tiny_config.train.g_lr *= 0.5
  tiny_config.train.d_lr *= 0.5
  reference = train.train_and_evaluate(tiny_config, str(tmp_path / 'reference'))
  _assert_states_equal(state, reference)


def test_rollback_gives_up_after_max_rollbacks_and_keeps_the_checkpoints(
  tiny_config, tmp_path, monkeypatch
):
  tiny_config.on_nonfinite = 'rollback'
  tiny_config.max_rollbacks = 2
  _poison(monkeypatch, steps=[5], times=100)  # the same NaN every time
  with pytest.raises(NonFiniteError, match=r'at step 5.*2 rollbacks .* max_rollbacks=2'):
    train.train_and_evaluate(tiny_config, str(tmp_path))
  with Checkpointer(str(tmp_path)) as ckpt:
    assert ckpt.all_steps() == [3]
  rollbacks = json.loads((tmp_path / 'rollbacks.json').read_text())
  assert [r['lr_scale'] for r in rollbacks] == [0.5, 0.25]


# What TensorFlow and XLA's C++ code logs to stderr as they start, on every run.
_NATIVE_STARTUP_LOG = (
  r'[IWE]\d{4} |WARNING: All log messages before absl::InitializeLog|To enable the following'
)


def test_full_disk_during_a_save_keeps_the_previous_checkpoint_usable(tiny_config, tmp_path):
  """The write of checkpoint 6 fails in the OS (a file-size cap: EFBIG, as ENOSPC on a full
  disk): the run exits 1 with one line naming the checkpoint, checkpoint 3 stays, and the
  same command then resumes from it to the uninterrupted run's final state."""
  workdir = tmp_path / 'full'
  command = _command(workdir, tiny_config.data.data_dir, [])
  proc = subprocess.run(
    command, env={**os.environ, 'FSIZE_AFTER': '3'}, capture_output=True, text=True, timeout=300
  )
  assert proc.returncode == 1, proc.stderr[-3000:]
  error = [l for l in proc.stderr.splitlines() if l.startswith('gan-jax: error:')]
  assert len(error) == 1 and 'could not write checkpoint 6' in error[0], proc.stderr[-3000:]
  assert 'earlier checkpoints [3] are untouched' in error[0]
  # Our error is the last word, and no exception escaped through gan_jax's code.
  assert proc.stderr.strip().splitlines()[-1] == error[0]
  assert 'gan_jax/' not in proc.stderr
  # Nor do Orbax's write threads and TensorStore's callbacks print their ~150 to 500 lines
  # of tracebacks of the same failure: besides the lines TensorFlow and XLA print as they
  # start (on every run), at most the sample grid's warning (the disk is full for it too)
  # and our line.
  ours = [l for l in proc.stderr.splitlines() if not re.match(_NATIVE_STARTUP_LOG, l)]
  assert len(ours) <= 3, proc.stderr[-3000:]
  assert not any('Traceback' in l or 'absl' in l for l in ours), proc.stderr[-3000:]
  with Checkpointer(str(workdir)) as ckpt:
    assert ckpt.all_steps() == [3]
  proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  reference = train.train_and_evaluate(tiny_config, str(tmp_path / 'reference'))
  with Checkpointer(str(workdir)) as ckpt:
    assert ckpt.all_steps() == [3, 6]
    _assert_states_equal(ckpt.restore(reference), reference)
  assert not _tmp_folders(workdir)


def test_overwrite_replaces_the_run_and_without_it_a_shape_change_is_refused(
  tiny_config, tmp_path, capsys
):
  from gan_jax.cli.main import main  # pylint: disable=g-import-not-at-top

  workdir = tmp_path / 'run'
  (tmp_path / 'run').mkdir()
  (workdir / 'notes.txt').write_text('mine')  # not a run file: never touched
  args = ['train', '--config', CONFIG, '--workdir', str(workdir)]
  args += [f'--config.data.data_dir={tiny_config.data.data_dir}', '--config.train.steps=3']
  assert main(args) == 0
  before = sorted(os.listdir(workdir))
  assert main([*args, '--config.model.g_width=16']) == 2
  assert 'model.g_width: 8 -> 16' in capsys.readouterr().err
  assert sorted(os.listdir(workdir)) == before
  assert main([*args, '--config.model.g_width=16', '--overwrite']) == 0
  config = json.loads((workdir / 'config.json').read_text())
  assert config['model']['g_width'] == 16
  with Checkpointer(str(workdir)) as ckpt:
    assert ckpt.all_steps() == [3]
  assert [l['step'] for l in _lines(str(workdir))] == [2, 3]  # the new run's log only
  assert (workdir / 'notes.txt').read_text() == 'mine'
  # A bad config with --overwrite deletes nothing: every check runs first.
  assert main([*args, '--config.train.batch_size=0', '--overwrite']) == 2
  assert (workdir / 'checkpoints' / '3').is_dir()


def test_a_log_line_cut_short_by_a_crash_is_dropped_on_resume(tiny_config, tmp_path):
  tiny_config.train.steps = 3
  train.train_and_evaluate(tiny_config, str(tmp_path))
  with open(tmp_path / 'metrics.jsonl', 'a') as f:
    f.write('{"step": 4, "d_lo')  # killed mid-write
  tiny_config.train.steps = 6
  train.train_and_evaluate(tiny_config, str(tmp_path))
  assert [l['step'] for l in _lines(str(tmp_path))] == [2, 3, 4, 6]


def test_overwrite_removes_only_what_gan_jax_wrote(tiny_config, tmp_path):
  """Issue 17, item 4: a folder of someone else's files (a checkpoint, notes, another tool's
  config.json) is refused by --overwrite with nothing deleted; in a gan-jax run folder,
  --overwrite removes the run's files and leaves the user's files inside its folders."""
  from gan_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  from gan_jax.training.run_setup import MANIFEST  # pylint: disable=g-import-not-at-top

  tiny_config.train.steps = 3
  users = {
    'checkpoints/model.pt': b'torch',
    'samples/mydata.txt': b'mine',
    'best/notes.txt': b'notes',
    'config.json': b'{"lr": 0.1}',
  }
  foreign = tmp_path / 'foreign'
  for name, content in users.items():
    (foreign / name).parent.mkdir(parents=True, exist_ok=True)
    (foreign / name).write_bytes(content)
  with pytest.raises(ConfigError, match=r'^--overwrite refused: .* is not a gan-jax run folder'):
    train.train_and_evaluate(tiny_config, str(foreign), overwrite=True)
  assert {str(p.relative_to(foreign)) for p in foreign.rglob('*') if p.is_file()} == set(users)

  run = tmp_path / 'run'
  train.train_and_evaluate(tiny_config, str(run))
  assert json.loads((run / MANIFEST).read_text())['written_by'] == 'gan_jax'
  for name, content in users.items():
    if name != 'config.json':  # in a run folder config.json is the run's own
      (run / name).parent.mkdir(parents=True, exist_ok=True)
      (run / name).write_bytes(content)
  first_grids = sorted(os.listdir(run / 'samples'))
  tiny_config.train.steps = 2
  tiny_config.sample_every = 2
  train.train_and_evaluate(tiny_config, str(run), overwrite=True)
  with Checkpointer(str(run)) as ckpt:
    assert ckpt.all_steps() == [2]  # the new run's only
  assert sorted(os.listdir(run / 'samples')) == ['mydata.txt', 'step_0000002.png'] != first_grids
  for name in ('checkpoints/model.pt', 'samples/mydata.txt', 'best/notes.txt'):
    assert (run / name).read_bytes() == users[name]

  # A run written before the manifest existed is still recognised by its config.json.
  (run / MANIFEST).unlink()
  train.train_and_evaluate(tiny_config, str(run), overwrite=True)
  assert (run / MANIFEST).exists() and (run / 'checkpoints' / 'model.pt').exists()


def test_a_read_only_checkpoints_folder_is_found_before_training(
  tiny_config, tmp_path, monkeypatch
):
  """Issue 17, item 9: a checkpoints/ that cannot be written is refused in one line before the
  run builds anything or writes a file, not at the first save. (Tests run as root, for whom
  chmod does not make a folder read-only, so the OS's EROFS is simulated for that folder.)"""
  import errno  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top

  tiny_config.train.steps = 3
  train.train_and_evaluate(tiny_config, str(tmp_path))
  before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob('*') if p.is_file()}
  real = tempfile.TemporaryFile

  def read_only_checkpoints(*args, **kwargs):
    if str(kwargs.get('dir', '')).endswith('checkpoints'):
      raise OSError(errno.EROFS, 'Read-only file system')
    return real(*args, **kwargs)

  monkeypatch.setattr(tempfile, 'TemporaryFile', read_only_checkpoints)
  tiny_config.train.steps = 6
  with pytest.raises(
    PermissionError,
    match=r"^run folder '.*checkpoints' is not a writable folder \(Read-only file system\)",
  ):
    train.train_and_evaluate(tiny_config, str(tmp_path))
  after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob('*') if p.is_file()}
  assert after == before  # nothing written or changed


@pytest.mark.parametrize('boundary', ['last_step', 'final_checkpoint', 'final_eval', 'summary'])
def test_a_run_killed_at_each_end_boundary_finishes_on_rerun(tiny_config, tmp_path, boundary):
  """Issue 17, item 2: SIGKILL after the last step, during the final checkpoint's save,
  during the final evaluation, and before summary.json; rerunning the same command finishes
  the run: the final state equals an uninterrupted run's, every evaluation is logged once,
  and summary.json records the finished run."""
  workdir = tmp_path / 'run'
  overrides = ['--config.eval_every=3', '--config.eval.metrics=fid']
  env = {**os.environ, 'TOTAL': '6'}
  if boundary == 'final_checkpoint':
    env['CRASH_AT_SAVE'] = '6'
  else:
    env['KILL_AT'] = boundary
  command = _command(workdir, tiny_config.data.data_dir, overrides)
  proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
  assert not (workdir / 'summary.json').exists()
  proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['end_step'] == 6 and summary['stopped_by_signal'] is None
  evals = [l['step'] for l in _lines(str(workdir)) if 'eval/fid_lenet' in l]
  assert evals == [3, 6]  # each evaluation once, the final one included
  with Checkpointer(str(workdir)) as ckpt:
    assert ckpt.all_steps() == [3, 6]
  assert not _tmp_folders(workdir)
  if boundary == 'summary':
    # A second rerun finds the run finished and changes nothing. (A finished run is found by
    # its summary.json whatever the boundary was, so one case covers this path; each
    # subprocess costs ~20 s of the suite.)
    before = (workdir / 'summary.json').read_text()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and (workdir / 'summary.json').read_text() == before
  if boundary in ('last_step', 'final_checkpoint'):  # the last steps were redone: same bits
    tiny_config.eval_every = 3
    tiny_config.eval.metrics = 'fid'
    reference = train.train_and_evaluate(tiny_config, str(tmp_path / 'reference'))
    with Checkpointer(str(workdir)) as ckpt:
      _assert_states_equal(ckpt.restore(reference), reference)
