"""Orbax checkpointing of the `GANState`.

A thin layer over `orbax.checkpoint.CheckpointManager`: checkpoints live in
`<workdir>/checkpoints/<step>/`, are written atomically (Orbax writes to a temporary folder
and renames it on success, so a crash mid-save never leaves a half checkpoint that looks
complete), the last `keep` are kept, and restoring places every array with the shardings of
a target state (replicated on the current mesh), so a run can resume on another device count.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from gan_jax.sharding import make_mesh, replicate
from gan_jax.state import GAN, GANState, create_state


class Checkpointer:
  """Saves and restores `GANState`s under `<workdir>/checkpoints`.

  Args:
    workdir: the run folder.
    keep: number of most recent checkpoints kept (older ones are deleted after a
      successful save), >= 1.
  """

  def __init__(self, workdir: str, keep: int = 3):
    self.directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
    self._manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        create=True,
        # Synchronous saves: the train step donates the state's buffers, so nothing may
        # still be reading them once `save` returns.
        enable_async_checkpointing=False,
      ),
    )

  def latest_step(self) -> int | None:
    """The step of the newest complete checkpoint, or None when there is none."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """Steps of all complete checkpoints, ascending."""
    return sorted(self._manager.all_steps())

  def save(self, state: GANState, *, force: bool = True) -> int:
    """Writes `state` as the checkpoint of step `int(state.step)`; returns that step."""
    step = int(jax.device_get(state.step))
    if step not in self._manager.all_steps():
      self._manager.save(step, args=ocp.args.StandardSave(state), force=force)
      self._manager.wait_until_finished()
    return step

  def restore(self, target: GANState, step: int | None = None) -> GANState:
    """Reads a checkpoint into arrays shaped, typed and sharded like `target`.

    Args:
      target: a state of the same structure (e.g. freshly created and replicated); only
        its shapes, dtypes and shardings are used.
      step: which checkpoint (default: the latest).

    Returns:
      the restored `GANState`.

    Raises:
      FileNotFoundError: if there is no checkpoint (at that step).
    """
    step = self.latest_step() if step is None else step
    if step is None or step not in self._manager.all_steps():
      raise FileNotFoundError(
        f'no checkpoint{"" if step is None else f" at step {step}"} in {self.directory}.'
      )
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc: Any) -> None:
    self.close()


def load_run(
  workdir: str, step: int | None = None
) -> tuple[ml_collections.ConfigDict, GAN, GANState]:
  """Loads a finished or running run folder written by `train_and_evaluate`.

  Args:
    workdir: the run folder (holds config.json and checkpoints/).
    step: checkpoint step to load (default: the latest).

  Returns:
    (config, gan, state): the run's config, its G/D definitions, and the checkpointed state
    replicated on the current devices, ready for `gan_jax.sampling.sample(gan, state, z)`.

  Raises:
    FileNotFoundError: if workdir, its config.json or the checkpoint is missing.
  """
  config_path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(config_path):
    raise FileNotFoundError(
      f'{workdir!r} holds no config.json: not a gan-jax run folder (train first with '
      '`gan-jax train --config ... --workdir ...`).'
    )
  with open(config_path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  gan, state = create_state(config)
  state = replicate(state, make_mesh())
  with Checkpointer(workdir, keep=config.keep_checkpoints) as ckpt:
    if ckpt.latest_step() is None:
      raise FileNotFoundError(f'{workdir!r} has no checkpoint yet; train first.')
    state = ckpt.restore(state, step)
  return config, gan, state
