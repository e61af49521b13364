"""`train_translation(config, workdir)`: `gan-jax train` for a translation config.

The loop of a pix2pix or CycleGAN run (`gan_jax.translation.kinds`), with the training layer's
run machinery (the run lock, the writability and overwrite checks, config.json, Orbax
checkpoints, the scalar log with its NaN guard, the stop on SIGTERM/SIGINT). It writes

    <workdir>/translation_run.json    the record `gan-jax translate` reads (`run.py`)
    <workdir>/config.json             the resolved config (and gan_jax_run.json)
    <workdir>/checkpoints/<step>/     Orbax checkpoints of the whole state, every
                                      `checkpoint_every` steps, at a stop and at the end
    <workdir>/metrics.jsonl           the train losses every `log_every` steps and the
                                      evaluations (`eval/psnr`, ..., `run_config.EVAL_METRICS`)
                                      every `eval_every` steps and at the end; TensorBoard too
    <workdir>/samples/step_<N>.png    grids of held-out images every `sample_every` steps and
                                      at the end: rows of input | output | target (pix2pix) or
                                      input | translation | cycle (CycleGAN, A's then B's)
    <workdir>/summary.json            steps, wall time, the last losses and evaluation

Running the same command again resumes from the latest checkpoint. The state holds
everything a step changes (pix2pix: BatchNorm statistics, the RNG of the dropout masks;
CycleGAN: the image histories with their fill counts, the Adam counts that drive the
learning-rate schedule), and the batches of step k are a function of (seed, k)
(`kinds.batch_indices`), so a resumed run ends with the same state, bit for bit on a CPU, as
an uninterrupted one. SIGTERM or SIGINT: the step in flight completes, a checkpoint of it is
saved, and the function returns (exit status 0 from `gan-jax train`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from typing import Any, Sequence

import jax
import ml_collections
import tqdm

from gan_jax.core.sampling import save_grid
from gan_jax.core.sharding import make_mesh, replicate
from gan_jax.data.tfds_images import resolve_data_dir
from gan_jax.errors import ConfigError, NonFiniteError, UnreadableCheckpointError
from gan_jax.training import replicas as training_replicas
from gan_jax.training import run_lock
from gan_jax.training.checkpoint import Checkpointer
from gan_jax.training.run_actions import ScalarLog, parse_log_line
from gan_jax.training.run_setup import (
  check_overwritable,
  clear_run,
  has_checkpoints,
  prepare_workdir,
  write_run_config,
)
from gan_jax.training.signals import StopOnSignal
from gan_jax.translation import kinds as kinds_lib
from gan_jax.translation import replicas as replicas_lib
from gan_jax.translation import run as run_lib
from gan_jax.translation import run_config

log = logging.getLogger(__name__)

# Model arguments a resumed run may change (they change no shape of the state); any other
# change of the model, the task or the seed is refused.
RESUMABLE_CHANGES = ('lr', 'loss', 'l1_weight', 'cycle_weight', 'identity_ratio',
                     'hold_steps', 'decay_steps')  # fmt: skip


def resolve_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy with `data.data_dir` filled in (`$TFDS_DATA_DIR` when unset), checked.

  Raises:
    ConfigError: from `run_config.validate`.
  """
  config = ml_collections.ConfigDict(config.to_dict())
  config.data.data_dir = resolve_data_dir(config.data.data_dir)
  run_config.validate(config)
  return config


def check_same_run(workdir: str, record: dict[str, Any]) -> None:
  """Refuses to resume `workdir` as the run of `record` (a `translation_run.json` about to be
  written) when its own record has another kind, task, seed or model shape.

  Raises:
    ConfigError: naming each differing entry, or saying the folder holds another kind of run.
  """
  try:
    old = run_lib.read_run_record(workdir)
  except (FileNotFoundError, UnreadableCheckpointError) as e:
    raise ConfigError(
      f'{workdir} holds checkpoints but no readable translation run ({e}); use a new --workdir.'
    ) from None
  changed = [
    f'{key}: {old.get(key)!r} -> {record[key]!r}'
    for key in ('kind', 'task', 'seed')
    if old.get(key) != record[key]
  ]
  model = record['model']
  changed += [
    f'model.{key}: {old["model"].get(key)!r} -> {model.get(key)!r}'
    for key in sorted(set(old['model']) | set(model))
    if key not in RESUMABLE_CHANGES and old['model'].get(key) != model.get(key)
  ]
  if changed:
    raise ConfigError(
      f'{workdir} holds checkpoints of another translation run ({"; ".join(changed)}). Use a '
      'new --workdir, or set these back to resume.'
    )


@run_lock.holds_workdir('workdir')  # one writer per run folder, as for a GAN run
def train_translation(
  config: ml_collections.ConfigDict, workdir: str, *, overwrite: bool = False
) -> Any:
  """Trains the pix2pix or CycleGAN run of a translation config into `workdir`.

  With `config.num_replicas = K > 1` this trains K runs in one compiled program
  (`train_translation_replicas`), replica i (seed `seed + i`, the i-th `replica_values`) in
  the run folder `<workdir>/replica_<i>/`, and returns their states stacked on a leading
  axis K.

  Args:
    config: a translation config (`run_config.translation_config`, e.g. from
      experiments/pix2pix_inpaint_mnist.py).
    workdir: the run folder; created if missing. If it holds checkpoints, training resumes
      from the latest one.
    overwrite: start a new run even if `workdir` holds one (its run files are deleted once
      every check passed; a folder that is no gan-jax run is refused).

  Returns:
    The final `Pix2PixState` / `CycleGANState`, at step `train.steps`, or earlier after
    SIGTERM / SIGINT (then checkpointed: rerun to resume).

  Raises:
    ConfigError: (a ValueError) a bad field, bad data (one line), or a workdir that holds
      another run.
    gan_jax.data.tfds_images.DatasetNotFoundError: the TFDS dataset is not in the data dir.
    PermissionError: the workdir cannot be created or written.
    NonFiniteError: a loss became NaN or Inf; the last good checkpoint is kept.
    CheckpointWriteError: a checkpoint could not be written.
  """
  config = resolve_config(config)
  if config.num_replicas > 1:
    return train_translation_replicas(
      replicas_lib.replica_configs(config),
      training_replicas.replica_workdirs(workdir, config.num_replicas),
      overwrite=overwrite,
    )
  return _start([config], [workdir], overwrite=overwrite, stacked=False)


@run_lock.holds_workdir('workdirs')  # each replica folder has one writer, as a run's
def train_translation_replicas(
  configs: Sequence[ml_collections.ConfigDict],
  workdirs: Sequence[str],
  *,
  overwrite: bool = False,
) -> Any:
  """Trains K translation runs in one compiled step (`gan_jax.translation.replicas`), replica
  i as `configs[i]` says into `workdirs[i]`.

  Every folder gets what `train_translation` writes for one run, at the same steps. SIGTERM /
  SIGINT checkpoints every replica and returns; rerunning resumes all of them from their
  latest common readable checkpoint (`gan_jax.training.replicas.restore_common`), exactly.
  A NaN in any replica stops them all, naming the replica.

  Args:
    configs: K >= 1 translation configs (num_replicas 1 each) that differ only in `seed`
      and the fields of `run_config.REPLICA_FIELDS[kind]`.
    workdirs: K distinct run folders.
    overwrite: start every replica anew (see `train_translation`).

  Returns:
    The K final states stacked on a leading axis (`gan_jax.training.replicas.unstack(states,
    i)` is replica i's).

  Raises:
    ConfigError: (a ValueError) configs that differ in other fields, workdirs not one per
      config or repeated, and every error of `train_translation`.
    NonFiniteError: a loss of a replica became NaN or Inf; every replica's last good
      checkpoint is kept.
    CheckpointWriteError: a checkpoint could not be written.
  """
  if len(configs) != len(workdirs) or not configs:
    raise ConfigError(f'need one workdir per config, got {len(configs)} and {len(workdirs)}.')
  if len({os.path.abspath(w) for w in workdirs}) != len(workdirs):
    raise ConfigError(f'replica workdirs must be distinct, got {list(workdirs)}.')
  configs = [resolve_config(c) for c in configs]
  replicas_lib.check_replicable(configs)
  return _start(configs, list(workdirs), overwrite=overwrite, stacked=True)


@dataclasses.dataclass
class _Folder:
  """One run folder: its config, task, model arguments and (while training) its outputs."""

  config: ml_collections.ConfigDict
  workdir: str
  task: Any
  model_args: dict[str, Any]
  ckpt: Checkpointer | None = None
  scalars: ScalarLog | None = None
  last_eval: dict[str, float] = dataclasses.field(default_factory=dict)


def _plan(config, workdir: str, kind: kinds_lib.Kind, overwrite: bool) -> _Folder:
  """Builds a folder's task and record and checks the folder; writes nothing."""
  if overwrite:
    check_overwritable(workdir)
  try:
    task = kind.build_task(config)
  except ConfigError:
    raise
  except ValueError as e:  # e.g. more images asked for than the split holds
    raise ConfigError(f'translation: {e}') from None
  model_args = kind.model_args(config, task)
  record = {
    'kind': kind.name,
    'task': kind.describe(config, task),
    'model': model_args,
    'seed': config.seed,
  }
  # (JSON round trip: tuples as lists, as the record on disk reads back)
  record = json.loads(json.dumps(record))
  if not overwrite and has_checkpoints(workdir):
    check_same_run(workdir, record)
  return _Folder(config, workdir, task, model_args)


def _start(configs, workdirs, *, overwrite: bool, stacked: bool) -> Any:
  """Checks every folder, then writes their records and trains them."""
  kind = kinds_lib.KINDS[configs[0].translation.kind]
  folders = [_plan(c, w, kind, overwrite) for c, w in zip(configs, workdirs)]
  for f in folders:
    prepare_workdir(f.workdir)
    if overwrite:
      removed = clear_run(f.workdir)
      if removed:
        log.warning('overwrite: removed the previous run in %s (%s)', f.workdir, ', '.join(removed))
    write_run_config(f.config, f.workdir)
    task = kind.describe(f.config, f.task)
    run_lib.write_run_record(f.workdir, kind.name, task, f.model_args, seed=f.config.seed)
  return _Run(folders, kind, stacked).train()


class _Run:
  """The loop of `train_translation` over K >= 1 run folders: with `stacked=False` one run's
  state and step, with `stacked=True` states with a leading axis K and the replicated step
  (`gan_jax.translation.replicas`). Everything else is the same for both."""

  def __init__(self, folders: list[_Folder], kind: kinds_lib.Kind, stacked: bool):
    self.folders, self.kind, self.stacked = folders, kind, stacked
    self.config = folders[0].config
    self.configs = [f.config for f in folders]
    self.model, state = kind.create(**folders[0].model_args)
    self.mesh = make_mesh()
    if stacked:
      self.initial = [state] + [kind.create(**f.model_args)[1] for f in folders[1:]]
    else:
      self.initial = replicate(state, self.mesh) if kind.name == 'cyclegan' else state
    self.net = kind.classifier(folders[0].task) if self.config.eval_every else None
    self.eval_time = 0.0

  def due(self, step: int, every: int) -> bool:
    return bool(every) and step % every == 0 or step == self.config.train.steps

  def state_of(self, state, i: int) -> Any:
    """Folder i's (unstacked) state."""
    return training_replicas.unstack(state, i) if self.stacked else state

  def metrics_of(self, metrics: dict[str, Any], i: int) -> dict[str, Any]:
    """Folder i's scalars of one step's metrics."""
    return {n: v[i] for n, v in metrics.items()} if self.stacked else metrics

  def step_fn(self):
    if self.stacked:
      return replicas_lib.make_replicated_step(self.kind, self.model, self.configs)
    return self.kind.make_step(self.model, self.mesh)

  def batch(self, step: int) -> tuple:
    if self.stacked:
      return (
        replicas_lib.stacked_batch(self.kind, [f.task for f in self.folders], self.configs, step),
      )
    f = self.folders[0]
    return self.kind.batch(f.task, f.config.seed, step, f.config.train.batch_size)

  def evaluate(self, state, step: int) -> None:
    """Evaluates every folder's state on its held-out images, logged as `eval/<name>`."""
    t0 = time.perf_counter()
    for i, f in enumerate(self.folders):
      results = self.kind.evaluate(self.model, self.state_of(state, i), f.task, self.net)
      f.scalars.write(step, {f'eval/{k}': v for k, v in results.items()})
      f.last_eval = results
      shown = ', '.join(f'{k}={v:.4g}' for k, v in results.items())
      where = f' ({f.workdir})' if self.stacked else ''
      self.bar.write(f'step {step}{where}: {shown}')
    self.eval_time += time.perf_counter() - t0

  def write_grids(self, state, step: int) -> None:
    """samples/step_<N>.png of every folder; a failed write is a warning (checkpoints are
    what matters)."""
    k = self.config.translation.num_grid
    for i, f in enumerate(self.folders):
      rows = self.kind.picture(self.model, self.state_of(state, i), f.task, k)
      path = os.path.join(f.workdir, 'samples', f'step_{step:07d}.png')
      try:
        save_grid(path, rows, ncol=3, scale=3)
      except OSError as err:
        log.warning('Could not write the grid %s: %s', path, err)

  def load_state(self) -> Any:
    """The state of the newest readable checkpoint (K folders: the newest common one), or
    the initial state."""
    if not self.stacked:
      ckpt = self.folders[0].ckpt
      return self.initial if ckpt.latest_step() is None else ckpt.restore(self.initial)
    _, states = training_replicas.restore_common(
      [f.ckpt for f in self.folders], self.initial, [f.workdir for f in self.folders]
    )
    return training_replicas.stack(states)

  def train(self) -> Any:
    config = self.config
    with contextlib.ExitStack() as stack:
      for f in self.folders:
        f.ckpt = stack.enter_context(Checkpointer(f.workdir, keep=f.config.keep_checkpoints))
      state = self.load_state()
      self.start = int(jax.device_get(self.state_of(state, 0).step))
      if self.start:
        where = ', '.join(f.ckpt.directory for f in self.folders)
        log.info('Resuming from the checkpoint at step %d in %s', self.start, where)
      for f in self.folders:
        f.scalars = ScalarLog(f.workdir, self.start)
        stack.callback(f.scalars.close)
      self.bar = tqdm.tqdm(
        total=config.train.steps,
        initial=self.start,
        disable=not config.progress_bar,
        unit='step',
        dynamic_ncols=True,
      )
      stack.callback(self.bar.close)
      return self.loop(state)

  def check_and_log(self) -> None:
    """The NaN guard of every folder (before any checkpoint), then the due log lines."""
    for i, f in enumerate(self.folders):
      try:
        checked = f.scalars.check()
      except NonFiniteError as e:
        if not self.stacked:
          raise
        raise NonFiniteError(f'replica {i} ({f.workdir}): {e}') from None
      for s, values in checked:
        if self.due(s, self.config.log_every):
          f.scalars.write(s, values)

  def loop(self, state) -> Any:
    config, total = self.config, self.config.train.steps
    t_run = time.perf_counter()
    step, metrics, stopped_by = self.start, None, None
    step_fn = self.step_fn()
    with StopOnSignal() as stopper:
      if config.eval_every and step and self.due(step, config.eval_every):
        if any(step not in f.scalars.eval_steps for f in self.folders):
          self.evaluate(state, step)  # killed between a checkpoint and its eval
      while step < total:
        state, metrics = step_fn(state, *self.batch(step))
        step += 1
        for i, f in enumerate(self.folders):
          f.scalars.add(step, self.metrics_of(metrics, i))
        self.bar.update(1)
        stopped_by = stopper.received
        save = self.due(step, config.checkpoint_every) or stopped_by is not None
        if self.due(step, config.log_every) or save:
          self.check_and_log()
        if self.due(step, config.sample_every):
          self.write_grids(state, step)
        if save:
          for i, f in enumerate(self.folders):
            f.ckpt.save(self.state_of(state, i))
        if stopped_by is not None:
          log.warning(
            'Received %s: stopped after step %d and saved a checkpoint in %s; run the same '
            'command again to resume.',
            stopped_by,
            step,
            ', '.join(f.ckpt.directory for f in self.folders),
          )
          break
        if config.eval_every and self.due(step, config.eval_every):
          self.evaluate(state, step)
    wall = time.perf_counter() - t_run
    for i, f in enumerate(self.folders):
      own = None if metrics is None else self.metrics_of(metrics, i)
      self.write_summary(f, step, own, wall, stopped_by)
    return state

  def write_summary(
    self, f: _Folder, step: int, metrics, wall: float, stopped_by: str | None
  ) -> None:
    """summary.json of folder `f`: the steps of this invocation, its wall time (of all
    replicas together), the last losses and evaluation (a rerun of a finished run rewrites
    it from metrics.jsonl)."""
    config = self.config
    if step == self.start:
      finals = self.logged_finals(f)
      if finals is None:
        return
      final_metrics, final_eval = finals
    else:
      final_metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
      final_eval = f.last_eval or (self.logged_finals(f) or ({}, {}))[1]
    train_wall = max(wall - self.eval_time, 1e-9)
    summary = {
      'kind': self.kind.name,
      'start_step': self.start,
      'end_step': step,
      'wall_time_s': wall,
      'steps_per_sec': (step - self.start) / train_wall,
      'images_per_sec': config.train.batch_size * (step - self.start) / train_wall,
      'eval_time_s': self.eval_time,
      'devices': len(jax.devices()),
      'platform': jax.devices()[0].platform,
      'final_metrics': final_metrics,
      'final_eval': final_eval,
      'stopped_by_signal': stopped_by,
    }
    if self.stacked:  # as a GAN replica's summary; the speeds are those of the K together
      summary.update(
        replica=self.folders.index(f),
        num_replicas=len(self.folders),
        replica_workdirs=[g.workdir for g in self.folders],
      )
    path = os.path.join(f.workdir, 'summary.json')
    with open(path + '.tmp', 'w') as out:
      json.dump(summary, out, indent=2)
    os.replace(path + '.tmp', path)

  def logged_finals(self, f: _Folder) -> tuple[dict[str, float], dict[str, float]] | None:
    """(losses, evaluation) logged at this run's last step in metrics.jsonl, for a rerun
    that trained nothing; None when the run is not at its end or is recorded as finished."""
    total = self.config.train.steps
    if self.start != total:
      return None
    try:
      with open(os.path.join(f.workdir, 'summary.json')) as fp:
        old = json.load(fp)
      if old.get('end_step') == total and not old.get('stopped_by_signal'):
        return None
    except (OSError, ValueError, AttributeError):
      pass
    losses, evals = {}, {}
    with open(f.scalars.path) as fp:
      for line in fp:
        entry = parse_log_line(line)
        if entry is not None and entry['step'] == total:
          for k, v in entry.items():
            if k.startswith('eval/'):
              evals[k[len('eval/') :]] = v
            elif k != 'step':
              losses[k] = v
    return losses, evals
