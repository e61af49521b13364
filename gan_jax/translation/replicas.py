"""K translation runs (pix2pix or CycleGAN) in one compiled program: `config.num_replicas = K`
of a translation config, and `gan-jax sweep --replicas` of a translation ablation.

What a GAN's replicas do (`gan_jax.training.replicas`, whose replica configs, stacking,
vmap-or-unroll step and common restore this reuses), for the translation kinds
(`gan_jax.translation.kinds`):

* every leaf of the state (`Pix2PixState`, `CycleGANState` with its image histories and their
  fill counts) gets a leading axis K, and one jitted step updates all K;
* the replicas' configs differ only in `seed` (replica i: `seed + i`, or all `seed` with
  `replica_seeds=False`) and in the fields of `run_config.REPLICA_FIELDS[kind]` (the learning
  rate; pix2pix's L1 weight lambda, CycleGAN's cycle weight lambda), which enter the step as
  traced float32 `[K]` inputs (`Pix2Pix.with_hparams`, `CycleGAN.with_hparams`); any other
  difference shapes the program and is refused in one line;
* replica i trains on its own task (built from its own config: inpainting's squares depend on
  the seed) with its own seed's batches (`kinds.batch_indices`), stacked to `[K, B, ...]`.

`gan_jax.translation.train` runs the loop: replica i writes the ordinary translation run
folder `<workdir>/replica_<i>/` that the separate run with seed_i would write (equal to
float32 tolerance: one program over K replicas may order sums differently), which
`gan-jax translate` reads and `gan-jax train` resumes on its own.

The step is `jax.vmap` over the replicas or the step traced K times into one program
(`config.replica_impl`; 'auto' is 'unroll' on a CPU, where XLA runs the grouped
convolutions of a vmapped convolution slowly, and 'vmap' on a GPU or TPU).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gan_jax.training import replicas as training_replicas
from gan_jax.translation import kinds as kinds_lib
from gan_jax.translation import run_config

Step = Callable[[Any, tuple[jax.Array, ...]], tuple[Any, dict[str, jax.Array]]]


def _fields(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  return run_config.REPLICA_FIELDS[config.translation.kind]


def replica_configs(config: ml_collections.ConfigDict) -> list[ml_collections.ConfigDict]:
  """The K single-run translation configs of `config.num_replicas = K` (num_replicas 1 each,
  seeds `seed + i` and the i-th of each `replica_values`).

  Raises:
    ConfigError: a `replica_values` field outside `run_config.REPLICA_FIELDS[kind]`, or not
      K numbers (one line, `gan_jax.config.parse_replica_values`).
  """
  return training_replicas.replica_configs(config, _fields(config))


def check_replicable(configs: Sequence[ml_collections.ConfigDict]) -> None:
  """Refuses replicas whose configs differ in more than `seed` and the kind's
  `run_config.REPLICA_FIELDS`.

  Raises:
    ConfigError: naming the differing fields (`gan_jax.training.replicas.check_replicable`).
  """
  training_replicas.check_replicable(configs, _fields(configs[0]))


def step_hparams(configs: Sequence[ml_collections.ConfigDict]) -> dict[str, jax.Array] | None:
  """The replicas' values of the kind's `REPLICA_FIELDS`, keyed by the `with_hparams`
  argument ('lr', 'l1_weight', 'cycle_weight'): float32 `[K]` each; None when every replica
  has the same values (the step is then exactly the separate runs' step)."""
  names = [field.split('.')[1] for field in _fields(configs[0])]
  table = {n: [float(c.translation[n]) for c in configs] for n in names}
  if all(len(set(values)) == 1 for values in table.values()):
    return None
  return {n: jnp.asarray(values, jnp.float32) for n, values in table.items()}


def resolve_impl(config: ml_collections.ConfigDict) -> str:
  """`config.replica_impl`, with 'auto' as 'unroll' on the CPU backend (every translation
  model is convolutional: `gan_jax.training.replicas.resolve_replica_impl`) and 'vmap'
  elsewhere."""
  impl = config.get('replica_impl', 'auto')
  if impl != 'auto':
    return impl
  return 'unroll' if jax.default_backend() == 'cpu' else 'vmap'


def make_replicated_step(
  kind: kinds_lib.Kind, model: Any, configs: Sequence[ml_collections.ConfigDict]
) -> Step:
  """The jitted step of K replicas (states donated), on the default device.

  Args:
    kind: the `kinds.Kind` of the replicas.
    model: the static half (`Pix2Pix`, `CycleGAN`) of replica 0; each replica's learning
      rate and loss weight replace its own (`step_hparams`).
    configs: the K replica configs (`check_replicable`).

  Returns:
    `step(states, batch) -> (states, metrics)`: every state leaf `[K, ...]`, the batch a
    tuple of float32 `[K, B, S, S, C]` in [-1, 1] (`stacked_batch`), the metrics float32
    `[K]` each.
  """
  hparams = step_hparams(configs)

  def one(state, batch, hp=None):
    m = model if hp is None else model.with_hparams(**hp)
    return kind.train_step(m, state, *batch)

  replicated = training_replicas.make_replicated_train_step(one, impl=resolve_impl(configs[0]))
  jitted = jax.jit(replicated, donate_argnums=(0,))
  if hparams is None:
    return lambda states, batch: jitted(states, batch)
  return lambda states, batch: jitted(states, batch, hparams)


def stacked_batch(
  kind: kinds_lib.Kind,
  tasks: Sequence[Any],
  configs: Sequence[ml_collections.ConfigDict],
  step: int,
) -> tuple[np.ndarray, ...]:
  """Step `step`'s batches of the K replicas (replica i: `kind.batch` of its task and seed),
  stacked: a tuple of float32 `[K, B, S, S, C]`."""
  batches = [kind.batch(task, c.seed, step, c.train.batch_size) for task, c in zip(tasks, configs)]
  return tuple(np.stack(parts) for parts in zip(*batches))
