"""K independent GANs trained inside one compiled program: one step over a stacked state.

`train_replicas(configs, workdirs)` trains K runs whose configs differ only in `seed` and in
continuous hyperparameters (`gan_jax.config.REPLICA_FIELDS`: learning rates, Adam betas,
penalty weights, which enter the step as traced `[K]` inputs) with one jitted step over a
`GANState` whose every leaf has a leading axis of size K, and a batch
`[K, n_critic, B, H, W, C]` stacked from K input pipelines (each in its own seed's order).
Every replica writes an ordinary run folder: its own checkpoints, samples, metrics.jsonl,
evaluations, best-FID checkpoint, config.json (with its seed and `num_replicas = 1`) and
summary.json. So replica i's folder is the folder the separate run
`gan-jax train --config.seed=<seed_i>` would write (equal to float32 tolerance: the compiled
program may reorder sums, e.g. batching a convolution over K weight sets into one grouped
convolution), and it can be evaluated, sampled, or resumed on its own with `gan-jax train`.

`config.num_replicas = K` in a run config does this for seeds `seed, ..., seed + K - 1`
(`replica_seeds=False`: all `seed`) and the per-replica values of `config.replica_values`, in
`<workdir>/replica_<i>/`:

    gan-jax train --config experiments/mnist_dcgan.py --workdir runs/lr4 \
        --config.num_replicas=4 --config.replica_values='train.d_lr=1e-4,2e-4,4e-4,8e-4'

`gan-jax sweep --replicas` trains the seeds of each ablation cell this way.

The step is built one of two ways (`config.replica_impl`, `make_replicated_train_step`):
`jax.vmap` over the replicas ('vmap'), or the step traced K times into one program
('unroll'). 'auto' picks by backend and model (`resolve_replica_impl`): on a CPU, vmap turns
the K weight sets of a convolution into one grouped convolution, which XLA's CPU backend runs
4-5x slower than K ordinary ones, so convolutional models are unrolled there; the MLP and
every model on GPU or TPU use vmap. `benchmarks/replicas.py` measures both against K runs.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Iterator, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from gan_jax import config as config_lib
from gan_jax import penalties
from gan_jax import data as data_lib
from gan_jax import run_lock
from gan_jax import run_setup
from gan_jax.checkpoint import Checkpointer
from gan_jax.errors import ConfigError, NonFiniteError
from gan_jax.losses import get_loss
from gan_jax.run_actions import (
  BestCheckpoint,
  ScalarLog,
  evaluate_and_log,
  fixed_labels,
  fixed_latents,
  write_grid,
)
from gan_jax.signals import StopOnSignal
from gan_jax.sharding import batch_sharding, replicate, replicated
from gan_jax.state import GAN, GANState, create_state
from gan_jax.train_step import HPARAM_FIELDS, Stabilizers, TrainStep, make_train_step

log = logging.getLogger(__name__)


def stack(trees: Sequence[Any]) -> Any:
  """Stacks K pytrees of the same structure leaf by leaf: every leaf gets a leading axis K."""
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def unstack(tree: Any, index: int) -> Any:
  """Replica `index` of a stacked pytree (the leading axis dropped)."""
  return jax.tree.map(lambda leaf: leaf[index], tree)


def replica_configs(config: ml_collections.ConfigDict) -> list[ml_collections.ConfigDict]:
  """The K single-GAN configs of `config.num_replicas = K` (each with num_replicas 1).

  Replica i gets seed `seed + i` (`replica_seeds`, the default; else every replica has
  `seed`) and the i-th value of each field in `replica_values`.

  Raises:
    ConfigError: a malformed `replica_values` (see `gan_jax.config.parse_replica_values`).
  """
  values = config_lib.parse_replica_values(config.get('replica_values', ''), config.num_replicas)
  out = []
  for i in range(config.num_replicas):
    c = ml_collections.ConfigDict(config.to_dict())
    if config.get('replica_seeds', True):
      c.seed = config.seed + i
    for field, vs in values.items():
      section, name = field.split('.')
      c[section][name] = vs[i]
    c.num_replicas = 1
    c.replica_values = ''
    out.append(c)
  return out


def replica_workdirs(workdir: str, num_replicas: int) -> list[str]:
  """`<workdir>/replica_<i>` for i < num_replicas."""
  return [os.path.join(workdir, f'replica_{i}') for i in range(num_replicas)]


def check_replicable(configs: Sequence[ml_collections.ConfigDict]) -> None:
  """Replicas share one compiled step: their configs may differ only in `seed` and the
  continuous fields of `gan_jax.config.REPLICA_FIELDS` (learning rates, Adam betas, penalty
  weights), which enter the step as traced values.

  Raises:
    ConfigError: naming the fields that differ from the first config, or if a config asks
      for replicas itself (`num_replicas > 1`).
  """
  free = {'seed', *config_lib.REPLICA_FIELDS}
  base = run_setup.flatten_config(configs[0].to_dict())
  for i, config in enumerate(configs):
    if config.get('num_replicas', 1) != 1:
      raise ConfigError(f'replica {i} has num_replicas={config.num_replicas}; each must be 1.')
    flat = run_setup.flatten_config(config.to_dict())
    differ = sorted(
      k for k in set(base) | set(flat) if k not in free and base.get(k) != flat.get(k)
    )
    if differ:
      raise ConfigError(
        f'replica {i} differs from replica 0 in {", ".join(differ)}: replicas share one '
        f'compiled step, so only seed and {", ".join(config_lib.REPLICA_FIELDS)} may differ; '
        'train such runs separately.'
      )


def replica_hparams(configs: Sequence[ml_collections.ConfigDict]) -> dict[str, jax.Array] | None:
  """The per-replica hyperparameters of the step, float32 `[K]` each (`HPARAM_FIELDS`), or
  None when all replicas share them (then the step is exactly the ordinary one)."""
  table = {f: [float(c.train[f]) for c in configs] for f in HPARAM_FIELDS}
  if all(len(set(v)) == 1 for v in table.values()):
    return None
  return {f: jnp.asarray(v, jnp.float32) for f, v in table.items()}


def shared_step_config(configs: Sequence[ml_collections.ConfigDict]) -> ml_collections.ConfigDict:
  """Replica 0's config with each penalty weight the largest of any replica's, so that the
  one compiled step computes every penalty some replica uses (weighted per replica)."""
  config = ml_collections.ConfigDict(configs[0].to_dict())
  for f in penalties.REPLICA_WEIGHT_FIELDS:
    config.train[f] = max(float(c.train[f]) for c in configs)
  return config


def resolve_replica_impl(config: ml_collections.ConfigDict) -> str:
  """The `make_replicated_train_step` impl for `config.replica_impl` on this backend.

  'auto' is 'unroll' on the CPU backend for every model with convolutions and 'vmap'
  otherwise: XLA's CPU backend runs the grouped convolutions that `jax.vmap` makes of K
  weight sets 4-5x slower than K ordinary convolutions (`benchmarks/replicas.py`, DCGAN-28
  at K = 4 and 8: 0.23x and 0.19x the speed of K runs with vmap, 1.05x and 1.09x unrolled),
  while the MLP's dense layers gain nothing either way (0.92-1.06x). GPUs and TPUs get vmap,
  which fills them. `config` is a validated config (`gan_jax.config.validate` checks the
  field); 'vmap' and 'unroll' are returned as they are.

  Returns:
    'vmap' or 'unroll' (or an invalid value unchanged, which `make_replicated_train_step`
    refuses).
  """
  impl = config.get('replica_impl', 'auto')
  if impl != 'auto':
    return impl
  if jax.default_backend() == 'cpu' and config.model.name != 'mlp':
    return 'unroll'
  return 'vmap'


def make_replicated_train_step(train_step: TrainStep, impl: str = 'vmap') -> TrainStep:
  """One step of K replicas: `jax.vmap` of a train step, or K copies of it in one program.

  Args:
    train_step: from `gan_jax.train_step.make_train_step` (built with `mesh=None`).
    impl: 'vmap' (batch the K replicas into one computation: one set of kernels, each K
      times wider; convolutions become grouped convolutions) or 'unroll' (trace the step K
      times on replica i's slices and stack the results: K ordinary computations that XLA
      schedules in one program; compile time grows with K). Both compute the same thing, to
      float32 rounding (`resolve_replica_impl` picks one for a config).

  Returns:
    `step(states, batches, hparams=None) -> (states, metrics)`: every state leaf `[K, ...]`,
    images float32 `[K, n_critic, B, H, W, C]` in [-1, 1], hparams None or float32 `[K]`
    each (`replica_hparams`), metrics float32 `[K]` each.

  Raises:
    ValueError: an impl other than 'vmap' or 'unroll'.
  """
  if impl not in ('vmap', 'unroll'):
    raise ValueError(f"impl={impl!r} is invalid; use 'vmap' or 'unroll'.")

  def vmapped(states, batches, hparams=None):
    if hparams is None:
      return jax.vmap(train_step)(states, batches)
    return jax.vmap(train_step)(states, batches, hparams)

  def unrolled(states, batches, hparams=None):
    k = jax.tree.leaves(states)[0].shape[0]
    outs = []
    for i in range(k):
      args = (unstack(states, i), unstack(batches, i))
      if hparams is not None:
        args += (unstack(hparams, i),)
      outs.append(train_step(*args))
    return stack([o[0] for o in outs]), stack([o[1] for o in outs])

  return vmapped if impl == 'vmap' else unrolled


def jit_replicated_train_step(step: TrainStep, mesh: Any, *, donate: bool = True) -> TrainStep:
  """Compiles a replicated step over `mesh`: states and hyperparameters replicated, batches
  split along B (axis 2). Returns `step(states, batches, hparams=None)`."""
  rep, data = replicated(mesh), batch_sharding(mesh, batch_axis=2)
  donate_argnums = (0,) if donate else ()
  shared = jax.jit(
    lambda states, batches: step(states, batches),
    in_shardings=(rep, data),
    out_shardings=(rep, rep),
    donate_argnums=donate_argnums,
  )
  per_replica = jax.jit(
    step, in_shardings=(rep, data, rep), out_shardings=(rep, rep), donate_argnums=donate_argnums
  )

  def call(states, batches, hparams=None):
    if hparams is None:
      return shared(states, batches)
    return per_replica(states, batches, hparams)

  return call


def _stacked_batches(configs, start_step: int) -> Iterator[dict[str, np.ndarray]]:
  """Zips the replicas' host pipelines, stacking each leaf on a new leading axis."""
  streams = [run_setup.host_batches(c, start_step) for c in configs]
  for batches in zip(*streams):
    yield {k: np.stack([b[k] for b in batches]) for k in batches[0]}


def _common_start(ckpts: list[Checkpointer]) -> int:
  """The latest step every replica has a checkpoint of (0: start over). A crash between the
  replicas' saves leaves them at different latest steps; all resume from the last shared one
  (the replay is deterministic, so a newer checkpoint is rewritten with the same values)."""
  steps = [set(c.all_steps()) for c in ckpts]
  common = set.intersection(*steps)
  return max(common) if common else 0


@run_lock.holds_workdir('workdirs')  # each replica folder has one writer, as a run's
def train_replicas(
  configs: Sequence[ml_collections.ConfigDict],
  workdirs: Sequence[str],
  *,
  overwrite: bool = False,
) -> GANState:
  """Trains K GANs in one vmapped step, replica i as `configs[i]` says into `workdirs[i]`.

  Checkpoints, sample grids, logs and evaluations happen for every replica at the same
  steps, as in `gan_jax.train.train_and_evaluate`; SIGTERM/SIGINT checkpoints every replica
  and returns. Rerunning resumes all replicas from their latest common checkpoint.

  Args:
    configs: K >= 1 run configs (each with num_replicas 1) that differ only in `seed` and the
      fields of `gan_jax.config.REPLICA_FIELDS`.
    workdirs: K distinct run folders.
    overwrite: start every replica anew (see `train_and_evaluate`).

  Returns:
    The K final states stacked on a leading axis (`unstack(states, i)` is replica i's).

  Raises:
    ConfigError: (a ValueError) configs that differ in other fields, workdirs not one
      per config or repeated, and every error of `gan_jax.run_setup.preflight`.
    NonFiniteError: a loss or gradient norm of a replica became NaN or Inf (replicas stop
      together; every replica's last good checkpoint is kept); `on_nonfinite='rollback'` is
      refused for replicas by the config check.
    CheckpointWriteError: a checkpoint could not be written.
  """
  if len(configs) != len(workdirs) or not configs:
    raise ConfigError(f'need one workdir per config, got {len(configs)} and {len(workdirs)}.')
  if len({os.path.abspath(w) for w in workdirs}) != len(workdirs):
    raise ConfigError(f'replica workdirs must be distinct, got {list(workdirs)}.')
  check_replicable(configs)
  checked = [run_setup.preflight(c, w, overwrite=overwrite) for c, w in zip(configs, workdirs)]
  configs = [c for c, _ in checked]
  mesh = checked[0][1]
  config = configs[0]
  k = len(configs)
  if overwrite and jax.process_index() == 0:
    for w in workdirs:
      removed = run_setup.clear_run(w)
      if removed:
        log.warning('overwrite: removed the previous run in %s (%s)', w, ', '.join(removed))

  gan: GAN = create_state(config)[0]
  states = [replicate(create_state(c)[1], mesh) for c in configs]
  ckpts = [Checkpointer(w, keep=config.keep_checkpoints) for w in workdirs]
  start_step = _common_start(ckpts)
  if start_step:
    states = [c.restore(s, step=start_step) for c, s in zip(ckpts, states)]
    log.info('Resuming %d replicas from their checkpoints at step %d', k, start_step)
  state = replicate(stack(states), mesh)
  del states
  for c, w in zip(configs, workdirs):
    run_setup.write_run_config(c, w)  # atomic, as for one run

  impl = resolve_replica_impl(config)
  log.info('%d replicas in one program, replica_impl=%s', k, impl)
  hparams = replica_hparams(configs)
  if hparams is not None:
    hparams = replicate(hparams, mesh)
  train_step = jit_replicated_train_step(
    make_replicated_train_step(
      make_train_step(
        gan,
        get_loss(config.train.loss),
        n_critic=config.train.n_critic,
        ema_decay=config.train.ema_decay,
        stabilizers=Stabilizers.from_config(shared_step_config(configs).train),
        aux_weight=config.train.get('aux_weight', 1.0),
        reuse_fakes=config.train.get('reuse_fakes', False),
      ),
      impl=impl,
    ),
    mesh,
  )
  batches = data_lib.device_prefetch(
    _stacked_batches(configs, start_step), batch_sharding(mesh, batch_axis=2)
  )
  z_fixed = [fixed_latents(gan, c) for c in configs]
  labels_fixed = fixed_labels(gan, config)
  use_ema = config.train.ema_decay > 0
  raw_too = bool(config.eval.get('raw_generator', False))
  evaluator, bests = None, [None] * k
  eval_time = 0.0
  if config.eval_every:
    from gan_jax.metrics.evaluate import Evaluator  # pylint: disable=g-import-not-at-top

    evaluator = Evaluator.from_config(config)
    if evaluator.net is not None and 'fid' in evaluator.metrics and config.eval.keep_best:
      key = f'fid_{evaluator.net.label.lower()}'
      bests = [BestCheckpoint(w, key) for w in workdirs]
  scalars = [ScalarLog(w, start_step) for w in workdirs]
  total = config.train.steps
  bar = tqdm.tqdm(
    total=total,
    initial=start_step,
    disable=not config.progress_bar,
    unit='step',
    dynamic_ncols=True,
  )
  images_per_step = config.train.batch_size * config.train.n_critic
  t_run = t_window = time.perf_counter()
  steps_window, step, in_flight, metrics = 0, start_step, None, None
  pending: list[tuple[int, dict[str, jax.Array]]] = []

  def evaluate_all(step: int) -> float:
    seconds = 0.0
    for i in range(k):
      seconds += evaluate_and_log(
        evaluator, gan, unstack(state, i), step, use_ema, scalars[i], bests[i], bar, raw_too
      )
    return seconds

  with StopOnSignal() as stopper:
    try:
      if (
        evaluator is not None
        and start_step
        and (start_step % config.eval_every == 0 or start_step == total)
        and any(start_step not in s.eval_steps for s in scalars)
      ):
        eval_time += evaluate_all(start_step)
      while step < total:
        state, metrics = train_step(state, next(batches), hparams)
        if in_flight is not None:  # at most one step in flight, as in train_and_evaluate
          jax.block_until_ready(in_flight)
        in_flight = metrics
        step += 1
        steps_window += 1
        pending.append((step, metrics))
        bar.update(1)

        stopping = stopper.received is not None
        is_last = step == total
        save = step % config.checkpoint_every == 0 or is_last or stopping
        if step % config.log_every == 0 or save:
          fetched = jax.device_get(pending)
          pending = []
          elapsed = time.perf_counter() - t_window
          perf = {'perf/images_per_sec': images_per_step * steps_window / elapsed}
          for i, log_i in enumerate(scalars):
            for s, m in fetched:
              log_i.add(s, {name: v[i] for name, v in m.items()})
            try:
              rows = log_i.check()
            except NonFiniteError as err:
              raise NonFiniteError(f'replica {i} ({workdirs[i]}): {err}') from None
            for s, m in rows:
              if s % config.log_every == 0 or s == total:
                log_i.write(s, {**m, **(perf if s == step else {})})
          bar.set_postfix(img_s=f'{k * perf["perf/images_per_sec"]:.0f}', refresh=False)
          t_window, steps_window = time.perf_counter(), 0
        if step % config.sample_every == 0 or is_last:
          for i, w in enumerate(workdirs):
            path = os.path.join(w, 'samples', f'step_{step:07d}.png')
            write_grid(
              gan, unstack(state, i), z_fixed[i], path, use_ema, labels_fixed
            )
        if save:
          for i, c in enumerate(ckpts):
            c.save(unstack(state, i))
        if evaluator is not None and not stopping and (step % config.eval_every == 0 or is_last):
          seconds = evaluate_all(step)
          eval_time += seconds
          t_window += seconds
        if stopping:
          log.warning(
            'Received %s: stopped after step %d and saved a checkpoint of each replica; run the '
            'same command again to resume.',
            stopper.received,
            step,
          )
          break
    finally:
      batches.close()
      bar.close()
      for closable in [*scalars, *ckpts, *(b for b in bests if b is not None)]:
        closable.close()

  wall = time.perf_counter() - t_run
  if jax.process_index() == 0 and step > start_step and metrics is not None:
    final = jax.device_get(metrics)
    for i, w in enumerate(workdirs):
      summary = {
        'start_step': start_step,
        'end_step': step,
        'wall_time_s': wall,
        'images_per_sec': images_per_step * (step - start_step) / (wall - eval_time),
        'eval_time_s': eval_time,
        'eval_time_fraction': eval_time / wall,
        'devices': len(jax.devices()),
        'platform': jax.devices()[0].platform,
        'final_metrics': {name: float(v[i]) for name, v in final.items()},
        'stopped_by_signal': stopper.received,
        'rollbacks': 0,
        'lr_scale': 1.0,
        'g_lr': configs[i].train.g_lr,  # the effective rates, as in a single run's summary
        'd_lr': configs[i].train.d_lr,
        'replica': i,
        'num_replicas': k,
        'replica_workdirs': list(workdirs),
      }
      with open(os.path.join(w, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
  return state
