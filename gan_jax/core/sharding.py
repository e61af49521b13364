"""Device mesh and shardings for data parallelism with `jax.jit` (no `pmap`).

One mesh axis, 'data', over every device JAX sees (all processes' devices in a multi-host
run). Batches are split along their batch dimension; the training state is replicated.
"""

from __future__ import annotations

from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from gan_jax.errors import ConfigError


def make_mesh(devices: list[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh with axis 'data' over `devices` (default: all of `jax.devices()`).

  The axis is `AxisType.Auto` (XLA's sharding propagation, constrained where we say so with
  `with_sharding_constraint`), not the `Explicit` default of `jax.make_mesh` in JAX 0.10.
  """
  devices = list(devices) if devices is not None else jax.devices()
  return jax.make_mesh(
    (len(devices),), ('data',), axis_types=(jax.sharding.AxisType.Auto,), devices=devices
  )


def batch_sharding(mesh: Mesh, batch_axis: int = 1, axis_name: str = 'data') -> NamedSharding:
  """Sharding of a batch: dimension `batch_axis` split over the mesh axis `axis_name`.

  `NamedSharding(mesh, P(None, ..., None, axis_name))` with `batch_axis` leading Nones; the
  trailing dimensions are replicated, so one object fits every leaf of rank > batch_axis:
  train images `[n_critic, B, H, W, C]` and labels `[n_critic, B]` alike (batch_axis=1), or
  eval batches `[B, ...]` (batch_axis=0).
  """
  return NamedSharding(mesh, P(*([None] * batch_axis), axis_name))


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding that keeps a full copy of an array on every device of `mesh`."""
  return NamedSharding(mesh, P())


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  """Raises ConfigError (a ValueError) unless the global batch splits evenly over devices."""
  n = mesh.devices.size
  if batch_size <= 0 or batch_size % n:
    raise ConfigError(
      f'train.batch_size={batch_size} must be a positive multiple of the number of devices '
      f'({n}, from jax.devices()); use e.g. train.batch_size={max(n, (batch_size // n) * n or n)}.'
    )


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places every array of `tree` on all devices of `mesh` (a full copy on each)."""
  return jax.device_put(tree, replicated(mesh))
