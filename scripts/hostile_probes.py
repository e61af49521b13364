"""Re-runs every probe of issue 17's "What broke" list against the current code.

Issue 17 ("Reliability hardening") lists, as a hostile user found them on 981395f, nine
groups of failures (items 1-9). This script repeats each one as real `gan-jax` processes
(`python -m gan_jax.cli.main`, tiny configs, temporary folders) and records, per probe: the
issue's words for what happened before, the exit status now, the stderr lines (those of
gan-jax and Python, not the lines TensorFlow and XLA's C++ code log on every start), whether
a traceback appeared, the last stderr line, and whether the run folder changed or lost
anything (relative path -> SHA-256 of every file, before and after). It also counts the
hypothesis fuzz of tests/test_hostile_{cli,configs}.py (generation only: the same
derandomized draws the tests make, without running them) and times SIGTERM to exit.

    TFDS_DATA_DIR=../shared/tfds nice -n 10 python scripts/hostile_probes.py

writes experiments/results/hostile_probes.json and .md (`--only 1.2,7.3` runs a subset and
writes nothing unless `--out` is given). Probes run `--jobs` at a time (default 3); a probe
needing a trained run copies one tiny run (6 steps, checkpoints 3 and 6) made first.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import dataclasses
import glob
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import zlib
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
CONFIG = f'{REPO}/experiments/mnist_dcgan.py:tiny'
# What TensorFlow and XLA's C++ code log to stderr as they start, on every run (also in the
# tests: tests/test_reliability.py).
NATIVE = re.compile(
  r'^([IWE]\d{4} |WARNING: All log messages before absl::InitializeLog|To enable the following)'
)

# Sabotage, chosen by environment, in a process that then runs `gan-jax` as usual:
#   PROBE_FSIZE_AFTER=N  after checkpoint N, cap file sizes (RLIMIT_FSIZE): the next
#                        checkpoint's write fails with EFBIG, as on a full disk with ENOSPC;
#   PROBE_KILL_BEFORE_SUMMARY=1  SIGKILL itself where summary.json would be written;
#   PROBE_NAN_AT_STEP=N  the real batch of step N is NaN, in every data stream.
DRIVER = r"""
import os, resource, signal, sys
from gan_jax.cli import main
from gan_jax.training import checkpoint, train
fsize_after = int(os.environ.get('PROBE_FSIZE_AFTER', '-1'))
if fsize_after >= 0:
  save = checkpoint.Checkpointer.save
  def save_then_cap(self, state, **kwargs):
    step = save(self, state, **kwargs)
    if step == fsize_after:
      signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
      resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    return step
  checkpoint.Checkpointer.save = save_then_cap
if os.environ.get('PROBE_KILL_BEFORE_SUMMARY'):
  train._Training.write_summaries = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
nan_at = int(os.environ.get('PROBE_NAN_AT_STEP', '-1'))
if nan_at > 0:
  import numpy as np, tensorflow as tf
  from gan_jax.data import pipeline
  build = pipeline.build_train_dataset
  def poisoned(*args, **kwargs):
    start = kwargs['start_step']
    return build(*args, **kwargs).enumerate().map(lambda i, b: {
      **b, 'image': tf.where(tf.equal(i + start, nan_at - 1), np.nan, b['image'])})
  pipeline.build_train_dataset = poisoned
sys.argv[0] = 'gan-jax'
main.cli()
"""


# ----------------------------------------------------------------------------------------------
# Processes and folders.


@dataclasses.dataclass
class Outcome:
  """One finished `gan-jax` process."""

  argv: list[str]
  exit: int | None
  stdout: str
  stderr: str
  seconds: float

  @property
  def lines(self) -> list[str]:
    """stderr lines of gan-jax and Python (not TF/XLA's start-up log)."""
    return [l for l in self.stderr.splitlines() if l.strip() and not NATIVE.match(l)]


class Env:
  """Paths and the environment shared by every probe."""

  def __init__(self, scratch: str, tfds: str):
    self.scratch = scratch
    self.tfds = tfds
    self.base = os.path.join(scratch, 'base_run')
    self.env = {
      **os.environ,
      'PYTHONPATH': os.pathsep.join(filter(None, [str(REPO), os.environ.get('PYTHONPATH')])),
      'TFDS_DATA_DIR': tfds,
      'GAN_JAX_CACHE_DIR': os.path.join(scratch, 'cache'),
      'PYTHONUNBUFFERED': '1',
    }

  def argv(self, args, driver=False, prefix=()):
    head = [sys.executable, '-c', DRIVER] if driver else [sys.executable, '-m', 'gan_jax.cli.main']
    return [*prefix, *head, *map(str, args)]

  def run(self, args, *, driver=False, env=None, timeout=900, prefix=()) -> Outcome:
    argv = self.argv(args, driver, prefix)
    t0 = time.time()
    try:
      p = subprocess.run(
        argv, env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=timeout,
        cwd=str(REPO),
      )  # fmt: skip
      code, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
      code, out, err = (
        None,
        _text(e.stdout),
        _text(e.stderr) + f'\n[probe: timed out after {timeout} s]',
      )
    return Outcome(argv, code, out, err, time.time() - t0)

  def popen(self, args, *, driver=False, env=None):
    return subprocess.Popen(
      self.argv(args, driver), env={**self.env, **(env or {})}, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True, cwd=str(REPO),
    )  # fmt: skip

  def train(self, workdir, *overrides, **kwargs) -> Outcome:
    return self.run(['train', '--config', CONFIG, '--workdir', workdir, *overrides], **kwargs)

  def copy_base(self, name) -> str:
    dst = os.path.join(self.scratch, name)
    shutil.copytree(self.base, dst)
    return dst

  def path(self, *names) -> str:
    p = os.path.join(self.scratch, *names)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    return p


def _text(b) -> str:
  return b.decode(errors='replace') if isinstance(b, bytes) else (b or '')


def communicate(proc, timeout=120) -> Outcome:
  t0 = time.time()
  out, err = proc.communicate(timeout=timeout)
  return Outcome(proc.args, proc.returncode, out, err, time.time() - t0)


def snapshot(folder) -> dict[str, str]:
  """{relative path: SHA-256} of every file under `folder` ('dir' for folders)."""
  out = {}
  for root, dirs, files in os.walk(folder):
    for d in dirs:
      out[os.path.relpath(os.path.join(root, d), folder)] = 'dir'
    for f in files:
      path = os.path.join(root, f)
      with open(path, 'rb') as fh:
        out[os.path.relpath(path, folder)] = hashlib.sha256(fh.read()).hexdigest()
  return out


def changes(before, after) -> dict[str, list[str]]:
  return {
    'added': sorted(set(after) - set(before)),
    'removed': sorted(set(before) - set(after)),
    'changed': sorted(k for k in set(before) & set(after) if before[k] != after[k]),
  }


def lost_files(before, after, moved=lambda p: None) -> list[str]:
  """Files of `before` whose bytes are nowhere in `after` (at their path, or where `moved`
  says they went): what a command destroyed."""
  out = []
  for path, digest in before.items():
    if digest == 'dir' or os.path.basename(path) == '.gan_jax.lock':  # a dead holder's details
      continue
    where = [path] + ([moved(path)] if moved(path) else [])
    if not any(after.get(w) == digest for w in where):
      out.append(path)
  return sorted(out)


def logged_steps(workdir) -> list[int]:
  out = []
  try:
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      for line in f:
        try:
          entry = json.loads(line)
        except ValueError:
          continue
        if line.endswith('\n') and isinstance(entry, dict) and 'step' in entry:
          out.append(entry['step'])
  except FileNotFoundError:
    pass
  return out


def wait_for(predicate, proc, timeout=300) -> bool:
  deadline = time.time() + timeout
  while not predicate():
    if proc.poll() is not None or time.time() > deadline:
      return False
    time.sleep(0.05)
  return True


def alive(pid) -> bool:
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
  except OSError:
    return False


# ----------------------------------------------------------------------------------------------
# The probes. Each returns a dict: `outcome` (the process judged), `expect` (its expected exit
# status), optional `folder_changed` (bool), `lost` (paths), `checks` ({what: bool}), `note`.

PROBES: list[dict] = []


def probe(pid: str, name: str, before: str, short: str = ''):
  """Registers a probe: `pid` 'item.n', `before` the issue's words, `short` how this run is
  shorter than the issue's (empty when it is the same probe)."""

  def register(fn: Callable[[Env], dict]):
    PROBES.append(dict(id=pid, name=name, before=before, short=short, fn=fn))
    return fn

  return register


def one_shot(e: Env, argv, folder, expect=2, **kwargs) -> dict:
  """Runs `argv`; the folder must come out byte for byte as it went in."""
  before = snapshot(folder)
  o = e.run(argv, **kwargs)
  after = snapshot(folder)
  diff = changes(before, after)
  return dict(outcome=o, expect=expect, folder_changed=any(diff.values()), diff=diff,
              lost=lost_files(before, after))  # fmt: skip


B1 = (
  'Same config, started together: both print `done`, metrics.jsonl holds every step twice. '
  '[...] With `checkpoint_every=1` one of them fails and leaves a half-written checkpoint '
  'listed that `sample --step 1` cannot read.'
)


@probe('1.1', 'two trainers, same config, started together (checkpoint_every=1)', B1,
       'steps=12 instead of a full run')  # fmt: skip
def two_together(e: Env) -> dict:
  w = e.path('p1_1', 'run')
  args = ['--config.train.steps=12', '--config.checkpoint_every=1', '--config.keep_checkpoints=100']
  a = e.popen(['train', '--config', CONFIG, '--workdir', w, *args])
  b = e.popen(['train', '--config', CONFIG, '--workdir', w, *args])
  oa, ob = communicate(a, 900), communicate(b, 900)
  refused, ran = (ob, oa) if ob.exit == 2 else (oa, ob)
  steps = logged_steps(w)
  s = e.run(
    ['sample', '--workdir', w, '--step', '1', '--num', '4', '--out', e.path('p1_1', 's.png')]
  )
  return dict(
    outcome=refused, expect=2,
    checks={
      'one trainer exits 0, the other 2': sorted([oa.exit, ob.exit]) == [0, 2],
      'every step logged once': steps == sorted(set(steps)) and len(steps) > 0,
      '`sample --step 1` reads checkpoint 1 (exit 0)': s.exit == 0,
      'no half-written checkpoint folder left': not glob.glob(f'{w}/checkpoints/*tmp*'),
    },
    note=f'the other trainer: exit {ran.exit}; logged steps {steps}; sample --step 1: exit {s.exit}',
  )  # fmt: skip


@probe('1.2', 'second trainer with another learning rate on a folder being trained', (
  'Different learning rates, the second started 2 s later: both exit 0, the first run\'s '
  'checkpoints are silently replaced by the second\'s, metrics.jsonl interleaves both runs '
  'under the same step numbers.'), 'B starts once A has logged step 4 (A frozen by SIGSTOP '
  'while B runs, so that any write of B shows); A is then SIGKILLed and C resumes')  # fmt: skip
def second_trainer(e: Env) -> dict:
  w = e.path('p1_2', 'run')
  a = e.popen(['train', '--config', CONFIG, '--workdir', w, '--config.train.steps=100000',
               '--config.checkpoint_every=3', '--config.log_every=1'])  # fmt: skip
  try:
    if not wait_for(lambda: max(logged_steps(w), default=0) >= 4, a, 600):
      raise RuntimeError(f'A never reached step 4: {communicate(a).stderr[-2000:]}')
    os.kill(a.pid, signal.SIGSTOP)
    before = snapshot(w)
    b = e.train(w, '--config.train.g_lr=0.001')
    after = snapshot(w)
  finally:
    a.kill()
    a.wait()
  names = [n for n in os.listdir(f'{w}/checkpoints') if n.isdigit()]
  resume = max(map(int, names))
  c = e.train(w, f'--config.train.steps={resume + 1}', '--config.checkpoint_every=3',
              '--config.log_every=1')  # fmt: skip
  steps = logged_steps(w)
  diff = changes(before, after)
  return dict(
    outcome=b, expect=2, folder_changed=any(diff.values()), diff=diff,
    lost=lost_files(before, after),
    checks={
      'B names A\'s PID': f'PID {a.pid}' in (b.lines or [''])[-1],
      'C resumes the SIGKILLed A\'s folder (no stale lock), exit 0': c.exit == 0,
      'every step logged once': steps == sorted(set(steps)),
      f'C started from A\'s checkpoint {resume}': f'"start_step": {resume}' in open(f'{w}/summary.json').read(),
    },
    note=f'C: exit {c.exit} in {c.seconds:.0f} s, steps 1..{max(steps, default=0)} each logged once',
  )  # fmt: skip


def tiny_ablation(e: Env, name: str, grid, steps: int, log_every: bool = True) -> str:
  """An ablation file of the tiny config (with log_every=1 unless `log_every` is False: the
  tiny run's own config, so that its folder can stand for one of the sweep's runs)."""
  path = e.path(name, 'ablation.py')
  overrides = {
    'train.steps': steps,
    'checkpoint_every': 3,
    **({'log_every': 1} if log_every else {}),
  }
  spec = dict(base=CONFIG, overrides=overrides, grid=grid, seeds=[0])
  with open(path, 'w') as f:
    f.write(f'def get_ablation(variant=""):\n  return {spec!r}\n')
  return path


@probe('1.3', '`sweep --jobs 2` SIGKILLed: its train children', (
  '`sweep --jobs 2` killed with SIGKILL leaves its `train` children running (they are in '
  'their own session)'), 'children of 100,000 steps, killed once both logged step 4')  # fmt: skip
def sweep_killed(e: Env) -> dict:
  abl = tiny_ablation(e, 'p1_3', {'lr': {'a': {}, 'b': {'train.g_lr': 1e-4}}}, 100000)
  w = e.path('p1_3', 'sweep')
  sw = subprocess.Popen(
    e.argv(['sweep', abl, '--workdir', w, '--jobs', '2']), env=e.env, cwd=str(REPO),
    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
  )  # fmt: skip
  children = {}
  for line in sw.stdout:
    if ': training in pid ' in line:
      name = line.split('] ', 1)[1].split(':', 1)[0]
      children[name] = int(line.split(': training in pid ', 1)[1].split()[0])
      if len(children) == 2:
        break
  for name in children:
    wait_for(lambda n=name: max(logged_steps(f'{w}/{n}'), default=0) >= 4, sw, 600)
  sw.kill()
  sw.wait()
  t0 = time.time()
  while any(alive(p) for p in children.values()) and time.time() - t0 < 180:
    time.sleep(0.1)
  seconds = time.time() - t0
  survivors = [p for p in children.values() if alive(p)]
  for p in survivors:
    os.kill(p, signal.SIGKILL)
  logs = {n: open(f'{w}/{n}/train.log').read() for n in children}
  stopped = {n: 'stopped at step' in log for n, log in logs.items()}
  last = {n: (log.strip().splitlines() or [''])[-1] for n, log in logs.items()}
  return dict(
    outcome=Outcome(sw.args, sw.returncode, '', '', seconds), expect=-9, lost=[],
    checks={
      'both children exit after the sweep\'s SIGKILL': len(children) == 2 and not survivors,
      'each saved a checkpoint and logged "stopped at step"': all(stopped.values()),
    },
    note=f'children gone {seconds:.1f} s after the SIGKILL; their last log lines: {last}',
    last_line=next(iter(last.values()), ''),
  )  # fmt: skip


@probe('1.4', 'sweep rerun while a run folder is still being trained', (
  'a rerun starts a second trainer on a folder that is still being trained.'),
  'the folder is held by a plain process holding the run lock, standing for a `train` that '
  'outlived its sweep; the other run is a finished one')  # fmt: skip
def sweep_rerun_busy(e: Env) -> dict:
  abl = tiny_ablation(e, 'p1_4', {'lr': {'a': {}, 'b': {'train.g_lr': 1e-4}}}, 6, log_every=False)
  w = e.path('p1_4', 'sweep')
  # lr=a: the finished tiny run (same config: the sweep finds it done); lr=b: busy.
  shutil.copytree(e.base, f'{w}/lr=a/seed_0')
  busy = f'{w}/lr=b/seed_0'
  holder = subprocess.Popen(
    [sys.executable, '-c', textwrap.dedent(f"""
      import time
      from gan_jax.training import run_lock
      with run_lock.hold({busy!r}):
        print('held', flush=True)
        time.sleep(900)
    """)], env=e.env, stdout=subprocess.PIPE, text=True, cwd=str(REPO),
  )  # fmt: skip
  try:
    assert holder.stdout.readline().strip() == 'held'
    before = snapshot(busy)
    o = e.run(['sweep', abl, '--workdir', w, '--jobs', '2', f'--config.data.data_dir={e.tfds}'])
    after = snapshot(busy)
  finally:
    holder.kill()
    holder.wait()
  diff = changes(before, after)
  return dict(
    outcome=o, expect=1, folder_changed=any(diff.values()), diff=diff,
    lost=lost_files(before, after),
    checks={
      'the busy run is reported FAILED naming the holder\'s PID':
        'lr=b/seed_0: FAILED' in o.stdout and f'PID {holder.pid}' in o.stdout,
    },
    note='the sweep exits 1 (a run failed); the busy folder is untouched',
  )  # fmt: skip


B2 = (
  'Killed after its last checkpoint but before summary.json (the window includes the final '
  'evaluation), every rerun of the sweep prints `stopped at step N (checkpoint kept; rerun to '
  'resume)` and `stopped by a signal`, with no signal sent, and the sweep never completes; '
  '`gan-jax train` on that folder prints `done` and writes no summary.json.'
)


@probe('2.1', '`train` killed before summary.json, then rerun', B2)
def killed_before_summary(e: Env) -> dict:
  w = e.path('p2_1', 'run')
  k = e.train(w, driver=True, env={'PROBE_KILL_BEFORE_SUMMARY': '1'})
  had = os.path.exists(f'{w}/summary.json')
  before = snapshot(w)
  o = e.train(w)
  summary = json.load(open(f'{w}/summary.json')) if os.path.exists(f'{w}/summary.json') else {}
  return dict(
    outcome=o, expect=0, lost=lost_files({k: v for k, v in before.items() if 'events' not in k},
                                         snapshot(w)),  # fmt: skip
    checks={
      'the kill landed before summary.json': k.exit == -9 and not had,
      'the rerun writes summary.json of the finished run': summary.get('end_step') == 6
      and summary.get('stopped_by_signal') is None,
    },
    note=f'rerun: {o.stdout.strip().splitlines()[-1:]}; summary.json end_step '
         f'{summary.get("end_step")}, finished_on_rerun={summary.get("finished_on_rerun")}',
  )  # fmt: skip


@probe('2.2', 'sweep rerun over a run killed before summary.json', B2,
       'the sweep\'s run folder is the tiny run with its summary.json removed, the state a '
       'kill before summary.json leaves')  # fmt: skip
def sweep_unfinishable(e: Env) -> dict:
  abl = tiny_ablation(e, 'p2_2', {'lr': {'a': {}}}, 6, log_every=False)
  w = e.path('p2_2', 'sweep')
  run = f'{w}/lr=a/seed_0'
  shutil.copytree(e.base, run)
  os.remove(f'{run}/summary.json')
  before = snapshot(run)
  o = e.run(['sweep', abl, '--workdir', w, f'--config.data.data_dir={e.tfds}'])
  o2 = e.run(['sweep', abl, '--workdir', w, f'--config.data.data_dir={e.tfds}'])
  summary = json.load(open(f'{run}/summary.json')) if os.path.exists(f'{run}/summary.json') else {}
  text = o.stdout + o2.stdout
  return dict(
    outcome=o, expect=0, lost=lost_files(before, snapshot(run)),
    checks={
      'summary.json of the finished run written': summary.get('end_step') == 6,
      'no "stopped at step" / "stopped by a signal"': 'stopped' not in text,
      'a second rerun finds every run done (exit 0)': o2.exit == 0,
    },
    note=f'rerun: {o.stdout.strip().splitlines()[-1:]}; second: {o2.stdout.strip().splitlines()[-1:]}',
  )  # fmt: skip


@probe('3', 'fresh run after a run that failed after 3 rollbacks', (
  'After a run that failed after 3 rollbacks, a fresh run in the same folder (no checkpoint, '
  'steps from 0) trains silently at 1/8 of the requested learning rate, with its rollback '
  'budget already spent; config.json records the requested rate.'),
  'steps=3; NaN injected into the batch of step 2 in the failing run')  # fmt: skip
def rollback_leak(e: Env) -> dict:
  w = e.path('p3', 'run')
  args = ['--config.train.steps=3', '--config.on_nonfinite=rollback', '--config.max_rollbacks=3']
  f = e.train(w, *args, driver=True, env={'PROBE_NAN_AT_STEP': '2'})
  ckpts = (
    [n for n in os.listdir(f'{w}/checkpoints') if n.isdigit()]
    if os.path.isdir(f'{w}/checkpoints')
    else []
  )
  o = e.train(w, *args)
  s = json.load(open(f'{w}/summary.json')) if os.path.exists(f'{w}/summary.json') else {}
  return dict(
    outcome=o, expect=0, lost=[],
    checks={
      'the poisoned run failed (exit 1) after 3 rollbacks, no checkpoint':
        f.exit == 1 and '3 rollbacks' in (f.lines or [''])[-1] and not ckpts,
      'the fresh run trains at the requested rates (lr_scale 1.0)': s.get('lr_scale') == 1.0,
      'with its full rollback budget (0 used)': s.get('rollbacks') == 0,
    },
    note=f'failing run: exit {f.exit}, "{(f.lines or [""])[-1][:90]}..."; fresh run summary: '
         f'lr_scale={s.get("lr_scale")}, rollbacks={s.get("rollbacks")}, g_lr={s.get("g_lr")}',
  )  # fmt: skip


USERS = {
  'checkpoints/model.pt': b'torch weights',
  'samples/mydata.txt': b'mine',
  'best/notes.txt': b'notes',
  'config.json': b'{"lr": 0.1}',
}
B4 = (
  'On a folder holding a user\'s `checkpoints/model.pt`, `samples/mydata.txt`, '
  '`best/notes.txt` and another tool\'s `config.json`, all four were deleted.'
)


@probe('4.1', '`train --overwrite` on a folder of a user\'s files', B4)
def overwrite_foreign(e: Env) -> dict:
  w = e.path('p4_1', 'theirs')
  for name, data in USERS.items():
    os.makedirs(os.path.dirname(f'{w}/{name}'), exist_ok=True)
    open(f'{w}/{name}', 'wb').write(data)
  return one_shot(e, ['train', '--config', CONFIG, '--workdir', w, '--overwrite'], w)


@probe('4.2', '`train --overwrite` on a gan-jax run holding a user\'s files', B4,
       'the new run has 2 steps')  # fmt: skip
def overwrite_run(e: Env) -> dict:
  w = e.copy_base('p4_2')
  for name, data in USERS.items():
    if name != 'config.json':  # in a run folder config.json is the run's own
      os.makedirs(os.path.dirname(f'{w}/{name}'), exist_ok=True)
      open(f'{w}/{name}', 'wb').write(data)
  before = snapshot(w)
  o = e.train(w, '--overwrite', '--config.train.steps=2', '--config.sample_every=2')
  after = snapshot(w)
  users = [n for n in USERS if n != 'config.json']
  return dict(
    outcome=o, expect=0, lost=lost_files({n: before[n] for n in users}, after),
    checks={
      'the user\'s 3 files kept': all(after.get(n) == before[n] for n in users),
      'the old run\'s checkpoints replaced by the new run\'s': sorted(
        n for n in os.listdir(f'{w}/checkpoints') if n.isdigit()) == ['2'],
    },
    note='the earlier run\'s files are replaced on purpose (that is --overwrite)',
  )  # fmt: skip


@probe('5', 'K-replica run resumed past a damaged replica checkpoint', (
  'Replicas: a damaged checkpoint blocks the resume, naming no replica and moving nothing '
  'aside.'), 'num_replicas=2; the rerun has steps=6 (checkpoint 6 of replica_1 garbled)')  # fmt: skip
def replica_damage(e: Env) -> dict:
  w = e.path('p5', 'run')
  t = e.train(w, '--config.num_replicas=2')
  data = glob.glob(f'{w}/replica_1/checkpoints/6/state/**/d/*', recursive=True)
  biggest = max(data, key=os.path.getsize)
  with open(biggest, 'r+b') as f:
    f.seek(os.path.getsize(biggest) // 2)
    f.write(bytes(range(256)) * 4)
  before = snapshot(w)
  o = e.train(w, '--config.num_replicas=2')
  after = snapshot(w)
  moved = lambda p: p.replace('replica_1/checkpoints/6/', 'replica_1/checkpoints/6.unreadable/', 1)
  return dict(
    outcome=o, expect=0,
    lost=[p for p in lost_files(before, after, moved) if 'events.out' not in p and
          not p.endswith(('.json', '.jsonl'))],  # logs/summaries are rewritten by the resume
    checks={
      'the first run trained (exit 0)': t.exit == 0,
      'the warning names replica 1 and its checkpoint 6':
        'replica_1/checkpoints/6 is unreadable' in o.stderr,
      'moved aside to 6.unreadable': os.path.isdir(f'{w}/replica_1/checkpoints/6.unreadable'),
      'every replica resumed from step 3': 'resumed every replica from step 3' in o.stderr,
    },
    note=f'warning: {next((l for l in o.lines if "replica_1" in l), "")[:160]}',
  )  # fmt: skip


B6 = (
  '`sample --num 10000000` and `--scale 100000` are killed by the kernel\'s OOM killer; '
  '`num_samples=100000000` aborts with a C++ check failure after writing files; '
  '`model.latent_dim=100000000` ends in an XLA out-of-memory traceback.'
)


def _sample_probe(e, name, *extra):
  out = e.path(name, 'out.png')
  w = e.copy_base(name + '_run')
  r = one_shot(e, ['sample', '--workdir', w, '--out', out, *extra], w)
  r['checks'] = {'no output written': not os.path.exists(out)}
  return r


@probe('6.1', '`sample --num 10000000`', B6)
def big_num(e):
  return _sample_probe(e, 'p6_1', '--num', '10000000')


@probe('6.2', '`sample --scale 100000`', B6)
def big_scale(e):
  return _sample_probe(e, 'p6_2', '--scale', '100000')


def _train_refused(e, name, *overrides, folder=None):
  w = folder or e.path(name, 'run')
  parent = os.path.dirname(w)
  r = one_shot(e, ['train', '--config', CONFIG, '--workdir', w, *overrides], parent)
  return r


@probe('6.3', '`train --config.num_samples=100000000`', B6)
def big_num_samples(e):
  r = _train_refused(e, 'p6_3', '--config.num_samples=100000000')
  r['checks'] = {'no workdir created': not os.path.exists(e.path('p6_3', 'run'))}
  return r


@probe('6.4', '`train --config.model.latent_dim=100000000`', B6)
def big_latent(e):
  r = _train_refused(e, 'p6_4', '--config.model.latent_dim=100000000')
  r['checks'] = {'no workdir created': not os.path.exists(e.path('p6_4', 'run'))}
  return r


B7 = (
  'Tracebacks instead of one line: a garbled config.json or a bad metrics.jsonl line in the '
  'run folder; `--config` naming a file that is not a `.py` file, or whose `get_config` '
  'returns None or lacks a block; a seed above 2**63; `--out` with an unknown extension or '
  'naming a folder; a checkpoint missing an item; a truncated PNG or a decompression-bomb PNG '
  'given to `eval --images`; a full disk during a save prints 144 lines of asyncio and absl '
  'tracebacks before the one line.'
)


@probe('7.1', 'garbled config.json in the run folder (`sample`)', B7)
def garbled_config(e):
  w = e.copy_base('p7_1')
  open(f'{w}/config.json', 'wb').write(b'{"model": ')
  r = _sample_probe_in(e, w, 'p7_1')
  return r


def _sample_probe_in(e, w, name, *extra, expect=2):
  out = e.path(name + 'o', 'out.png')  # outside the run folder `w`
  r = one_shot(e, ['sample', '--workdir', w, '--num', '4', '--out', out, *extra], w, expect=expect)
  r.setdefault('checks', {})['no output written' if expect else 'output written'] = os.path.exists(
    out
  ) == (expect == 0)
  return r


def _bad_metrics_line(e, name, line):
  w = e.copy_base(name)
  with open(f'{w}/metrics.jsonl', 'a') as f:
    f.write(line)
  before = snapshot(w)
  o = e.train(w, '--config.train.steps=7')
  after = snapshot(w)
  steps = logged_steps(w)
  return dict(outcome=o, expect=0, lost=lost_files(
    {k: v for k, v in before.items() if k.startswith('checkpoints/')}, after),
    checks={'the line is dropped and the run resumes to step 7': steps[-1:] == [7]},
    note=f'logged steps now {steps}')  # fmt: skip


@probe('7.2a', 'metrics.jsonl line that is not JSON, then resume', B7, 'resume to step 7')
def bad_metrics_text(e):
  return _bad_metrics_line(e, 'p7_2a', 'this is not json\n')


@probe('7.2b', 'metrics.jsonl line that is JSON but not an object (`[1, 2]`), then resume', B7,
       'resume to step 7')  # fmt: skip
def bad_metrics_list(e):
  return _bad_metrics_line(e, 'p7_2b', '[1, 2]\n')


@probe('7.2c', 'metrics.jsonl object without a step (`{"d_loss": 1}`), then resume', B7,
       'resume to step 7')  # fmt: skip
def bad_metrics_nostep(e):
  return _bad_metrics_line(e, 'p7_2c', '{"d_loss": 1.0}\n')


def _config_probe(e, name, filename, source):
  path = e.path(name, filename)
  open(path, 'w').write(source)
  w = e.path(name, 'run')
  r = one_shot(e, ['train', '--config', path, '--workdir', w], os.path.dirname(w))
  r['checks'] = {'no workdir created': not os.path.exists(w)}
  return r


@probe('7.3', '`--config` naming a file that is not .py', B7)
def config_yaml(e):
  return _config_probe(e, 'p7_3', 'config.yaml', 'train: {}\n')


@probe('7.4', '`--config` whose get_config returns None', B7)
def config_none(e):
  return _config_probe(e, 'p7_4', 'none.py', 'def get_config():\n  return None\n')


@probe('7.5', '`--config` whose get_config lacks a block', B7)
def config_no_block(e):
  return _config_probe(e, 'p7_5', 'no_blocks.py', 'import ml_collections\ndef get_config():\n'
                       '  return ml_collections.ConfigDict({"seed": 0})\n')  # fmt: skip


@probe('7.6', '`--config.seed=9223372036854775808` (2**63)', B7)
def seed_too_big(e):
  r = _train_refused(e, 'p7_6', f'--config.seed={2**63}')
  r['checks'] = {'no workdir created': not os.path.exists(e.path('p7_6', 'run'))}
  return r


@probe('7.7', '`sample --out x.jpgx` (unknown extension)', B7)
def out_extension(e):
  w = e.copy_base('p7_7')
  r = one_shot(e, ['sample', '--workdir', w, '--out', e.path('p7_7o', 'x.jpgx')], w)
  r['checks'] = {'no output written': not os.path.exists(e.path('p7_7o', 'x.jpgx'))}
  return r


@probe('7.8', '`sample --out <a folder>`', B7)
def out_folder(e):
  w = e.copy_base('p7_8')
  folder = os.path.dirname(e.path('p7_8o', 'x'))
  os.makedirs(folder, exist_ok=True)
  r = one_shot(e, ['sample', '--workdir', w, '--out', folder], w)
  r['checks'] = {'the folder is still empty': os.listdir(folder) == []}
  return r


@probe('7.9a', 'checkpoint 6 missing its `meta` item: `sample --step 6`', B7)
def missing_item(e):
  w = e.copy_base('p7_9a')
  shutil.rmtree(f'{w}/checkpoints/6/meta')
  return _sample_probe_in(e, w, 'p7_9a', '--step', '6')


@probe('7.9b', 'checkpoint 6 missing its `state` item: `sample` (latest)', B7)
def missing_item_latest(e):
  w = e.copy_base('p7_9b')
  shutil.rmtree(f'{w}/checkpoints/6/state')
  r = _sample_probe_in(e, w, 'p7_9b', expect=0)
  r['checks']['reads step 3 instead'] = 'from step 3' in r['outcome'].stdout
  r['note'] = 'exit 0 is right here: it samples step 3 with one warning naming checkpoint 6'
  return r


def _image_folder(e, name, n=150):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top

  folder = e.path(name, 'imgs', 'x')[:-2]
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(0)
  for i in range(n):
    Image.fromarray(rng.integers(0, 256, (28, 28), np.uint8)).save(f'{folder}/{i:03d}.png')
  return folder


def _eval_images(e, name, folder, expect=2):
  out = e.path(name, 'e.json')
  argv = ['eval', '--images', folder, '--dataset', 'mnist', '--data-dir', e.tfds, '--split',
          'train[:1000]', '--metrics', 'fid', '--out', out]  # fmt: skip
  r = one_shot(e, argv, folder, expect=expect)
  r['checks'] = {
    ('no output written' if expect else 'output written'): os.path.exists(out) == (expect == 0)
  }
  return r, out


@probe('7.10', 'truncated PNG given to `eval --images`', B7 + ' [item 9: "image file is '
       'truncated" names no file.]')  # fmt: skip
def truncated_png(e):
  folder = _image_folder(e, 'p7_10')
  data = open(f'{folder}/077.png', 'rb').read()
  open(f'{folder}/077.png', 'wb').write(data[: len(data) // 2])
  r, _ = _eval_images(e, 'p7_10', folder)
  r['checks']['the error names the file'] = f'{folder}/077.png' in (r['outcome'].lines or [''])[-1]
  return r


def _png_bomb(path, width=20000, height=20000):
  """A 1-bit PNG of width x height black pixels (400 M pixels, over twice Pillow's limit of
  89 M): a few kB on disk, written row by row."""

  def chunk(kind, data):
    return (len(data).to_bytes(4, 'big') + kind + data +
            zlib.crc32(kind + data).to_bytes(4, 'big'))  # fmt: skip

  z = zlib.compressobj(9)
  row = b'\x00' * (1 + (width + 7) // 8)
  idat = b''.join(z.compress(row) for _ in range(height)) + z.flush()
  ihdr = width.to_bytes(4, 'big') + height.to_bytes(4, 'big') + bytes([1, 0, 0, 0, 0])
  with open(path, 'wb') as f:
    f.write(
      b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', idat) + chunk(b'IEND', b'')
    )


@probe('7.11', 'decompression-bomb PNG (20,000 x 20,000) given to `eval --images`', B7)
def bomb_png(e):
  folder = _image_folder(e, 'p7_11')
  _png_bomb(f'{folder}/000.png')
  r, _ = _eval_images(e, 'p7_11', folder)
  r['checks']['the error names the file'] = f'{folder}/000.png' in (r['outcome'].lines or [''])[-1]
  r['note'] = f'the bomb is {os.path.getsize(folder + "/000.png"):,} bytes on disk'
  return r


@probe('7.12', 'full disk during a checkpoint save', B7,
       'the write of checkpoint 6 fails with EFBIG (RLIMIT_FSIZE), as a full disk fails it '
       'with ENOSPC')  # fmt: skip
def full_disk(e):
  w = e.path('p7_12', 'run')
  o = e.train(w, driver=True, env={'PROBE_FSIZE_AFTER': '3'})
  ckpts = sorted(n for n in os.listdir(f'{w}/checkpoints') if n.isdigit())
  r = e.train(w)
  others = o.lines[:-1]
  return dict(
    outcome=o, expect=1, lost=[], error_lines=1,
    checks={
      'the error is the last line; before it at most the grid warning (documented)': all(
        'Could not write the sample grid' in l for l in others) and len(others) <= 1,
      'checkpoint 3 kept, 6 not listed': ckpts == ['3'],
      'the same command then resumes and finishes (exit 0)': r.exit == 0,
    },
    note=f'{len(o.lines)} stderr lines besides TF/XLA\'s start-up log; rerun: exit {r.exit}',
  )  # fmt: skip


B8 = (
  'Silent garbage or silent success: `edit --strengths nan,inf` and a NaN direction write '
  'black images and exit 0; `sample --scale 0` and `edit --lr nan` are accepted; a config '
  'file that calls `sys.exit(0)` makes gan-jax exit 0 without training; `sample` (a read-only '
  'command) renames a damaged latest checkpoint; resuming with another dataset or seed '
  'silently overwrites config.json, so the record of the earlier steps is lost. Config files '
  'run as Python code, and nothing says so.'
)


def _edit(e, name, *extra):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top

  w = e.copy_base(name)
  digit = e.path(name + 'o', 'digit.png')
  Image.fromarray(np.zeros((28, 28), np.uint8)).save(digit)
  out = e.path(name + 'o', 'edit.png')
  r = one_shot(e, ['edit', '--workdir', w, '--image', digit, '--out', out, *extra], w)
  r['checks'] = {'no output written': not os.path.exists(out)}
  return r


@probe('8.1', '`edit --strengths nan,inf`', B8)
def edit_strengths(e):
  return _edit(e, 'p8_1', '--attribute', 'ink', '--strengths', 'nan,inf')


@probe('8.2', '`edit --direction` a NaN direction file', B8)
def edit_nan_direction(e):
  import numpy as np  # pylint: disable=g-import-not-at-top

  path = e.path('p8_2d', 'nan.npz')
  np.savez(path, direction=np.full(100, np.nan, np.float32))
  return _edit(e, 'p8_2', '--direction', path)


@probe('8.3', '`sample --scale 0`', B8)
def scale_zero(e):
  return _sample_probe(e, 'p8_3', '--scale', '0')


@probe('8.4', '`edit --lr nan`', B8)
def edit_lr(e):
  return _edit(e, 'p8_4', '--attribute', 'ink', '--lr', 'nan')


@probe('8.5', 'config file that calls sys.exit(0)', B8)
def config_exits(e):
  return _config_probe(e, 'p8_5', 'exits.py', 'import sys\nsys.exit(0)\n')


@probe('8.6', '`sample` with a damaged latest checkpoint', B8)
def sample_damaged(e):
  w = e.copy_base('p8_6')
  data = glob.glob(f'{w}/checkpoints/6/state/**/d/*', recursive=True)
  biggest = max(data, key=os.path.getsize)
  with open(biggest, 'r+b') as f:
    f.truncate(os.path.getsize(biggest) // 3)
  r = _sample_probe_in(e, w, 'p8_6', expect=0)
  r['checks']['reads step 3, leaves checkpoint 6 in place'] = 'from step 3' in r[
    'outcome'
  ].stdout and os.path.isdir(f'{w}/checkpoints/6')
  r['note'] = 'exit 0 is right here: it samples step 3 and warns; nothing renamed'
  return r


@probe('8.7a', 'resume with another dataset (`data.name=fashion_mnist`)', B8)
def resume_dataset(e):
  w = e.copy_base('p8_7a')
  r = one_shot(e, ['train', '--config', CONFIG, '--workdir', w, '--config.train.steps=9',
                   '--config.data.name=fashion_mnist'], w)  # fmt: skip
  return r


@probe('8.7b', 'resume with another seed (`seed=7`)', B8)
def resume_seed(e):
  w = e.copy_base('p8_7b')
  return one_shot(e, ['train', '--config', CONFIG, '--workdir', w, '--config.train.steps=9',
                      '--config.seed=7'], w)  # fmt: skip


@probe('8.8', 'the docs say config files are Python code', B8,
       'not a process: reads README.md, docs/ and `gan-jax train --help`')  # fmt: skip
def python_code_said(e):
  o = e.run(['train', '--help'], timeout=120)
  said = [p for p in ['README.md', *glob.glob('docs/*.md', root_dir=REPO)]
          if re.search(r'Python code', open(REPO / p).read())]  # fmt: skip
  helps = bool(re.search(r'Python', o.stdout))
  return dict(outcome=o, expect=0, lost=[], checks={'README/docs say so': bool(said)},
              note=f'said in {said}; --help: {"yes" if helps else "no"}')  # fmt: skip


B9 = (
  'Wrong words: `sample` and `eval` failures end with "Checkpoints already written are kept '
  '... run the same command again to resume"; "image file is truncated" names no file; a '
  'folder named `x.png` counts as an image; a read-only `checkpoints/` is found only at the '
  'first save.'
)


@probe('9.1a', '`sample` failing on an OS error (--out inside a regular file)', B9)
def sample_os_error(e):
  w = e.copy_base('p9_1a')
  blocker = e.path('p9_1ao', 'a_file')
  open(blocker, 'w').write('not a folder')
  r = one_shot(
    e, ['sample', '--workdir', w, '--num', '4', '--out', f'{blocker}/x.png'], w, expect=None
  )
  last = (r['outcome'].lines or [''])[-1]
  r['checks'] = {
    'no words of resuming': 'resume' not in last and 'Checkpoints already' not in last,
    'exit 1 or 2, one line': r['outcome'].exit in (1, 2) and len(r['outcome'].lines) == 1,
  }
  return r


@probe('9.1b', '`eval --workdir` failing on an OS error (--out inside a regular file)', B9)
def eval_os_error(e):
  w = e.copy_base('p9_1b')
  blocker = e.path('p9_1bo', 'a_file')
  open(blocker, 'w').write('not a folder')
  r = one_shot(e, ['eval', '--workdir', w, '--num-samples', '200', '--out', f'{blocker}/e.json'],
               w, expect=None)  # fmt: skip
  last = (r['outcome'].lines or [''])[-1]
  r['checks'] = {
    'no words of resuming': 'resume' not in last and 'Checkpoints already' not in last,
    'exit 1 or 2, one line': r['outcome'].exit in (1, 2) and len(r['outcome'].lines) == 1,
  }
  return r


@probe('9.2', 'a folder named `x.png` among `eval --images`', B9)
def folder_png(e):
  folder = _image_folder(e, 'p9_2')
  os.makedirs(f'{folder}/x.png')
  r, out = _eval_images(e, 'p9_2', folder, expect=0)
  result = json.load(open(out)) if os.path.exists(out) else {}
  n = result.get('num_samples', result.get('num_images'))
  r['checks']['150 images counted, not 151'] = (
    n in (150, None) and 'x.png' not in r['outcome'].stderr
  )
  r['note'] = f'exit 0 is right: the folder is skipped; result counts {n} images'
  return r


@probe('9.3', 'read-only `checkpoints/` on resume', B9,
       'a real permission: run as user nobody, checkpoints/ mode 555, the rest its own')  # fmt: skip
def read_only_checkpoints(e):
  w = e.copy_base('p9_3')
  home = e.path('p9_3h', 'x')[:-2]
  os.makedirs(home, exist_ok=True)
  for root in (w, home, e.env['GAN_JAX_CACHE_DIR']):
    os.makedirs(root, exist_ok=True)
    subprocess.run(['chown', '-R', '65534:65534', root], check=True)
  os.chmod(f'{w}/checkpoints', 0o555)
  before = snapshot(w)
  o = e.run(['train', '--config', CONFIG, '--workdir', w, '--config.train.steps=9'],
            env={'HOME': home}, prefix=['setpriv', '--reuid=65534', '--regid=65534',
                                        '--clear-groups'])  # fmt: skip
  after = snapshot(w)
  diff = changes(before, after)
  last = (o.lines or [''])[-1]
  return dict(outcome=o, expect=2, folder_changed=any(diff.values()), diff=diff,
              lost=lost_files(before, after),
              checks={'found before training, naming checkpoints/': 'checkpoints' in last
                      and 'steps' not in o.stdout})  # fmt: skip


@probe('S', 'SIGTERM during training: time to exit', (
  'What held: SIGTERM (the issue asks for the time from SIGTERM to exit in the table)'),
  'signal sent once step 4 is logged, with the other probes running beside it')  # fmt: skip
def sigterm(e):
  w = e.path('pS', 'run')
  p = e.popen(['train', '--config', CONFIG, '--workdir', w, '--config.train.steps=1000000',
               '--config.log_every=1', '--config.checkpoint_every=1000'])  # fmt: skip
  wait_for(lambda: max(logged_steps(w), default=0) >= 4, p, 600)
  t0 = time.time()
  p.send_signal(signal.SIGTERM)
  o = communicate(p, 300)
  o.seconds = time.time() - t0
  names = sorted(int(n) for n in os.listdir(f'{w}/checkpoints') if n.isdigit())
  s = json.load(open(f'{w}/summary.json')) if os.path.exists(f'{w}/summary.json') else {}
  return dict(outcome=o, expect=0, lost=[],
              checks={'a checkpoint of the step it stopped at': bool(names) and names[-1] == s.get('end_step'),
                      'summary says SIGTERM': s.get('stopped_by_signal') == 'SIGTERM'},
              note=f'{o.seconds:.1f} s from SIGTERM to exit; checkpoint {names[-1:]}; '
                   f'stdout: {o.stdout.strip().splitlines()[-1:]}')  # fmt: skip


# ----------------------------------------------------------------------------------------------
# The fuzz: how many cases of which kinds the hypothesis tests generate.


def count_fuzz(e: Env) -> dict:
  """Replays the derandomized draws of the two 200-case fuzz tests without running gan-jax:
  the same strategies, settings and explicit examples, so the same cases and kinds."""
  from hypothesis import HealthCheck, example, find, given, settings  # pylint: disable=g-import-not-at-top
  from hypothesis import strategies as st  # pylint: disable=g-import-not-at-top

  sys.path.insert(0, str(REPO / 'tests'))
  import fuzz_hostile_configs as fc  # pylint: disable=g-import-not-at-top
  import test_hostile_cli as tc  # pylint: disable=g-import-not-at-top

  out = {}
  tried, count = collections.Counter(), [0]
  kinds = fc.hostile_kinds(e.tfds)

  @settings(max_examples=200, deadline=None, database=None, derandomize=True,
            suppress_health_check=list(HealthCheck))  # fmt: skip
  @given(changes=st.lists(fc.hostile(e.tfds), min_size=1, max_size=3), noise=fc.harmless,
         use_existing=st.booleans())  # fmt: skip
  def configs(changes, noise, use_existing):
    count[0] += 1
    for _, _, kind in changes:
      tried[kind] += 1

  simplest = settings(database=None, derandomize=True, suppress_health_check=list(HealthCheck))
  for kind in reversed(kinds):
    configs = example(changes=[find(kind, lambda _: True, settings=simplest)], noise=[],
                      use_existing=False)(configs)  # fmt: skip
  configs()
  out['configs'] = dict(test='tests/test_hostile_configs.py (tests/fuzz_hostile_configs.py)',
                        cases=count[0], changes=sum(tried.values()), kinds=dict(sorted(tried.items())))  # fmt: skip

  scratch = e.path('fuzz', 'x')[:-2]
  # (family, kind) -> cases. Approximate: hypothesis also draws constants found in the modules
  # loaded so far, and the test has loaded more of gan_jax when it draws; the test itself
  # prints the exact counts (pytest -rP).
  drawn = tc.drawn_kinds(e.base, scratch, e.tfds)
  families = collections.Counter()
  for (family, _), n in drawn.items():
    families[family] += n
  out['cli'] = dict(test='tests/test_hostile_cli.py', cases=sum(drawn.values()),
                    families=dict(families), kinds={k: n for (_, k), n in sorted(drawn.items())})  # fmt: skip
  return out


# ----------------------------------------------------------------------------------------------
# Running and reporting.


def verdict(r: dict) -> str:
  o = r['outcome']
  problems = []
  if r['expect'] is not None and o.exit != r['expect']:
    problems.append(f'exit {o.exit}, expected {r["expect"]}')
  if 'Traceback' in o.stderr:
    problems.append('traceback')
  if r['expect'] in (1, 2) and len(o.lines) != 1 and not r.get('error_lines'):
    problems.append(f'{len(o.lines)} stderr lines')
  if r['expect'] in (1, 2) and sum(l.startswith('gan-jax: error') for l in o.lines) != 1:
    problems.append('not exactly one `gan-jax: error:` line')
  if r.get('lost'):
    problems.append(f'lost {r["lost"][:5]}')
  if r.get('folder_changed') and r['expect'] in (1, 2):
    problems.append(f'folder changed {r["diff"]}')
  problems += [f'failed check: {k}' for k, ok in r.get('checks', {}).items() if not ok]
  return 'ok' if not problems else 'DEFECT: ' + '; '.join(problems)


def command(argv: list[str], e: Env) -> str:
  """`gan-jax <args>` of a probe's process, with the temporary folder as $TMP."""
  for head in (DRIVER, 'gan_jax.cli.main'):
    if head in argv:
      argv = ['gan-jax', *argv[argv.index(head) + 1 :]]
      break
  return ' '.join(argv).replace(str(e.scratch), '$TMP').replace(str(REPO) + '/', '')


def run_probe(e: Env, p: dict) -> dict:
  t0 = time.time()
  try:
    r = p['fn'](e)
  except Exception as ex:  # pylint: disable=broad-except
    import traceback  # pylint: disable=g-import-not-at-top

    return dict(id=p['id'], name=p['name'], before=p['before'], short=p['short'],
                verdict=f'PROBE ERROR: {type(ex).__name__}: {ex}', error=traceback.format_exc(),
                seconds=round(time.time() - t0, 1))  # fmt: skip
  o = r['outcome']
  lines = o.lines
  return dict(
    id=p['id'], name=p['name'], before=p['before'], short=p['short'],
    command=command(o.argv, e),
    exit=o.exit, expected_exit=r['expect'], stderr_lines=len(lines),
    stderr_lines_raw=len(o.stderr.splitlines()), traceback='Traceback' in o.stderr,
    stderr_tail=[l.replace(str(e.scratch), '$TMP')[:400] for l in lines[-5:]],
    last_line=r.get('last_line', lines[-1] if lines else '').replace(str(e.scratch), '$TMP'),
    folder_changed=r.get('folder_changed'), diff=r.get('diff'), lost=r.get('lost', []),
    checks=r.get('checks', {}), note=str(r.get('note', '')).replace(str(e.scratch), '$TMP'),
    verdict=verdict(r), seconds=round(time.time() - t0, 1),
  )  # fmt: skip


def markdown(results: list[dict], fuzz: dict, meta: dict) -> str:
  def cell(s):
    return str(s).replace('|', '\\|').replace('\n', ' ')

  ok = [r for r in results if r['verdict'] == 'ok']
  errors = [r for r in results if 'exit' not in r]
  results = [r for r in results if 'exit' in r]
  failing = [r for r in results if r.get('expected_exit') in (1, 2)]
  one_line = [r for r in failing if r['stderr_lines'] == 1]
  lines = [
    '# Issue 17, probe by probe: before and now',
    '',
    f'`{meta["command"]}` on {meta["date"]} ({meta["git"]}), {meta["cpus"]} CPU cores shared '
    f'with other jobs (load average {meta["load"]}), {meta["wall_s"]:.0f} s in all. Each probe '
    'runs real `gan-jax` processes (`python -m gan_jax.cli.main`) on the tiny MNIST DCGAN '
    '(`experiments/mnist_dcgan.py:tiny`) in a temporary folder. *Before* quotes issue 17 (as '
    'found on 981395f). *stderr* counts the lines of gan-jax and Python, not the lines '
    'TensorFlow and XLA log as they start (on every run). *Folder* compares the SHA-256 of '
    'every file of the run folder (or the folder given) before and after; *lost* lists files '
    'whose bytes are gone. Raw data: `hostile_probes.json`.',
    '',
    f'**{len(results) + len(errors)} probes; {len(ok)} as they should be'
    + (f', {len(errors)} could not be run' if errors else '')
    + f'.** Of the {len(failing)} that '
    f'should fail: {len(one_line)} print one line'
    + (
      f' ({", ".join(r["id"] + ": " + str(r["stderr_lines"]) for r in failing if r not in one_line)}'
      ' lines, see the row)'
      if len(one_line) < len(failing)
      else ''
    )
    + ', '
    f'{sum(r["exit"] == r["expected_exit"] for r in failing)} exit with the expected status '
    f'(2 for bad input, 1 for a failed run), '
    f'{sum(not r["traceback"] for r in results)} of all {len(results)} show no traceback, '
    f'{sum(not r["lost"] for r in results)} lose nothing.',
    '',
    '| id | probe | before (issue 17) | now: exit (expected) | stderr lines | traceback | last '
    'stderr line | folder changed / lost | verdict, notes |',
    '|---|---|---|---|---|---|---|---|---|',
  ]
  for r in results + errors:
    if 'exit' not in r:
      lines.append(f'| {r["id"]} | {cell(r["name"])} | | | | | | | {cell(r["verdict"])} |')
      continue
    before = r['before'] if len(r['before']) < 260 else r['before'][:257] + '...'
    folder = {None: 'n/a', True: 'changed', False: 'unchanged'}[r['folder_changed']]
    folder += f'; lost: {", ".join(r["lost"][:4])}' if r['lost'] else '; nothing lost'
    note = r['note'] + (f' (short version: {r["short"]})' if r['short'] else '')
    checks = '; '.join(f'{k}: {"yes" if v else "NO"}' for k, v in r['checks'].items())
    lines.append(
      f'| {r["id"]} | {cell(r["name"])} | {cell(before)} | {r["exit"]} ({r["expected_exit"]}) '
      f'| {r["stderr_lines"]} | {"yes" if r["traceback"] else "no"} | `{cell(r["last_line"][:300])}` '
      f'| {folder} | {cell(r["verdict"])}. {cell(checks)}. {cell(note)} |'
    )
  lines += ['', '## The fuzz', '']
  c = fuzz.get('configs', {})
  k = fuzz.get('cli', {})
  if c:
    lines.append(
      f'- `{c["test"]}`: {c["cases"]} cases (200 drawn by hypothesis, derandomized, plus each '
      f'of the {len(c["kinds"])} kinds once in its simplest form), {c["changes"]} hostile config '
      'changes in all, 1 to 3 per case, each through `gan-jax train`, on a new or an existing '
      'run folder. Kinds (config fields): ' + ', '.join(f'{n} {v}' for n, v in c['kinds'].items())
    )
  if k:
    groups = k['families']
    lines.append(
      f'- `{k["test"]}`: {k["cases"]} cases through `gan-jax sample`, `eval`, `edit` and '
      f'`train`, {len(k["kinds"])} kinds: '
      + ', '.join(f'{g} {v}' for g, v in groups.items())
      + ' ('
      + ', '.join(f'{n} {v}' for n, v in k['kinds'].items())
      + ')'
    )
  lines += [
    '',
    'Counts from replaying the tests\' derandomized hypothesis draws (same strategies and '
    'settings) without running gan-jax. Each case must exit 2 with one line, write nothing and '
    'leave the run folder byte for byte as it was.',
  ]
  if meta.get('updated'):
    lines += ['', f'Rows updated since: {meta["updated"]}.']
  if meta.get('fuzz_tests'):
    lines += ['', f'Run once with this table: {meta["fuzz_tests"]}']
  return '\n'.join(lines) + '\n'


def make_base(e: Env) -> None:
  o = e.train(e.base)
  if o.exit != 0:
    raise SystemExit(f'could not train the tiny run: {o.stderr[-3000:]}')


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--jobs', type=int, default=3)
  parser.add_argument('--only', default='', help='comma-separated probe ids (e.g. 1.2,7.3)')
  parser.add_argument(
    '--out',
    default='',
    help='results prefix (default: experiments/results/hostile_probes unless --only)',
  )
  parser.add_argument('--no-fuzz-count', action='store_true')
  parser.add_argument('--keep', action='store_true', help='keep the temporary folder')
  parser.add_argument('--base', default='', help='copy this tiny run instead of training one')
  parser.add_argument(
    '--update',
    action='store_true',
    help='with --only: replace those probes\' rows in the committed results',
  )
  args = parser.parse_args()
  tfds = os.environ.get('TFDS_DATA_DIR') or str(REPO.parent / 'shared' / 'tfds')
  scratch = tempfile.mkdtemp(prefix='hostile_probes_')
  os.chmod(scratch, 0o755)
  e = Env(scratch, tfds)
  t0 = time.time()
  todo = [p for p in PROBES if not args.only or p['id'] in args.only.split(',')]
  try:
    if args.base:
      shutil.copytree(args.base, e.base)
    else:
      make_base(e)
    print(f'base run trained in {time.time() - t0:.0f} s', flush=True)
    results = {}
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
      futures = {pool.submit(run_probe, e, p): p['id'] for p in todo}
      for f in concurrent.futures.as_completed(futures):
        r = f.result()
        results[r['id']] = r
        print(f'[{time.time() - t0:5.0f} s] {r["id"]:5} {r["verdict"][:150]}', flush=True)
    fuzz = {} if args.no_fuzz_count else count_fuzz(e)
  finally:
    if not args.keep:
      subprocess.run(['chmod', '-R', 'u+w', scratch])
      shutil.rmtree(scratch, ignore_errors=True)
    else:
      print('kept', scratch)
  ordered = [results[p['id']] for p in todo if p['id'] in results]
  default = str(REPO / 'experiments/results/hostile_probes')
  if args.update:  # the other probes' rows from the last full run
    with open(default + '.json') as f:
      old = json.load(f)
    rows = {r['id']: r for r in old['probes']} | {r['id']: r for r in ordered}
    ordered = [rows[p['id']] for p in PROBES if p['id'] in rows]
    fuzz = fuzz or old['fuzz']
  meta = dict(
    command='TFDS_DATA_DIR=../shared/tfds nice -n 10 python scripts/hostile_probes.py'
    + (f' --only {args.only}' if args.only and not args.update else ''),
    date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
    git=subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO, capture_output=True,
                       text=True).stdout.strip(),  # fmt: skip
    cpus=os.cpu_count(), load=' '.join(f'{x:.1f}' for x in os.getloadavg()),
    host=socket.gethostname(), python=platform.python_version(), wall_s=time.time() - t0,
    jobs=args.jobs,
  )  # fmt: skip
  if args.update:
    meta = {**old['meta'], 'updated': f'probes {args.only} rerun on {meta["date"]} ({meta["git"]}, '
            f'load average {meta["load"]}, {meta["wall_s"]:.0f} s)'}  # fmt: skip
  prefix = args.out or ('' if args.only and not args.update else default)
  if prefix:
    with open(prefix + '.json', 'w') as f:
      json.dump(dict(meta=meta, probes=ordered, fuzz=fuzz), f, indent=1)
    with open(prefix + '.md', 'w') as f:
      f.write(markdown(ordered, fuzz, meta))
    print('wrote', prefix + '.json', prefix + '.md')
  bad = [r['id'] for r in ordered if r['verdict'] != 'ok']
  print(f'{len(ordered)} probes, {len(ordered) - len(bad)} ok; not ok: {bad}')


if __name__ == '__main__':
  main()
