"""One writer per run folder (`gan_jax.run_lock`), a sweep's children dying with it, and
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
from gan_jax import run_lock
from gan_jax import train
from gan_jax.checkpoint import Checkpointer
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
    from gan_jax import run_lock
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
    sys.executable, '-m', 'gan_jax.main', 'train', '--config', CONFIG, '--workdir', str(workdir),
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
  workdir = tmp_path / 'new'
  with pytest.raises(ValueError):
    with run_lock.hold(str(workdir)):
      assert workdir.is_dir()
      raise ValueError('a bad config')
  assert not workdir.exists()


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
