"""Running a sweep's runs (`gan_jax.sweep`): in this process, as replicas of one compiled
program, or as `gan-jax train` subprocesses; and stopping them cleanly on a signal.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from gan_jax.training import lifeline, run_lock
from gan_jax.training.signals import StopOnSignal
from gan_jax.sweep.folders import run_state
from gan_jax.sweep.spec import Ablation, Run, clip


class Stopper(StopOnSignal):
  """SIGINT/SIGTERM: stop starting runs, send SIGTERM once to each run in flight.

  In-process runs install their own handler while they train (and restore this one after).
  A second signal of the same kind gets the handler that was there before. Only installed
  from the main thread.
  """

  def __init__(self):
    super().__init__()
    self.procs: list[subprocess.Popen] = []

  def _handle(self, signum, frame):
    super()._handle(signum, frame)
    for proc in self.procs:
      if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)


def _train_in_process(run: Run) -> str | None:
  """Trains `run` here (a translation config with `gan_jax.translation.train`); returns None,
  or the one-line error it failed with."""
  from gan_jax.training import train  # pylint: disable=g-import-not-at-top
  from gan_jax.translation import run_config  # pylint: disable=g-import-not-at-top

  fn = train.train_and_evaluate
  if run_config.is_translation(run.config):
    from gan_jax.translation import train as translation_train  # pylint: disable=g-import-not-at-top

    fn = translation_train.train_translation
  try:
    fn(copy.deepcopy(run.config), run.workdir)
  except Exception as e:  # pylint: disable=broad-except  (recorded; the sweep goes on)
    return clip(f'{type(e).__name__}: {e}', 1000)
  return None


def _train_replicas_in_process(runs: Sequence[Run]) -> str | None:
  """Trains the seeds of one cell as replicas of one compiled program (`gan_jax.training.replicas`;
  translation configs: `gan_jax.translation.replicas`); returns None, or the one-line error
  they failed with."""
  from gan_jax.training import train  # pylint: disable=g-import-not-at-top
  from gan_jax.translation import run_config  # pylint: disable=g-import-not-at-top

  fn = train.train_replicas
  if run_config.is_translation(runs[0].config):
    from gan_jax.translation import train as translation_train  # pylint: disable=g-import-not-at-top

    fn = translation_train.train_translation_replicas
  try:
    fn([copy.deepcopy(r.config) for r in runs], [r.workdir for r in runs])
  except Exception as e:  # pylint: disable=broad-except  (recorded; the sweep goes on)
    return clip(f'{type(e).__name__}: {e}', 1000)
  return None


def _log_error(log_path: str, returncode: int) -> str:
  """The `gan-jax: error:` line of a failed subprocess's log, else its last line."""
  try:
    with open(log_path, errors='replace') as f:
      lines = [line.strip() for line in f if line.strip()]
  except OSError:
    lines = []
  for line in reversed(lines):
    if line.startswith('gan-jax: error: '):
      return clip(line[len('gan-jax: error: ') :], 1000)
  last = f': {clip(lines[-1], 900)}' if lines else ''
  return f'exit status {returncode}{last} (log: {log_path})'


def train_command(ablation: Ablation, run: Run) -> list[str]:
  """The `gan-jax train` command line of `run` (with this Python, as `-m gan_jax.cli.main`)."""
  return [
    sys.executable,
    '-m',
    'gan_jax.cli.main',
    'train',
    '--config',
    ablation.base,
    '--workdir',
    os.path.abspath(run.workdir),
    *run.args,
  ]


def run_all(
  ablation: Ablation,
  todo: list[tuple[int, Run]],
  total: int,
  jobs: int,
  stopper: Stopper,
  say: Callable[[str], None],
  replicas: bool = False,
) -> dict[str, str]:
  """Runs `todo` (index, run) in process (jobs=1; with `replicas` each cell's seeds as one
  compiled program) or as subprocesses; returns the failures."""
  failed: dict[str, str] = {}

  def finished(i: int, run: Run, error: str | None, seconds: float) -> None:
    tag = f'[{i + 1}/{total}] {run.name}'
    if error is not None:
      failed[run.name] = error
      say(f'{tag}: FAILED after {seconds:.1f} s: {clip(error, 300)}')
      return
    state = run_state(run)
    if state.status == 'done':
      say(f'{tag}: done in {seconds:.1f} s')
    else:
      stopper.received = stopper.received or 'a signal'
      say(f'{tag}: stopped at step {state.step} (checkpoint kept; rerun to resume)')

  if replicas:
    groups: list[list[tuple[int, Run]]] = []
    for i, run in todo:  # the unfinished seeds of each cell, in order
      if groups and groups[-1][0][1].cell is run.cell:
        groups[-1].append((i, run))
      else:
        groups.append([(i, run)])
    for group in groups:
      if stopper.received:
        break
      runs = [run for _, run in group]
      say(
        f'[{group[0][0] + 1}-{group[-1][0] + 1}/{total}] {runs[0].cell.name}: training seeds '
        f'{", ".join(str(r.seed) for r in runs)} as {len(runs)} replicas in one program '
        f'({", ".join(_describe(r) for r in runs)})'
      )
      t0 = time.perf_counter()
      error = _train_replicas_in_process(runs)
      for i, run in group:
        finished(i, run, error, time.perf_counter() - t0)
    return failed

  if jobs == 1:
    for i, run in todo:
      if stopper.received:
        break
      say(f'[{i + 1}/{total}] {run.name}: training ({_describe(run)})')
      t0 = time.perf_counter()
      error = _train_in_process(run)
      finished(i, run, error, time.perf_counter() - t0)
    return failed

  queue = list(todo)
  running: dict[subprocess.Popen, tuple[int, Run, Any, float]] = {}
  try:
    while queue or running:
      while queue and len(running) < jobs and not stopper.received:
        i, run = queue.pop(0)
        busy = run_lock.busy(run.workdir)  # still trained by another process: leave it be
        if busy is not None:
          finished(i, run, busy, 0.0)
          continue
        what = _describe(run)
        os.makedirs(run.workdir, exist_ok=True)
        log_path = os.path.join(run.workdir, 'train.log')
        command = train_command(ablation, run)
        log_file = open(log_path, 'a')  # pylint: disable=consider-using-with
        log_file.write(
          f'# {time.strftime("%Y-%m-%d %H:%M:%S")} gan-jax sweep: ' + ' '.join(command) + '\n'
        )
        log_file.flush()
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
          command,
          stdout=log_file,
          stderr=subprocess.STDOUT,
          stdin=subprocess.DEVNULL,
          env=lifeline.child_env(),  # the child stops when the sweep dies, even by SIGKILL
          start_new_session=True,  # a terminal's Ctrl-C reaches the sweep, which forwards it once
        )
        stopper.procs.append(proc)
        running[proc] = (i, run, log_file, time.perf_counter())
        say(f'[{i + 1}/{total}] {run.name}: training in pid {proc.pid} ({what}; log {log_path})')
      for proc in [p for p in running if p.poll() is not None]:
        i, run, log_file, t0 = running.pop(proc)
        log_file.close()
        stopper.procs.remove(proc)
        error = None if proc.returncode == 0 else _log_error(log_file.name, proc.returncode)
        finished(i, run, error, time.perf_counter() - t0)
      if running:
        time.sleep(0.2)
      elif stopper.received:
        break
  finally:
    for proc, (_, _, log_file, _) in running.items():  # only on an exception here
      proc.terminate()
      proc.wait()
      log_file.close()
  return failed


def _describe(run: Run) -> str:
  state = run_state(run)
  return f'resuming from step {state.step}' if state.status == 'unfinished' else 'new'
