"""Orbax checkpointing of the `GANState`.

A thin layer over `orbax.checkpoint.CheckpointManager`: checkpoints live in
`<workdir>/checkpoints/<step>/`, are written atomically (Orbax writes to a temporary folder
and renames it on success, so a crash mid-save never leaves a half checkpoint that looks
complete), the last `keep` are kept, and restoring places every array with the shardings of
a target state (replicated on the current mesh), so a run can resume on another device count.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from gan_jax.errors import CheckpointWriteError, UnreadableCheckpointError
from gan_jax.sharding import make_mesh, replicate
from gan_jax.state import GAN, GANState, create_state

log = logging.getLogger(__name__)


def state_digest(state: GANState) -> str:
  """SHA-256 over every leaf of `state` (key path, dtype, shape and bytes), as hex.

  The state is replicated, so each process hashes its first local copy of every array.
  """
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
    x = np.asarray(leaf.addressable_data(0) if isinstance(leaf, jax.Array) else leaf)
    h.update(f'{jax.tree_util.keystr(path)}|{x.dtype}|{x.shape}|'.encode())
    h.update(np.ascontiguousarray(x).tobytes())
  return h.hexdigest()


class Checkpointer:
  """Saves and restores `GANState`s under `<workdir>/checkpoints`.

  Args:
    workdir: the run folder.
    keep: number of most recent checkpoints kept (older ones are deleted after a
      successful save), >= 1.
    subdir: the folder under workdir: 'checkpoints' (the latest ones) or 'best' (the
      best-FID one, kept by the training loop with keep=1).
  """

  def __init__(self, workdir: str, keep: int = 3, subdir: str = 'checkpoints'):
    self.directory = os.path.join(os.path.abspath(workdir), subdir)
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
    """Writes `state` as the checkpoint of step `int(state.step)`; returns that step.

    Raises:
      CheckpointWriteError: (an OSError) the write failed, e.g. on a full disk; the earlier
        checkpoints stay complete and readable.
    """
    step = int(jax.device_get(state.step))
    if step not in self._manager.all_steps():
      meta = {'step': step, 'sha256': state_digest(state)}
      failure = None
      try:
        self._manager.save(
          step,
          args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
          force=force,
        )
        self._manager.wait_until_finished()
      except Exception as err:  # noqa: BLE001 - OSError, or tensorstore's own error types
        log.debug('checkpoint %d failed', step, exc_info=True)
        reason = ' '.join(str(err).split())[:300] or type(err).__name__
        failure = f'{type(err).__name__}: {reason}'
      if failure is not None:
        kept = [s for s in self._manager.all_steps() if s != step]
        raise CheckpointWriteError(
          f'could not write checkpoint {step} in {self.directory} ({failure}). The earlier '
          f'checkpoints {sorted(kept)} are untouched (Orbax writes to a temporary folder and '
          'renames it only when complete): free disk space or fix the folder, then rerun the '
          'same command to resume from the latest one.'
        )
    return step

  def _read(self, step: int, abstract: Any) -> GANState:
    restored = self._manager.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
      ),
    )
    state, meta = restored['state'], restored['meta']
    if state_digest(state) != meta['sha256']:
      raise UnreadableCheckpointError(
        f'checkpoint {step} does not match the SHA-256 digest written with it (garbled files)'
      )
    return state

  def restore(self, target: GANState, step: int | None = None) -> GANState:
    """Reads a checkpoint into arrays shaped, typed and sharded like `target`.

    Every checkpoint carries the SHA-256 digest of its state, checked on reading. With
    `step=None` this is the newest *readable* checkpoint: one that fails to read or to match
    its digest (truncated or garbled files) is named in a warning, moved aside to
    `<step>.unreadable` (never deleted, so it can be inspected) and the previous one is
    tried. Orbax's atomic saves mean an interrupted save never looks complete; this covers
    damage after the fact (disk errors, partial copies).

    Args:
      target: a state of the same structure (e.g. freshly created and replicated); only
        its shapes, dtypes and shardings are used.
      step: which checkpoint (default: the latest readable one).

    Returns:
      the restored `GANState`.

    Raises:
      FileNotFoundError: if there is no checkpoint (at that step), or none is readable.
      UnreadableCheckpointError: if the checkpoint of an explicit `step` fails its digest.
    """
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    if step is not None:
      if step not in self._manager.all_steps():
        raise FileNotFoundError(
          f'no checkpoint at step {step} in {self.directory} (there are: {self.all_steps()}).'
        )
      return self._read(step, abstract)
    steps = sorted(self._manager.all_steps(), reverse=True)
    if not steps:
      raise FileNotFoundError(f'no checkpoint in {self.directory}.')
    for candidate in steps:
      try:
        return self._read(candidate, abstract)
      except Exception as err:  # pylint: disable=broad-except  # TensorStore raises plain Exception
        first_line = (str(err).strip().splitlines() or [''])[0][:160]
        moved = self._move_aside(candidate)
        log.warning(
          'Checkpoint %s is unreadable (%s: %s); moved it to %s and trying the previous one.',
          os.path.join(self.directory, str(candidate)),
          type(err).__name__,
          first_line,
          moved,
        )
    raise FileNotFoundError(
      f'none of the checkpoints in {self.directory} is readable (steps {steps}, now moved to '
      '<step>.unreadable); start a new run with another --workdir.'
    )

  def _move_aside(self, step: int) -> str:
    """Renames checkpoint `step` to `<step>.unreadable[.N]` so Orbax no longer lists it."""
    src = os.path.join(self.directory, str(step))
    dst, n = f'{src}.unreadable', 0
    while os.path.exists(dst):
      n += 1
      dst = f'{src}.unreadable.{n}'
    if jax.process_index() == 0:
      os.rename(src, dst)
    self._manager.reload()
    return dst

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc: Any) -> None:
    self.close()


def load_run(
  workdir: str, step: int | None = None, *, best: bool = False
) -> tuple[ml_collections.ConfigDict, GAN, GANState]:
  """Loads a finished or running run folder written by `train_and_evaluate`.

  Args:
    workdir: the run folder (holds config.json and checkpoints/).
    step: checkpoint step to load (default: the latest).
    best: load the best-FID checkpoint from `<workdir>/best/` instead.

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
  subdir = 'best' if best else 'checkpoints'
  with Checkpointer(workdir, keep=1 if best else config.keep_checkpoints, subdir=subdir) as ckpt:
    if ckpt.latest_step() is None:
      raise FileNotFoundError(
        f'{workdir!r} has no {"best-FID " if best else ""}checkpoint yet; '
        + (
          'train with evaluation on (eval_every > 0, metrics with fid).' if best else 'train first.'
        )
      )
    state = ckpt.restore(state, step)
  return config, gan, state
