"""`train_and_evaluate(config, workdir)`: the training loop.

Config in, a `GANState` threaded through the jitted train step, files out:

    <workdir>/config.json             the resolved config of the run
    <workdir>/checkpoints/<step>/     Orbax checkpoints (every `checkpoint_every` steps, the
                                      last `keep_checkpoints` kept, and one at the end)
    <workdir>/samples/step_<N>.png    sample grids from one fixed latent batch
    <workdir>/events.out.tfevents.*   TensorBoard scalars
    <workdir>/metrics.jsonl           the same scalars, one JSON object per logged step, and
                                      the evaluations (`eval/fid_lenet`, ...) every `eval_every`
    <workdir>/best/<step>/            the checkpoint with the lowest FID so far (eval.keep_best)
    <workdir>/best.json               its step and FID
    <workdir>/summary.json            wall time, images/s, evaluation time and final metrics
                                      (and `schedules_final`: scheduled fields' last values)
    <workdir>/classes.json            for a folder dataset: its class names (label i = classes[i])

One loop serves one GAN and K GANs in one compiled program (`num_replicas = K`,
`train_replicas`): the same periodic actions (scalar logs, sample grids, checkpoints,
evaluation with the best checkpoint, the non-finite guard with rollback, the stop vote, the
progress bar, the summary) run for each of the K run folders; `gan_jax.training.replicas` holds only
what differs (stacking the states, the replica configs, the replicated step, restoring K
folders together).

Running the same command again resumes from the latest checkpoint: the state, the RNG (a
function of the step) and the data order (the stream skips the steps already consumed) all
continue where they stopped, so the final state equals that of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any, Iterator, Sequence

import jax
import ml_collections
import tqdm

from gan_jax.config import ema_batch_stats
from gan_jax.data import pipeline as data_lib
from gan_jax.training import distributed
from gan_jax.training import replicas
from gan_jax.training import rollback_state
from gan_jax.training import run_lock
from gan_jax.training.checkpoint import Checkpointer
from gan_jax.errors import ConfigError, NonFiniteError
from gan_jax.training.run_actions import (
  BestCheckpoint,
  ScalarLog,
  evaluate_and_log,
  fixed_labels,
  fixed_latents,
  write_grid,
)
from gan_jax.training.run_setup import (  # noqa: F401  (all re-exported: gan_jax.training.train's API before)
  RUN_FILES,
  SHAPE_FIELDS,
  check_dataset_labels,
  check_resumable,
  clear_run,
  host_batches,
  preflight,
  resolve_config,
  write_run_config,
)
from gan_jax.training.signals import StopOnSignal
from gan_jax.core import schedules
from gan_jax.core.state import GAN, GANState, create_state, make_optimizers
from gan_jax.core.sharding import batch_sharding, replicate
from gan_jax.core.train_step import jit_train_step, make_train_step_from_config

log = logging.getLogger(__name__)


def _scaled(gan: GAN, config: ml_collections.ConfigDict, lr_scale: float) -> GAN:
  """`gan` with both Adam learning rates multiplied by `lr_scale` (same optimizer state)."""
  if lr_scale == 1.0:
    return gan
  train_config = ml_collections.ConfigDict(config.train.to_dict())
  train_config.g_lr *= lr_scale
  train_config.d_lr *= lr_scale
  g_tx, d_tx = make_optimizers(train_config)
  return dataclasses.replace(gan, g_tx=g_tx, d_tx=d_tx)


@run_lock.holds_workdir('workdir')  # one writer per run folder: a second refuses at once
def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str, *, overwrite: bool = False
) -> GANState:
  """Trains a GAN as `config` says, writing checkpoints, samples and logs to `workdir`.

  Args:
    config: a run config (`gan_jax.config.base_config()` layout, e.g. from
      `experiments/mnist_dcgan.py`).
    workdir: the run folder; created if missing. If it holds checkpoints, training resumes
      from the latest one.
    overwrite: start a new run even if `workdir` holds one: its checkpoints, samples and logs
      (`RUN_FILES` and TensorBoard events, nothing else) are deleted once every check passed.

  Returns:
    The final `GANState` (replicated on all devices), at step `config.train.steps`, or at an
    earlier step if SIGTERM or SIGINT arrived: then the step in flight completes, a
    checkpoint of it is saved, and the function returns (rerun to resume).

  With `config.num_replicas = K > 1` this trains K GANs with seeds `seed, ..., seed + K - 1`
  in one compiled step (`train_replicas`), replica i in the run folder
  `<workdir>/replica_<i>/`, and returns their states stacked on a leading axis of size K.

  With `config.eval_every > 0` the configured metrics (`config.eval.metrics`) are computed on
  `config.eval_num_samples` samples of the EMA generator every `eval_every` steps and at the
  end; the first run computes and caches the real reference features (see
  `gan_jax.metrics.reference`).

  A NaN or Inf in a loss or gradient norm stops the run (`on_nonfinite='stop'`), or with
  `on_nonfinite='rollback'` reloads the last good checkpoint, multiplies both learning rates
  by `rollback_lr_factor` and goes on, at most `max_rollbacks` times. Each rollback is
  recorded in `<workdir>/rollbacks.json`; a run resumed from a checkpoint keeps the lowered
  rates, a new run (no checkpoint restored) starts at the requested ones
  (`gan_jax.training.rollback_state`).

  Raises:
    ValueError: (ConfigError) for an invalid config field, a batch size that does not divide
      over the devices, or a workdir whose checkpoints have another model or image shape.
    gan_jax.data.pipeline.DatasetNotFoundError: if the dataset is not in the data dir.
    PermissionError: if the workdir cannot be created or written.
    gan_jax.metrics.inception.InceptionWeightsNotFoundError: evaluation needs the Inception
      weights and they are not on disk (the message says how to get them).
    NonFiniteError: if a loss or gradient norm becomes NaN or Inf (and no rollback is left);
      the last good checkpoint stays on disk.
    CheckpointWriteError: (an OSError) a checkpoint could not be written, e.g. on a full
      disk; the earlier ones stay readable.
  """
  if config.get('num_replicas', 1) > 1:
    config = resolve_config(config)  # fields that only matter with replicas are checked here
    return train_replicas(
      replicas.replica_configs(config),
      replicas.replica_workdirs(workdir, config.num_replicas),
      overwrite=overwrite,
    )
  return _Training([config], [workdir], overwrite=overwrite).run()


@run_lock.holds_workdir('workdirs')  # each replica folder has one writer, as a run's
def train_replicas(
  configs: Sequence[ml_collections.ConfigDict],
  workdirs: Sequence[str],
  *,
  overwrite: bool = False,
) -> GANState:
  """Trains K GANs in one compiled step, replica i as `configs[i]` says into `workdirs[i]`.

  The loop is `train_and_evaluate`'s: every replica folder gets the same checkpoints, sample
  grids, logs, evaluations, best checkpoint, rollbacks and summary at the same steps as a
  single run. SIGTERM/SIGINT checkpoints every replica and returns; rerunning resumes all
  replicas from their latest common readable checkpoint. A NaN in any replica stops them all
  (naming the replica), or with `on_nonfinite='rollback'` rolls all of them back to their
  last common checkpoint with lower learning rates.

  Args:
    configs: K >= 1 run configs (each with num_replicas 1) that differ only in `seed` and the
      fields of `gan_jax.config.REPLICA_FIELDS`.
    workdirs: K distinct run folders.
    overwrite: start every replica anew (see `train_and_evaluate`).

  Returns:
    The K final states stacked on a leading axis (`replicas.unstack(states, i)` is replica
    i's).

  Raises:
    ConfigError: (a ValueError) configs that differ in other fields, workdirs not one
      per config or repeated, and every error of `gan_jax.training.run_setup.preflight`.
    NonFiniteError: a loss or gradient norm of a replica became NaN or Inf (and no rollback
      is left); every replica's last good checkpoint is kept.
    CheckpointWriteError: a checkpoint could not be written.
  """
  if len(configs) != len(workdirs) or not configs:
    raise ConfigError(f'need one workdir per config, got {len(configs)} and {len(workdirs)}.')
  if len({os.path.abspath(w) for w in workdirs}) != len(workdirs):
    raise ConfigError(f'replica workdirs must be distinct, got {list(workdirs)}.')
  replicas.check_replicable(configs)
  return _Training(list(configs), list(workdirs), overwrite=overwrite, stacked=True).run()


@dataclasses.dataclass
class _Folder:
  """One run folder's config and periodic outputs."""

  config: ml_collections.ConfigDict
  workdir: str
  ckpt: Checkpointer
  z_fixed: jax.Array
  scalars: ScalarLog | None = None
  best: BestCheckpoint | None = None

  def close(self) -> None:
    for closable in (self.scalars, self.ckpt, self.best):
      if closable is not None:
        closable.close()


class _Training:
  """The loop of `train_and_evaluate` over K >= 1 run folders.

  With `stacked=False` (one GAN) the state is an ordinary `GANState` and the step the
  data-parallel one; with `stacked=True` every leaf has a leading axis K and the step is
  `gan_jax.training.replicas`' replicated one. Everything else is the same for both.
  """

  def __init__(self, configs, workdirs, *, overwrite: bool, stacked: bool = False):
    checked = [preflight(c, w, overwrite=overwrite) for c, w in zip(configs, workdirs)]
    self.configs = [c for c, _ in checked]
    self.mesh = checked[0][1]
    self.config = self.configs[0]
    self.stacked = stacked
    self.k = len(self.configs)
    if overwrite:
      if distributed.is_writer():
        for w in workdirs:
          removed = clear_run(w)
          if removed:
            log.warning('overwrite: removed the previous run in %s (%s)', w, ', '.join(removed))
      distributed.barrier('overwrite')  # no process may read the old run's files any more
    self.gan = create_state(self.config)[0]
    self.folders = [
      _Folder(c, w, Checkpointer(w, keep=c.keep_checkpoints), fixed_latents(self.gan, c))
      for c, w in zip(self.configs, workdirs)
    ]
    self.labels_fixed = fixed_labels(self.gan, self.config)

  # -- the state and the step ---------------------------------------------------------------

  def load_state(self) -> GANState:
    """The state of the newest readable checkpoint (all folders: the newest common one), or
    the initial state when there is none."""
    targets = [replicate(create_state(f.config)[1], self.mesh) for f in self.folders]
    if not self.stacked:
      ckpt = self.folders[0].ckpt
      if ckpt.latest_step() is None:
        return targets[0]
      return ckpt.restore(targets[0])
    _, states = replicas.restore_common(
      [f.ckpt for f in self.folders], targets, [f.workdir for f in self.folders]
    )
    return replicate(replicas.stack(states), self.mesh)

  def compile_step(self, lr_scale: float):
    """`step(state, batch) -> (state, metrics)`, jitted, at learning rates x`lr_scale`."""
    config = self.config
    if self.stacked:
      config = replicas.shared_step_config(self.configs)
    unjitted = make_train_step_from_config(
      _scaled(self.gan, config, lr_scale), config, mesh=None if self.stacked else self.mesh
    )
    if not self.stacked:
      return jit_train_step(
        unjitted, self.mesh, cpu_scheduler=config.train.get('cpu_scheduler', 'concurrency')
      )
    impl = replicas.resolve_replica_impl(config)
    log.info('%d replicas in one program, replica_impl=%s', self.k, impl)
    step = replicas.jit_replicated_train_step(
      replicas.make_replicated_train_step(unjitted, impl=impl), self.mesh
    )
    hparams = replicas.replica_hparams(self.configs, lr_scale)
    if hparams is None:
      return step
    hparams = replicate(hparams, self.mesh)
    return lambda state, batch: step(state, batch, hparams)

  def open_batches(self, start: int) -> Iterator[dict[str, jax.Array]]:
    """Device batches from step `start` on (each replica's stream in its own seed's order)."""
    if not self.stacked:
      sharding = batch_sharding(self.mesh)
      rows = data_lib.process_rows(sharding, self.config.train.batch_size)
      return data_lib.device_prefetch(host_batches(self.config, start, rows), sharding)
    sharding = batch_sharding(self.mesh, batch_axis=2)
    rows = data_lib.process_rows(sharding, self.config.train.batch_size, batch_axis=2)
    return data_lib.device_prefetch(replicas.stacked_batches(self.configs, start, rows), sharding)

  def state_of(self, state: GANState, i: int) -> GANState:
    """Folder i's (unstacked) state."""
    return replicas.unstack(state, i) if self.stacked else state

  def metrics_of(self, metrics: dict[str, Any], i: int) -> dict[str, Any]:
    """Folder i's scalars of one step's metrics."""
    return {n: v[i] for n, v in metrics.items()} if self.stacked else metrics

  # -- the loop -----------------------------------------------------------------------------

  def run(self) -> GANState:
    """Trains to `train.steps` (or a stop signal); returns the final (stacked) state."""
    config, folders = self.config, self.folders
    try:
      state = self.load_state()
      self.start_step = int(jax.device_get(self.state_of(state, 0).step))
      if self.start_step:
        log.info(
          'Resuming from the checkpoints at step %d in %s',
          self.start_step,
          ', '.join(f.ckpt.directory for f in folders),
        )
      for f in folders:
        write_run_config(f.config, f.workdir)
      # Rollback state belongs to the restored checkpoint's run: a new run starts clean.
      loaded = [
        rollback_state.load(f.workdir, resumed=self.start_step > 0, writer=distributed.is_writer())
        for f in folders
      ]
      self.rollbacks, self.lr_scale = loaded[0]
      self.evaluator = None
      if config.eval_every:
        from gan_jax.metrics.evaluate import Evaluator  # pylint: disable=g-import-not-at-top

        self.evaluator = Evaluator.from_config(config)  # loads the nets and the reference
        net = self.evaluator.net
        if net is not None and 'fid' in self.evaluator.metrics and config.eval.keep_best:
          for f in folders:
            f.best = BestCheckpoint(f.workdir, f'fid_{net.label.lower()}')
      for f in folders:
        f.scalars = ScalarLog(f.workdir, self.start_step)
      self.bar = tqdm.tqdm(
        total=config.train.steps,
        initial=self.start_step,
        disable=not config.progress_bar or not distributed.is_writer(),
        unit='step',
        dynamic_ncols=True,
      )
      try:
        return self._loop(state)
      finally:
        self.bar.close()
    finally:
      for f in folders:
        f.close()

  def _loop(self, state: GANState) -> GANState:
    config, total = self.config, self.config.train.steps
    self.use_ema = config.train.ema_decay > 0
    self.raw_too = bool(config.eval.get('raw_generator', False))
    self.eval_time = 0.0
    t_run = time.perf_counter()
    self.step = step = self.start_step
    train_step = self.compile_step(self.lr_scale)
    self.batches = self.open_batches(step)
    self._new_window()
    in_flight = metrics = None
    self.pending: list[tuple[int, dict[str, jax.Array]]] = []
    stop_vote, stopping = distributed.StopVote(self.mesh), False
    with StopOnSignal() as stopper:
      try:
        if self.evaluator is not None and step and (step % config.eval_every == 0 or step == total):
          # Killed between a checkpoint and its evaluation: evaluate it now, so each log
          # holds every evaluation once.
          missing = [i for i, f in enumerate(self.folders) if step not in f.scalars.eval_steps]
          self.eval_time += self.evaluate(state, step, missing)
        while step < total:
          t0 = time.perf_counter()
          batch = next(self.batches)
          self.wait_window += time.perf_counter() - t0
          state, metrics = train_step(state, batch)
          # Keep at most one step in flight: the host prepares step k+1 while the devices run
          # step k, but never queues a backlog (which would make the progress bar run ahead
          # of the devices and delay a stop on SIGTERM by up to log_every steps).
          if in_flight is not None:
            jax.block_until_ready(in_flight)
          in_flight = metrics
          step += 1
          self.steps_window += 1
          self.pending.append((step, metrics))
          self.bar.update(1)

          # With several processes, all stop together, one step after any got a signal.
          stopping = stop_vote.update(stopper.received is not None)
          is_last = step == total
          save = step % config.checkpoint_every == 0 or is_last or stopping
          if step % config.log_every == 0 or save:
            try:
              self.log_scalars(step)  # also the NaN guard before any checkpoint is written
            except NonFiniteError as err:
              state = self.roll_back(err)  # or raises
              step, in_flight = int(jax.device_get(self.state_of(state, 0).step)), None
              train_step = self.compile_step(self.lr_scale)
              self.batches = self.open_batches(step)
              continue
          self.periodic_outputs(state, step, save=save, evaluate=not stopping)
          if stopping:
            log.warning(
              'Received %s: stopped after step %d and saved a checkpoint in %s; run the same '
              'command again to resume.',
              stopper.received or 'a stop signal in another process',
              step,
              ', '.join(f.ckpt.directory for f in self.folders),
            )
            break
      finally:
        self.batches.close()
    self.step = step
    self.write_summaries(
      metrics,
      time.perf_counter() - t_run,
      stopper.received or ('in another process' if stopping else None),
      stopping,
    )
    return state

  def _new_window(self) -> None:
    """Starts a new images/s and data-wait measuring window."""
    self.t_window, self.wait_window, self.steps_window = time.perf_counter(), 0.0, 0

  def log_scalars(self, step: int) -> None:
    """Fetches the steps' metrics since the last call, checks them (NaN guard: raises
    NonFiniteError naming the replica), and logs every `log_every`-th step and the last."""
    config = self.config
    fetched = jax.device_get(self.pending)
    self.pending = []
    elapsed = time.perf_counter() - self.t_window
    images = config.train.batch_size * config.train.n_critic * self.steps_window
    perf = {
      'perf/images_per_sec': images / elapsed,
      'perf/data_wait_fraction': self.wait_window / elapsed,
    }
    rows = []
    for i, f in enumerate(self.folders):
      for s, m in fetched:
        f.scalars.add(s, self.metrics_of(m, i))
      try:
        rows.append(f.scalars.check())
      except NonFiniteError as err:
        if not self.stacked:
          raise
        raise NonFiniteError(f'replica {i} ({f.workdir}): {err}') from None
    for f, fetched_i in zip(self.folders, rows):
      for s, m in fetched_i:
        if s % config.log_every == 0 or s == config.train.steps:
          f.scalars.write(s, {**m, **(perf if s == step else {})})
    last = rows[0][-1][1]
    postfix = {'img_s': f"{self.k * perf['perf/images_per_sec']:.0f}"}
    if not self.stacked:
      postfix = {'d_loss': f"{last['d_loss']:.3f}", 'g_loss': f"{last['g_loss']:.3f}", **postfix}
    self.bar.set_postfix(**postfix, refresh=False)
    self._new_window()

  def roll_back(self, err: NonFiniteError) -> GANState:
    """The last good checkpoint's state (or the initial one) after a NaN, with the learning
    rates lowered; raises `err` when rollbacks are off or spent."""
    config = self.config
    if config.on_nonfinite != 'rollback' or len(self.rollbacks) >= config.max_rollbacks:
      if config.on_nonfinite == 'rollback':
        raise NonFiniteError(
          f'{err} ({len(self.rollbacks)} rollbacks with learning rates x'
          f'{config.rollback_lr_factor} each did not help; max_rollbacks='
          f'{config.max_rollbacks}.)'
        ) from None
      raise err
    self.batches.close()
    state = self.load_state()
    restored = int(jax.device_get(self.state_of(state, 0).step))
    self.lr_scale *= config.rollback_lr_factor
    first = str(err).split(';')[0]
    self.rollbacks.append({'error': first, 'restored_step': restored, 'lr_scale': self.lr_scale})
    if jax.process_index() == 0:
      for f in self.folders:
        with open(os.path.join(f.workdir, rollback_state.FILE), 'w') as out:
          json.dump(self.rollbacks, out, indent=2)
    log.warning(
      '%s; rollback %d of %d: resuming from step %d with learning rates x%g (g_lr=%g, d_lr=%g).',
      first,
      len(self.rollbacks),
      config.max_rollbacks,
      restored,
      self.lr_scale,
      config.train.g_lr * self.lr_scale,
      config.train.d_lr * self.lr_scale,
    )
    for f in self.folders:
      f.scalars.rewind(restored)
    self.pending = []
    self.bar.reset(config.train.steps)
    self.bar.update(restored)
    self._new_window()
    return state

  def periodic_outputs(self, state: GANState, step: int, *, save: bool, evaluate: bool) -> None:
    """The sample grids, checkpoints and evaluations due at `step`, for every folder."""
    config, total = self.config, self.config.train.steps
    if step % config.sample_every == 0 or step == total:
      for i, f in enumerate(self.folders):
        path = os.path.join(f.workdir, 'samples', f'step_{step:07d}.png')
        write_grid(
          self.gan,
          self.state_of(state, i),
          f.z_fixed,
          path,
          self.use_ema,
          self.labels_fixed,
          ema_stats=ema_batch_stats(f.config),
          seed=f.config.seed,
        )
    if save:
      for i, f in enumerate(self.folders):
        f.ckpt.save(self.state_of(state, i))  # before evaluating: a failed eval never costs a step
    if self.evaluator is not None and evaluate and (step % config.eval_every == 0 or step == total):
      seconds = self.evaluate(state, step, range(self.k))
      self.eval_time += seconds
      self.t_window += seconds  # images/s counts training time only

  def evaluate(self, state: GANState, step: int, which: Sequence[int]) -> float:
    """Evaluates the folders `which` at `step`; returns the seconds it took."""
    seconds = 0.0
    for i in which:
      f = self.folders[i]
      seconds += evaluate_and_log(
        self.evaluator,
        self.gan,
        self.state_of(state, i),
        step,
        self.use_ema,
        f.scalars,
        f.best,
        self.bar,
        self.raw_too,
      )
    return seconds

  def write_summaries(self, metrics, wall: float, stopped_by: str | None, stopping: bool) -> None:
    """summary.json of every folder (process 0)."""
    config, start, step = self.config, self.start_step, self.step
    if not distributed.is_writer():
      return
    if step == start:
      if start == config.train.steps and not stopping:
        # Killed after its last checkpoint but before its summary (the final evaluation, if
        # it was missing, ran above): finish the run's records now, so every rerun does not
        # find it unfinished again.
        for f in self.folders:
          _finish_summary(
            f.workdir, start, wall, self.eval_time, self.rollbacks, self.lr_scale, f.config
          )
      return
    final = jax.device_get(metrics)
    images_per_step = config.train.batch_size * config.train.n_critic
    for i, f in enumerate(self.folders):
      summary = {
        'start_step': start,
        'end_step': step,
        'wall_time_s': wall,
        'images_per_sec': images_per_step * (step - start) / (wall - self.eval_time),
        'eval_time_s': self.eval_time,
        'eval_time_fraction': self.eval_time / wall,
        'devices': len(jax.devices()),
        'platform': jax.devices()[0].platform,
        'final_metrics': {k: float(v) for k, v in self.metrics_of(final, i).items()},
        'stopped_by_signal': stopped_by,
        'rollbacks': len(self.rollbacks),
        'lr_scale': self.lr_scale,
        'g_lr': f.config.train.g_lr * self.lr_scale,  # effective rates (config.json: requested)
        'd_lr': f.config.train.d_lr * self.lr_scale,
        'schedules_final': schedules_final(f.config.train, step, self.lr_scale),
      }
      if self.stacked:
        summary.update(
          replica=i, num_replicas=self.k, replica_workdirs=[g.workdir for g in self.folders]
        )
      with open(os.path.join(f.workdir, 'summary.json'), 'w') as out:
        json.dump(summary, out, indent=2)


def schedules_final(train_config: Any, end_step: int, lr_scale: float = 1.0) -> dict[str, float]:
  """The value each field of `train.schedules` had in a run's last train step.

  That step is `end_step - 1` (the state's step while it ran; `end_step` is the step count
  after it): each field is its base value times `factor(end_step - 1)`
  (`gan_jax.core.schedules`), the learning rates also times the rollbacks' `lr_scale`, and
  `ema_half_life_images` is `Schedules.ema_half_life` (with the ramp-up); `ada_p`'s base is
  `train.ada_p_init`. Computed in float32,
  as the step computes it. summary.json's `g_lr` and `d_lr` stay unscheduled (base x lr_scale).

  Args:
    train_config: the run folder's `train` block (a replica's own values for a replica).
    end_step: the run's step count at its end, >= 1.
    lr_scale: the product of the rollbacks' learning-rate factors (1.0 without rollbacks).

  Returns:
    {field: float value} for each scheduled field, in `train.schedules` order; {} if none.
  """
  sched = schedules.Schedules.from_config(train_config)
  last = max(int(end_step) - 1, 0)
  values = {}
  for field, _ in sched.segments:
    if field == 'ema_half_life_images':
      value = sched.ema_half_life(last)
    else:
      value = train_config[schedules.base_field(field)] * sched.factor(field)(last)
      if field in ('g_lr', 'd_lr'):
        value = value * lr_scale
    values[field] = float(value)
  return values


def _finish_summary(
  workdir: str,
  total: int,
  wall: float,
  eval_time: float,
  rollbacks: list[Any],
  lr_scale: float,
  config: ml_collections.ConfigDict,
) -> None:
  """Writes summary.json for a run that reached `total` steps in an earlier invocation but
  has no summary of that end (none, or one of an earlier stop). Its final metrics are the
  last train scalars logged at step `total` in metrics.jsonl."""
  path = os.path.join(workdir, 'summary.json')
  try:
    with open(path) as f:
      old = json.load(f)
  except (OSError, ValueError):
    old = None
  if isinstance(old, dict) and old.get('end_step') == total and not old.get('stopped_by_signal'):
    return  # already finished and recorded
  final = {}
  try:
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      for line in f:
        try:
          entry = json.loads(line)
        except ValueError:
          continue
        if isinstance(entry, dict) and entry.get('step') == total:
          final.update({k: v for k, v in entry.items() if '/' not in k and k != 'step'})
  except OSError:
    pass
  summary = {
    'start_step': total,
    'end_step': total,
    'wall_time_s': wall,
    'eval_time_s': eval_time,
    'devices': len(jax.devices()),
    'platform': jax.devices()[0].platform,
    'final_metrics': final,
    'stopped_by_signal': None,
    'rollbacks': len(rollbacks),
    'lr_scale': lr_scale,
    'g_lr': config.train.g_lr * lr_scale,
    'd_lr': config.train.d_lr * lr_scale,
    'schedules_final': schedules_final(config.train, total, lr_scale),
    'finished_on_rerun': True,  # the steps ran in an earlier invocation
  }
  with open(path + '.tmp', 'w') as f:
    json.dump(summary, f, indent=2)
  os.replace(path + '.tmp', path)
