"""One writer per run folder (`gan_jax.training.run_lock`), a sweep's children dying with it, and
run-scoped rollback state that does not leak into a fresh run (issue 17, items 1 and 3).

The lock tests run real `gan-jax train` processes of the tiny MNIST DCGAN on one workdir;
the unit tests hold the lock from plain Python subprocesses.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import REPO
from gan_jax.training import run_lock
from gan_jax.training import train
from gan_jax.training.checkpoint import Checkpointer
from gan_jax.errors import NonFiniteError, WorkdirLockedError
from test_reliability import _poison
from test_train import _assert_states_equal

CONFIG = str(REPO / 'experiments' / 'mnist_dcgan.py') + ':tiny'


def _env():
  # The worktree's code, also in the subprocesses (the venv may hold another checkout).
  path = os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]).rstrip(os.pathsep)
  return {**os.environ, 'PYTHONPATH': path}


def _holder_process(workdir, *, extra=''):
  """A plain Python process holding `workdir`'s lock until killed (prints 'held' first)."""
  code = textwrap.dedent(f"""
    import sys, time
    from gan_jax.training import run_lock
    with run_lock.hold({str(workdir)!r}):
      {extra or 'pass'}
      print('held', flush=True)
      time.sleep(600)
  """)
  proc = subprocess.Popen(
    [sys.executable, '-c', code], stdout=subprocess.PIPE, text=True, env=_env(), cwd=str(REPO)
  )
  assert proc.stdout.readline().strip() == 'held'
  return proc


def _train_command(workdir, data_dir, *overrides):
  return [
    sys.executable, '-m', 'gan_jax.cli.main', 'train', '--config', CONFIG, '--workdir', str(workdir),
    f'--config.data.data_dir={data_dir}', *overrides,
  ]  # fmt: skip


def _tree(folder):
  """{relative path: (size, mtime_ns)} of every file under `folder`."""
  out = {}
  for root, _, files in os.walk(folder):
    for name in files:
      path = os.path.join(root, name)
      st = os.stat(path)
      out[os.path.relpath(path, folder)] = (st.st_size, st.st_mtime_ns)
  return out


# ----------------------------------------------------------------------------------------------
# The lock itself, held by plain processes.


def test_the_lock_names_its_holder_refuses_a_second_and_dies_with_its_holder(tmp_path):
  workdir = tmp_path / 'run'
  holder = _holder_process(workdir)
  try:
    details = json.loads((workdir / run_lock.LOCK_NAME).read_text())
    assert details['pid'] == holder.pid and details['host'] == socket.gethostname()
    assert details['since'].endswith(' UTC')
    assert run_lock.holder(str(workdir))['pid'] == holder.pid
    before = _tree(workdir)
    with pytest.raises(WorkdirLockedError, match=rf'PID {holder.pid} on host .* since .* UTC'):
      with run_lock.hold(str(workdir)):
        pass
    assert _tree(workdir) == before  # the refused one changed nothing
  finally:
    holder.kill()  # SIGKILL: the kernel releases the lock, nothing is left to clean up
    holder.wait()
  assert (workdir / run_lock.LOCK_NAME).exists()  # the dead holder's details, not a lock
  assert run_lock.holder(str(workdir)) is None
  with run_lock.hold(str(workdir)):
    assert json.loads((workdir / run_lock.LOCK_NAME).read_text())['pid'] == os.getpid()
    with run_lock.hold(str(workdir)):  # re-entrant in one process
      pass
    assert (workdir / run_lock.LOCK_NAME).exists()
  assert not (workdir / run_lock.LOCK_NAME).exists()  # a normal end removes the file


def test_a_folder_created_for_a_run_that_failed_its_checks_is_removed(tmp_path):
  workdir = tmp_path / 'new' / 'run'
  with pytest.raises(ValueError):
    with run_lock.hold(str(workdir)):
      assert workdir.is_dir()
      raise ValueError('a bad config')
  assert not (tmp_path / 'new').exists()  # nor the parent it created


def test_replica_folders_are_each_locked(tmp_path):
  folders = [str(tmp_path / f'replica_{i}') for i in range(3)]
  holder = _holder_process(folders[1])
  try:
    with pytest.raises(WorkdirLockedError, match=str(holder.pid)):
      with run_lock.hold(folders):
        pass
    # none of the others stays locked after the refusal, and no folder was left behind
    assert not os.path.exists(folders[0]) and not os.path.exists(folders[2])
  finally:
    holder.kill()
    holder.wait()


def test_a_replica_run_is_refused_when_one_replica_folder_is_being_written(
  tfds_dir, tmp_path, capsys
):
  from gan_jax.cli import main as cli  # pylint: disable=g-import-not-at-top

  workdir = tmp_path / 'run'
  holder = _holder_process(workdir / 'replica_1')  # e.g. `train --workdir run/replica_1`
  try:
    before = _tree(tmp_path)
    code = cli.main(
      ['train', '--config', CONFIG, '--workdir', str(workdir), '--config.num_replicas=2',
       f'--config.data.data_dir={tfds_dir}'],
    )  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith('gan-jax: error: ') and '\n' not in err, err
    assert 'replica_1' in err and f'PID {holder.pid}' in err, err
    assert _tree(tmp_path) == before and sorted(os.listdir(workdir)) == ['replica_1']
  finally:
    holder.kill()
    holder.wait()


# ----------------------------------------------------------------------------------------------
# Real `gan-jax train` processes on one workdir.


def _wait_for(predicate, proc, what, timeout=240):
  deadline = time.time() + timeout
  while not predicate():
    assert proc.poll() is None, f'{what}: the process ended first: {proc.communicate()}'
    assert time.time() < deadline, f'{what}: timed out'
    time.sleep(0.05)


def _logged_steps(workdir):
  try:
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      return [json.loads(line)['step'] for line in f if line.endswith('\n')]
  except FileNotFoundError:
    return []


@pytest.mark.slow
def test_a_second_trainer_is_refused_at_once_and_a_killed_ones_folder_resumes(tfds_dir, tmp_path):
  """A trains; B, on the same folder with another learning rate, exits 2 with one line
  naming A's PID and changes nothing; A is SIGKILLed; C takes the folder over and resumes
  from A's last checkpoint. (Before the lock both trained, each overwriting the other.)"""
  workdir = tmp_path / 'run'
  a = subprocess.Popen(
    _train_command(workdir, tfds_dir, '--config.train.steps=100000', '--config.checkpoint_every=3'),
    env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
  )  # fmt: skip
  try:
    _wait_for(lambda: max(_logged_steps(workdir), default=0) >= 8, a, 'A logs step 8')
    os.kill(a.pid, signal.SIGSTOP)  # freeze A's folder, to see that B writes nothing
    before = _tree(workdir)
    t0 = time.time()
    b = subprocess.run(
      _train_command(workdir, tfds_dir, '--config.train.g_lr=0.001'),
      env=_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    seconds = time.time() - t0
    assert b.returncode == 2, b.stderr
    err = b.stderr.strip().splitlines()[-1]  # (TensorFlow may log its oneDNN notice first)
    assert err.startswith('gan-jax: error: workdir '), b.stderr
    assert sum('gan-jax' in line for line in b.stderr.splitlines()) == 1, b.stderr
    assert 'Traceback' not in b.stderr, b.stderr
    assert f'PID {a.pid} on host {socket.gethostname()} since ' in err, err
    assert 'is being written by another gan-jax process' in err and b.stdout == ''
    assert _tree(workdir) == before  # not a byte written, not even config.json
    print(f'B refused in {seconds:.1f} s: {err}')
  finally:
    a.kill()  # SIGKILL (also of a stopped process): no cleanup runs in A
    a.wait()
  with Checkpointer(str(workdir)) as ckpt:
    resume_at = ckpt.latest_step()
  assert resume_at >= 6
  assert run_lock.holder(str(workdir)) is None  # the kernel released A's lock

  c = subprocess.run(
    _train_command(workdir, tfds_dir, f'--config.train.steps={resume_at + 2}'),
    env=_env(), capture_output=True, text=True, timeout=300,
  )  # fmt: skip
  assert c.returncode == 0, c.stderr
  assert 'done: checkpoints' in c.stdout
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['start_step'] == resume_at and summary['end_step'] == resume_at + 2
  assert not (workdir / run_lock.LOCK_NAME).exists()
  steps = _logged_steps(workdir)
  assert len(steps) == len(set(steps)), steps  # each step logged once


# ----------------------------------------------------------------------------------------------
# Rollback state belongs to the run whose checkpoints it was made with.


def test_a_fresh_run_after_a_run_that_failed_after_its_rollbacks_starts_clean(
  tiny_config, tmp_path, monkeypatch
):
  """A NaN at step 2, before the first checkpoint, every time: 3 rollbacks to the initial
  state, then the run fails with no checkpoint. A fresh run in the folder (the data fixed)
  must train at the requested rates with its full rollback budget, exactly as in a new
  folder; it used to train at 1/8 of them with no rollback left."""
  tiny_config.on_nonfinite = 'rollback'
  tiny_config.max_rollbacks = 3
  tiny_config.train.steps = 3
  workdir = tmp_path / 'run'
  _poison(monkeypatch, steps=[2], times=100)
  with pytest.raises(NonFiniteError, match='3 rollbacks'):
    train.train_and_evaluate(tiny_config, str(workdir))
  with Checkpointer(str(workdir)) as ckpt:
    assert ckpt.latest_step() is None
  assert [r['lr_scale'] for r in json.loads((workdir / 'rollbacks.json').read_text())] == [
    0.5, 0.25, 0.125,
  ]  # fmt: skip
  monkeypatch.undo()

  state = train.train_and_evaluate(tiny_config, str(workdir))
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['lr_scale'] == 1.0 and summary['rollbacks'] == 0
  assert summary['g_lr'] == tiny_config.train.g_lr and summary['d_lr'] == tiny_config.train.d_lr
  assert not (workdir / 'rollbacks.json').exists()  # the failed run's record is gone with it
  reference = train.train_and_evaluate(tiny_config, str(tmp_path / 'reference'))
  _assert_states_equal(state, reference)


# ----------------------------------------------------------------------------------------------
# A sweep's children die with it; a rerun leaves a folder still being trained alone.


def _alive(pid):
  """Whether `pid` runs (a zombie, dead but not yet reaped by its new parent, does not)."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
  except FileNotFoundError:
    return False
  except OSError:  # no /proc
    try:
      os.kill(pid, 0)
    except ProcessLookupError:
      return False
    return True


def _tiny_ablation(tmp_path, steps):
  path = tmp_path / 'ablation.py'
  spec = dict(
    base=CONFIG,
    overrides={'train.steps': steps, 'checkpoint_every': 3},
    grid={'lr': {'a': {}, 'b': {'train.g_lr': 1e-4}}},
    seeds=[0],
  )
  path.write_text(f'def get_ablation(variant=""):\n  return {spec!r}\n')
  return str(path)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='reads /proc')
def test_the_train_children_of_a_sigkilled_sweep_stop_cleanly(tfds_dir, tmp_path):
  """`sweep --jobs 2` is SIGKILLed while both its `train` children run (in their own
  session): they get SIGTERM, save a checkpoint and exit. Before, they trained on."""
  workdir = tmp_path / 'sweep'
  sweep = subprocess.Popen(
    [sys.executable, '-m', 'gan_jax.cli.main', 'sweep', _tiny_ablation(tmp_path, 100000),
     '--workdir', str(workdir), '--jobs', '2', f'--config.data.data_dir={tfds_dir}'],
    env={**_env(), 'PYTHONUNBUFFERED': '1'}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    text=True,
  )  # fmt: skip
  children = {}
  try:
    for line in sweep.stdout:
      if ': training in pid ' in line:
        name = line.split('] ', 1)[1].split(':', 1)[0]
        children[name] = int(line.split(': training in pid ', 1)[1].split()[0])
        if len(children) == 2:
          break
    assert len(children) == 2, 'the sweep did not start two children'
    for name in children:
      _wait_for(
        lambda n=name: max(_logged_steps(workdir / n), default=0) >= 4, sweep, f'{name} trains'
      )
    sweep.kill()
    sweep.wait()
    deadline = time.time() + 120
    while any(_alive(pid) for pid in children.values()) and time.time() < deadline:
      time.sleep(0.1)
    assert not any(_alive(pid) for pid in children.values()), 'children outlived the sweep'
  finally:
    sweep.kill()
    for pid in children.values():
      if _alive(pid):
        os.kill(pid, signal.SIGKILL)
  for name in children:
    log = (workdir / name / 'train.log').read_text()
    logged = _logged_steps(workdir / name)[-3:]
    assert 'stopped at step' in log and 'run the same command again to resume' in log, (
      logged,
      sorted(os.listdir(workdir / name)),
      log,
    )
    with Checkpointer(str(workdir / name)) as ckpt:
      assert ckpt.latest_step() >= 4
    assert run_lock.holder(str(workdir / name)) is None


FAKE_TRAIN = 'import os, sys; open(os.path.join(sys.argv[1], "trained"), "w").close()'


def test_a_sweep_rerun_leaves_a_run_folder_that_is_still_being_trained_alone(
  tmp_path, capsys, monkeypatch
):
  from gan_jax.cli import main as cli  # pylint: disable=g-import-not-at-top
  from gan_jax.sweep import runner  # pylint: disable=g-import-not-at-top

  monkeypatch.setattr(
    runner, 'train_command', lambda ablation, run: [sys.executable, '-c', FAKE_TRAIN, run.workdir]
  )
  workdir = tmp_path / 'sweep'
  busy = workdir / 'lr=b' / 'seed_0'
  holder = _holder_process(busy)  # e.g. the `train` of an earlier sweep, still saving
  try:
    before = _tree(busy)
    code = cli.main(
      ['sweep', _tiny_ablation(tmp_path, 2), '--workdir', str(workdir), '--jobs', '2']
    )
    out, err = capsys.readouterr()
    assert code == 1
    assert (workdir / 'lr=a' / 'seed_0' / 'trained').exists()
    assert _tree(busy) == before  # not even the sweep's train.log
    assert 'lr=b/seed_0: FAILED' in out and f'PID {holder.pid}' in out, out
    assert f'PID {holder.pid}' in err
  finally:
    holder.kill()
    holder.wait()


def test_edit_caches_a_fitted_direction_only_while_it_can_hold_the_run_folder(
  tmp_path, capsys, monkeypatch
):
  """`gan-jax edit` writes its direction cache into the run folder: as its one writer. While
  a trainer holds the folder it uses the fitted direction and writes nothing there."""
  import argparse  # pylint: disable=g-import-not-at-top
  import types  # pylint: disable=g-import-not-at-top

  import numpy as np  # pylint: disable=g-import-not-at-top

  from gan_jax.cli import edit_cli  # pylint: disable=g-import-not-at-top

  from gan_jax import latent

  monkeypatch.setattr(latent, 'fit_attribute_direction', lambda *a, **k: np.ones(3, np.float32))
  args = argparse.Namespace(
    workdir=str(tmp_path / 'run'), method='mean', num_latents=4, seed=0, label=None, refit=False
  )
  attrs = types.SimpleNamespace(fn=lambda name: None)
  gan = types.SimpleNamespace(latent_dim=3)
  (tmp_path / 'run').mkdir()
  holder = _holder_process(tmp_path / 'run')
  try:
    before = _tree(tmp_path / 'run')
    direction = edit_cli._direction(args, attrs, 'ink', gan, None, 6, True)  # pylint: disable=protected-access
    assert direction.shape == (3,)
    assert _tree(tmp_path / 'run') == before
    out = capsys.readouterr().out
    assert 'not cached' in out and f'PID {holder.pid}' in out, out
  finally:
    holder.kill()
    holder.wait()
  edit_cli._direction(args, attrs, 'ink', gan, None, 6, True)  # pylint: disable=protected-access
  assert (tmp_path / 'run' / 'directions' / 'ink.npz').is_file()
  assert not (tmp_path / 'run' / run_lock.LOCK_NAME).exists()
