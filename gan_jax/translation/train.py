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

import json
import logging
import os
import time
from typing import Any

import jax
import ml_collections
import tqdm

from gan_jax.core.sampling import save_grid
from gan_jax.core.sharding import make_mesh, replicate
from gan_jax.data.tfds_images import resolve_data_dir
from gan_jax.errors import ConfigError, UnreadableCheckpointError
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
  kind = kinds_lib.KINDS[config.translation.kind]
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
  prepare_workdir(workdir)
  if overwrite:
    removed = clear_run(workdir)
    if removed:
      log.warning('overwrite: removed the previous run in %s (%s)', workdir, ', '.join(removed))
  write_run_config(config, workdir)
  run_lib.write_run_record(workdir, kind.name, record['task'], model_args, seed=config.seed)
  return _Run(config, workdir, kind, task, model_args).train()


class _Run:
  """One translation run's loop (`train_translation`)."""

  def __init__(self, config, workdir: str, kind: kinds_lib.Kind, task, model_args: dict):
    self.config, self.workdir, self.kind, self.task = config, workdir, kind, task
    self.model, state = kind.create(**model_args)
    self.mesh = make_mesh()
    self.initial = replicate(state, self.mesh) if kind.name == 'cyclegan' else state
    self.net = kind.classifier(task) if config.eval_every else None
    self.eval_time = 0.0
    self.last_eval: dict[str, float] = {}

  def due(self, step: int, every: int) -> bool:
    return bool(every) and step % every == 0 or step == self.config.train.steps

  def evaluate(self, state, step: int) -> None:
    """Evaluates `state` on the held-out images and logs it as `eval/<name>` at `step`."""
    t0 = time.perf_counter()
    results = self.kind.evaluate(self.model, state, self.task, self.net)
    self.scalars.write(step, {f'eval/{k}': v for k, v in results.items()})
    self.last_eval = results
    shown = ', '.join(f'{k}={v:.4g}' for k, v in results.items())
    self.bar.write(f'step {step}: {shown}')
    self.eval_time += time.perf_counter() - t0

  def write_grid(self, state, step: int) -> None:
    """samples/step_<N>.png; a failed write is a warning (checkpoints are what matters)."""
    k = self.config.translation.num_grid
    rows = self.kind.picture(self.model, state, self.task, k)
    path = os.path.join(self.workdir, 'samples', f'step_{step:07d}.png')
    try:
      save_grid(path, rows, ncol=3, scale=3)
    except OSError as err:
      log.warning('Could not write the grid %s: %s', path, err)

  def train(self) -> Any:
    config = self.config
    with Checkpointer(self.workdir, keep=config.keep_checkpoints) as ckpt:
      state = self.initial
      if ckpt.latest_step() is not None:
        state = ckpt.restore(state)
      self.start = int(jax.device_get(state.step))
      if self.start:
        log.info('Resuming from the checkpoint at step %d in %s', self.start, ckpt.directory)
      self.scalars = ScalarLog(self.workdir, self.start)
      self.bar = tqdm.tqdm(
        total=config.train.steps,
        initial=self.start,
        disable=not config.progress_bar,
        unit='step',
        dynamic_ncols=True,
      )
      try:
        return self.loop(state, ckpt)
      finally:
        self.bar.close()
        self.scalars.close()

  def loop(self, state, ckpt: Checkpointer) -> Any:
    config, total, kind = self.config, self.config.train.steps, self.kind
    t_run = time.perf_counter()
    step, metrics, stopped_by = self.start, None, None
    step_fn = kind.make_step(self.model, self.mesh)
    with StopOnSignal() as stopper:
      if config.eval_every and step and self.due(step, config.eval_every):
        if step not in self.scalars.eval_steps:  # killed between a checkpoint and its eval
          self.evaluate(state, step)
      while step < total:
        batch = kind.batch(self.task, config.seed, step, config.train.batch_size)
        state, metrics = step_fn(state, *batch)
        step += 1
        self.scalars.add(step, metrics)
        self.bar.update(1)
        stopped_by = stopper.received
        save = self.due(step, config.checkpoint_every) or stopped_by is not None
        if self.due(step, config.log_every) or save:
          for s, values in self.scalars.check():  # the NaN guard, before any checkpoint
            if self.due(s, config.log_every):
              self.scalars.write(s, values)
        if self.due(step, config.sample_every):
          self.write_grid(state, step)
        if save:
          ckpt.save(state)
        if stopped_by is not None:
          log.warning(
            'Received %s: stopped after step %d and saved a checkpoint in %s; run the same '
            'command again to resume.',
            stopped_by,
            step,
            ckpt.directory,
          )
          break
        if config.eval_every and self.due(step, config.eval_every):
          self.evaluate(state, step)
    self.write_summary(step, metrics, time.perf_counter() - t_run, stopped_by)
    return state

  def write_summary(self, step: int, metrics, wall: float, stopped_by: str | None) -> None:
    """summary.json: the steps of this invocation, its wall time, the last losses and
    evaluation (a rerun of a finished run rewrites it from metrics.jsonl)."""
    config = self.config
    if step == self.start:
      finals = self.logged_finals()
      if finals is None:
        return
      final_metrics, final_eval = finals
    else:
      final_metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
      final_eval = self.last_eval or (self.logged_finals() or ({}, {}))[1]
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
    path = os.path.join(self.workdir, 'summary.json')
    with open(path + '.tmp', 'w') as f:
      json.dump(summary, f, indent=2)
    os.replace(path + '.tmp', path)

  def logged_finals(self) -> tuple[dict[str, float], dict[str, float]] | None:
    """(losses, evaluation) logged at this run's last step in metrics.jsonl, for a rerun
    that trained nothing; None when the run is not at its end or is recorded as finished."""
    total = self.config.train.steps
    if self.start != total:
      return None
    try:
      with open(os.path.join(self.workdir, 'summary.json')) as f:
        old = json.load(f)
      if old.get('end_step') == total and not old.get('stopped_by_signal'):
        return None
    except (OSError, ValueError, AttributeError):
      pass
    losses, evals = {}, {}
    with open(self.scalars.path) as f:
      for line in f:
        entry = parse_log_line(line)
        if entry is not None and entry['step'] == total:
          for k, v in entry.items():
            if k.startswith('eval/'):
              evals[k[len('eval/') :]] = v
            elif k != 'step':
              losses[k] = v
    return losses, evals
