"""What K independent GANs in one compiled program need beyond one GAN: stacked states,
replica configs, the replicated step, and restoring K folders together.

The training loop is the ordinary one (`gan_jax.training.train`): `gan_jax.training.train.train_replicas(configs,
workdirs)` trains K runs whose configs differ only in `seed` and in
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

`gan-jax sweep --replicas` trains the seeds of each ablation cell this way. Across several
processes (`gan_jax.training.distributed`) each process feeds its rows of every replica's
global batch (`stacked_batches`) and process 0 writes the replica folders, so the replicas
equal those of one process with the same devices (to float32 tolerance: the cross-process
all-reduce sums in another order).

The step is built one of two ways (`config.replica_impl`, `make_replicated_train_step`):
`jax.vmap` over the replicas ('vmap'), or the step traced K times into one program
('unroll'). 'auto' picks by backend and model (`resolve_replica_impl`): on a CPU, vmap turns
the K weight sets of a convolution into one grouped convolution, which XLA's CPU backend runs
4-5x slower than K ordinary ones, so convolutional models are unrolled there; the MLP and
every model on GPU or TPU use vmap. `benchmarks/replicas.py` measures both against K runs.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Iterator, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gan_jax import config as config_lib
from gan_jax.core import penalties
from gan_jax.training import run_setup
from gan_jax.training.checkpoint import Checkpointer
from gan_jax.errors import ConfigError
from gan_jax.core.sharding import batch_sharding, replicated
from gan_jax.core.state import GANState
from gan_jax.core.train_step import HPARAM_FIELDS, LazyTrainStep, TrainStep

log = logging.getLogger(__name__)


def stack(trees: Sequence[Any]) -> Any:
  """Stacks K pytrees of the same structure leaf by leaf: every leaf gets a leading axis K."""
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def unstack(tree: Any, index: int) -> Any:
  """Replica `index` of a stacked pytree (the leading axis dropped)."""
  return jax.tree.map(lambda leaf: leaf[index], tree)


def replica_configs(
  config: ml_collections.ConfigDict, fields: Sequence[str] = config_lib.REPLICA_FIELDS
) -> list[ml_collections.ConfigDict]:
  """The K single-run configs of `config.num_replicas = K` (each with num_replicas 1).

  Replica i gets seed `seed + i` (`replica_seeds`, the default; else every replica has
  `seed`) and the i-th value of each field in `replica_values`, which may name `fields` (a
  GAN's `gan_jax.config.REPLICA_FIELDS`, or a translation kind's).

  Raises:
    ConfigError: a malformed `replica_values` (see `gan_jax.config.parse_replica_values`).
  """
  values = config_lib.parse_replica_values(
    config.get('replica_values', ''), config.num_replicas, fields
  )
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


def check_replicable(
  configs: Sequence[ml_collections.ConfigDict], fields: Sequence[str] = config_lib.REPLICA_FIELDS
) -> None:
  """Replicas share one compiled step: their configs may differ only in `seed` and the
  continuous `fields` (for a GAN `gan_jax.config.REPLICA_FIELDS`: learning rates, Adam betas,
  penalty weights), which enter the step as traced values.

  Raises:
    ConfigError: naming the fields that differ from the first config, or if a config asks
      for replicas itself (`num_replicas > 1`).
  """
  free = {'seed', *fields}
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
        f'compiled step, so only seed and {", ".join(fields)} may differ; '
        'train such runs separately.'
      )


def replica_hparams(
  configs: Sequence[ml_collections.ConfigDict], lr_scale: float = 1.0
) -> dict[str, jax.Array] | None:
  """The per-replica hyperparameters of the step, float32 `[K]` each (`HPARAM_FIELDS`), or
  None when all replicas share them (then the step is exactly the ordinary one).

  Args:
    configs: the K replica configs.
    lr_scale: multiplies every replica's `g_lr` and `d_lr` (after rollbacks, <= 1).
  """
  scale = {'g_lr': lr_scale, 'd_lr': lr_scale}
  table = {f: [float(c.train[f]) * scale.get(f, 1.0) for c in configs] for f in HPARAM_FIELDS}
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
    train_step: from `gan_jax.core.train_step.make_train_step` (built with `mesh=None`).
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
  if isinstance(train_step, LazyTrainStep):  # lazy regularization: replicate both programs
    return train_step.map(lambda f: make_replicated_train_step(f, impl))

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
  if isinstance(step, LazyTrainStep):
    return step.map(lambda f: jit_replicated_train_step(f, mesh, donate=donate))
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


def stacked_batches(
  configs: Sequence[ml_collections.ConfigDict], start_step: int, rows: Any = None
) -> Iterator[dict[str, np.ndarray]]:
  """Zips the replicas' host pipelines (each in its own seed's order), stacking each leaf on a
  new leading axis: images float32 `[K, n_critic, B_local, H, W, C]` in [-1, 1].

  Args:
    configs: the K replica configs.
    start_step: the first step to yield.
    rows: this process's rows of every replica's global batch of B, int `[B_local]`
      (`gan_jax.data.pipeline.process_rows(batch_sharding(mesh, batch_axis=2), B, 2)`); None:
      block `jax.process_index()` of `jax.process_count()` (`run_setup.host_batches`). With
      one process every row; with several, each feeds the same rows of every replica, so the
      K global batches do not depend on the number of processes.
  """
  streams = [run_setup.host_batches(c, start_step, rows) for c in configs]
  for batches in zip(*streams):
    yield {k: np.stack([b[k] for b in batches]) for k in batches[0]}


def restore_common(
  ckpts: Sequence[Checkpointer], targets: Sequence[GANState], workdirs: Sequence[str]
) -> tuple[int, list[GANState]]:
  """Restores every replica from the latest step all of them have a readable checkpoint of.

  A crash between the replicas' saves leaves them at different latest steps; all resume from
  the last shared one (the replay is deterministic, so a newer checkpoint is rewritten with
  the same values). A checkpoint that fails to read or to match its digest (damaged files)
  while an older common step reads is named with its replica, moved aside to
  `<step>.unreadable` (as `Checkpointer.restore` does for one run) and the replicas resume
  from that older step.

  Args:
    ckpts: the K replicas' checkpointers.
    targets: K states of the right structure and sharding (only shapes and dtypes are used).
    workdirs: the K run folders (for messages).

  Returns:
    (the step, the K restored states); (0, `targets`) when the replicas share no checkpoint.

  Raises:
    FileNotFoundError: some common step exists but none reads for every replica; nothing is
      moved, and the message names the replica and its error.
  """
  common = set.intersection(*(set(c.all_steps()) for c in ckpts))
  failed: list[tuple[int, int, Exception]] = []  # (replica, step, error)
  for step in sorted(common, reverse=True):
    states = []
    for i, (ckpt, target) in enumerate(zip(ckpts, targets)):
      try:
        states.append(ckpt.restore(target, step=step))
      except Exception as err:  # pylint: disable=broad-except  # TensorStore raises Exception
        failed.append((i, step, err))
        break
    if len(states) < len(ckpts):
      continue
    for i, bad, err in failed:
      moved = ckpts[i].move_aside(bad)
      log.warning(
        'Replica %d: checkpoint %s is unreadable (%s: %s); moved it to %s and resumed every '
        'replica from step %d.',
        i,
        os.path.join(ckpts[i].directory, str(bad)),
        type(err).__name__,
        (str(err).strip().splitlines() or [''])[0][:160],
        moved,
        step,
      )
    return step, states
  if failed:
    i, bad, err = failed[0]
    reason = ' '.join(str(err).split())[:300]
    raise FileNotFoundError(
      f'replica {i} ({workdirs[i]}): none of the checkpoints its replicas share (steps '
      f'{sorted(common)}) can be read into this run\'s state; they were left in place. '
      f'Checkpoint {bad}: {type(err).__name__}: {reason}. Rerun with --overwrite to start '
      'the replicas anew, or use another --workdir.'
    )
  return 0, list(targets)
