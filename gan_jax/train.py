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
    <workdir>/classes.json            for a folder dataset: its class names (label i = classes[i])

Running the same command again resumes from the latest checkpoint: the state, the RNG (a
function of the step) and the data order (the stream skips the steps already consumed) all
continue where they stopped, so the final state equals that of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any
import logging
import os
import time

import jax
import ml_collections
import tqdm

from gan_jax import data as data_lib
from gan_jax import distributed
from gan_jax import replicas
from gan_jax import rollback_state
from gan_jax import run_lock
from gan_jax.checkpoint import Checkpointer
from gan_jax.errors import ConfigError, NonFiniteError  # noqa: F401  (ConfigError re-exported)
from gan_jax.run_actions import (
  BestCheckpoint,
  ScalarLog,
  evaluate_and_log,
  fixed_labels,
  fixed_latents,
  write_grid,
)
from gan_jax.run_setup import (  # noqa: F401  (all re-exported: gan_jax.train's API before)
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
from gan_jax.signals import StopOnSignal
from gan_jax.losses import get_loss
from gan_jax.state import GAN, GANState, create_state, make_optimizers
from gan_jax.sharding import replicate
from gan_jax.train_step import Stabilizers, jit_train_step, make_train_step

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
  in one compiled step (`gan_jax.replicas.train_replicas`), replica i in the run folder
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
  (`gan_jax.rollback_state`).

  Raises:
    ValueError: (ConfigError) for an invalid config field, a batch size that does not divide
      over the devices, or a workdir whose checkpoints have another model or image shape.
    gan_jax.data.DatasetNotFoundError: if the dataset is not in the data dir.
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
    return replicas.train_replicas(
      replicas.replica_configs(config),
      replicas.replica_workdirs(workdir, config.num_replicas),
      overwrite=overwrite,
    )
  config, mesh = preflight(config, workdir, overwrite=overwrite)
  if overwrite and distributed.is_writer():
    removed = clear_run(workdir)
    if removed:
      log.warning('overwrite: removed the previous run in %s (%s)', workdir, ', '.join(removed))
  if overwrite:
    distributed.barrier('overwrite')  # no process may read the old run's files any more

  gan, state = create_state(config)
  state = replicate(state, mesh)
  ckpt = Checkpointer(workdir, keep=config.keep_checkpoints)
  start_step = 0
  if ckpt.latest_step() is not None:
    state = ckpt.restore(state)
    start_step = int(state.step)
    log.info('Resuming from checkpoint at step %d in %s', start_step, ckpt.directory)
  write_run_config(config, workdir)

  # Rollback state belongs to the restored checkpoint's run: a new run starts clean.
  rollbacks, lr_scale = rollback_state.load(
    workdir, resumed=start_step > 0, writer=distributed.is_writer()
  )

  def compile_step(lr_scale: float):
    return jit_train_step(
      make_train_step(
        _scaled(gan, config, lr_scale),
        get_loss(config.train.loss),
        n_critic=config.train.n_critic,
        ema_decay=config.train.ema_decay,
        mesh=mesh,
        stabilizers=Stabilizers.from_config(config.train),
        aux_weight=config.train.get('aux_weight', 1.0),
        reuse_fakes=config.train.get('reuse_fakes', False),
      ),
      mesh,
    )

  sharding = data_lib.batch_sharding(mesh)
  rows = data_lib.process_rows(sharding, config.train.batch_size)

  def open_batches(start: int):
    return data_lib.device_prefetch(host_batches(config, start, rows), sharding)

  train_step = compile_step(lr_scale)
  total = config.train.steps
  batches = open_batches(start_step)
  z_fixed = fixed_latents(gan, config)
  labels_fixed = fixed_labels(gan, config)
  use_ema = config.train.ema_decay > 0
  raw_too = bool(config.eval.get('raw_generator', False))
  evaluator = best = None
  eval_time = 0.0
  if config.eval_every:
    from gan_jax.metrics.evaluate import Evaluator  # pylint: disable=g-import-not-at-top

    evaluator = Evaluator.from_config(config)  # loads the nets and the cached reference
    if evaluator.net is not None and 'fid' in evaluator.metrics and config.eval.keep_best:
      best = BestCheckpoint(workdir, f'fid_{evaluator.net.label.lower()}')
  scalars = ScalarLog(workdir, start_step)
  sample_dir = os.path.join(workdir, 'samples')

  bar = tqdm.tqdm(
    total=total,
    initial=start_step,
    disable=not config.progress_bar or not distributed.is_writer(),
    unit='step',
    dynamic_ncols=True,
  )
  t_run = time.perf_counter()
  t_window, wait_window, steps_window = time.perf_counter(), 0.0, 0
  images_per_step = config.train.batch_size * config.train.n_critic
  step = start_step
  in_flight = None
  metrics = None
  stop_vote, stopping = distributed.StopVote(mesh), False
  with StopOnSignal() as stopper:
    try:
      if (
        evaluator is not None
        and start_step
        and (start_step % config.eval_every == 0 or start_step == total)
        and start_step not in scalars.eval_steps
      ):
        # Killed between the checkpoint and its evaluation: evaluate it now, so the log
        # holds every evaluation once.
        eval_time += evaluate_and_log(
          evaluator, gan, state, start_step, use_ema, scalars, best, bar, raw_too
        )
      while step < total:
        t0 = time.perf_counter()
        batch = next(batches)
        wait_window += time.perf_counter() - t0
        state, metrics = train_step(state, batch)
        # Keep at most one step in flight: the host prepares step k+1 while the devices run
        # step k, but never queues a backlog (which would make the progress bar run ahead of
        # the devices and delay a stop on SIGTERM by up to log_every steps).
        if in_flight is not None:
          jax.block_until_ready(in_flight)
        in_flight = metrics
        step += 1
        steps_window += 1
        scalars.add(step, metrics)
        bar.update(1)

        # With several processes, all stop together, one step after any got a signal.
        stopping = stop_vote.update(stopper.received is not None)
        is_last = step == total
        save = step % config.checkpoint_every == 0 or is_last or stopping
        if step % config.log_every == 0 or save:
          try:
            fetched = scalars.check()  # also the NaN guard before any checkpoint is written
          except NonFiniteError as err:
            if config.on_nonfinite != 'rollback' or len(rollbacks) >= config.max_rollbacks:
              if config.on_nonfinite == 'rollback':
                raise NonFiniteError(
                  f'{err} ({len(rollbacks)} rollbacks with learning rates x'
                  f'{config.rollback_lr_factor} each did not help; max_rollbacks='
                  f'{config.max_rollbacks}.)'
                ) from None
              raise
            # Roll back: the last good checkpoint (or the initial state), lower rates.
            batches.close()
            if ckpt.latest_step() is not None:
              state = ckpt.restore(state)
            else:
              state = replicate(create_state(config)[1], mesh)
            restored = int(state.step)
            lr_scale *= config.rollback_lr_factor
            rollbacks.append(
              {'error': str(err).split(';')[0], 'restored_step': restored, 'lr_scale': lr_scale}
            )
            if jax.process_index() == 0:
              with open(os.path.join(workdir, 'rollbacks.json'), 'w') as f:
                json.dump(rollbacks, f, indent=2)
            log.warning(
              '%s; rollback %d of %d: resuming from step %d with learning rates x%g '
              '(g_lr=%g, d_lr=%g).',
              str(err).split(';')[0],
              len(rollbacks),
              config.max_rollbacks,
              restored,
              lr_scale,
              config.train.g_lr * lr_scale,
              config.train.d_lr * lr_scale,
            )
            scalars.rewind(restored)
            train_step = compile_step(lr_scale)
            batches = open_batches(restored)
            step, in_flight = restored, None
            bar.reset(total)
            bar.update(restored)
            t_window, wait_window, steps_window = time.perf_counter(), 0.0, 0
            continue
          elapsed = time.perf_counter() - t_window
          perf = {
            'perf/images_per_sec': images_per_step * steps_window / elapsed,
            'perf/data_wait_fraction': wait_window / elapsed,
          }
          for s, m in fetched:
            if s % config.log_every == 0 or s == total:
              scalars.write(s, {**m, **(perf if s == step else {})})
          last = fetched[-1][1]
          bar.set_postfix(
            d_loss=f"{last['d_loss']:.3f}",
            g_loss=f"{last['g_loss']:.3f}",
            img_s=f"{perf['perf/images_per_sec']:.0f}",
            refresh=False,
          )
          t_window, wait_window, steps_window = time.perf_counter(), 0.0, 0
        if step % config.sample_every == 0 or is_last:
          write_grid(
            gan,
            state,
            z_fixed,
            os.path.join(sample_dir, f'step_{step:07d}.png'),
            use_ema,
            labels_fixed,
          )
        if save:
          ckpt.save(state)  # before evaluating: a failing evaluation never costs a step
        if evaluator is not None and not stopping and (step % config.eval_every == 0 or is_last):
          seconds = evaluate_and_log(
            evaluator, gan, state, step, use_ema, scalars, best, bar, raw_too
          )
          eval_time += seconds
          t_window += seconds  # images/s counts training time only
        if stopping:
          log.warning(
            'Received %s: stopped after step %d and saved a checkpoint in %s; run the same '
            'command again to resume.',
            stopper.received or 'a stop signal in another process',
            step,
            ckpt.directory,
          )
          break
    finally:
      batches.close()
      bar.close()
      scalars.close()
      ckpt.close()
      if best is not None:
        best.close()

  wall = time.perf_counter() - t_run
  if distributed.is_writer() and step > start_step and metrics is not None:
    final = {k: float(v) for k, v in jax.device_get(metrics).items()}
    summary = {
      'start_step': start_step,
      'end_step': step,
      'wall_time_s': wall,
      'images_per_sec': images_per_step * (step - start_step) / (wall - eval_time),
      'eval_time_s': eval_time,
      'eval_time_fraction': eval_time / wall,
      'devices': len(jax.devices()),
      'platform': jax.devices()[0].platform,
      'final_metrics': final,
      'stopped_by_signal': stopper.received or ('in another process' if stopping else None),
      'rollbacks': len(rollbacks),
      'lr_scale': lr_scale,
      'g_lr': config.train.g_lr * lr_scale,  # the effective rates (config.json: requested)
      'd_lr': config.train.d_lr * lr_scale,
    }
    with open(os.path.join(workdir, 'summary.json'), 'w') as f:
      json.dump(summary, f, indent=2)
  elif distributed.is_writer() and start_step == total and not stopping:
    # Killed after its last checkpoint but before its summary (the final evaluation, if it
    # was missing, ran above): finish the run's records now, so every rerun does not find it
    # unfinished again.
    _finish_summary(workdir, total, wall, eval_time, rollbacks, lr_scale, config)
  return state


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
    'finished_on_rerun': True,  # the steps ran in an earlier invocation
  }
  with open(path + '.tmp', 'w') as f:
    json.dump(summary, f, indent=2)
  os.replace(path + '.tmp', path)
