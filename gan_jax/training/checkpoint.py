"""Orbax checkpointing of the `GANState`.

A thin layer over `orbax.checkpoint.CheckpointManager`: checkpoints live in
`<workdir>/checkpoints/<step>/`, are written atomically (Orbax writes to a temporary folder
and renames it on success, so a crash mid-save never leaves a half checkpoint that looks
complete), the last `keep` are kept, and restoring places every array with the shardings of
a target state (replicated on the current mesh), so a run can resume on another device count
or number of processes. With several processes every one of them calls `save` and `restore`
on a folder they all see (a shared file system such as NFS, or a bucket mounted with
gcsfuse); Orbax coordinates them, each writing its share of every replicated array once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import sys
import threading
import time
import traceback
from typing import Any, Iterator

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from gan_jax.training import distributed
from gan_jax.errors import CheckpointWriteError, UnreadableCheckpointError
from gan_jax.core.sharding import make_mesh, replicate
from gan_jax.core.state import GAN, GANState, create_state

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


# Loggers through which Orbax's write threads (via absl) and asyncio report a failed write.
_WRITE_LOGGERS = ('absl', 'asyncio')


@contextlib.contextmanager
def _held_write_reports() -> Iterator[None]:
  """Holds what Orbax's write threads report while a save runs; replays it if it succeeds.

  When one file of a checkpoint cannot be written (a full disk), every one of Orbax's write
  threads and TensorStore's callbacks reports the same error with its own traceback: about
  150 lines (Orbax's threads log through absl; TensorStore's callbacks, finding Orbax's
  event loop closed, print through `sys.excepthook`). The save then raises one error,
  which `Checkpointer.save` turns into one line. So while the save runs (and, when it
  fails, until Orbax's other write threads have ended), records of the
  `absl` and `asyncio` loggers and calls of `sys.excepthook`, `threading.excepthook` and
  `sys.unraisablehook` are held: replayed unchanged, in order, when the save succeeds
  (nothing is hidden then), and logged at DEBUG level (`log`) when it fails.
  """
  held: list[tuple[str, Any]] = []
  lock = threading.Lock()

  def hold(kind: str) -> Any:
    def keep(*args: Any) -> bool:
      with lock:
        held.append((kind, args[0] if kind == 'log' else args))
      return False  # as a logging filter: not emitted now

    return keep

  loggers = [logging.getLogger(name) for name in _WRITE_LOGGERS]
  keep_log = hold('log')
  hooks = {
    'excepthook': sys.excepthook,
    'unraisablehook': sys.unraisablehook,
    'threading': threading.excepthook,
  }
  for logger in loggers:
    logger.addFilter(keep_log)
  sys.excepthook, sys.unraisablehook = hold('excepthook'), hold('unraisablehook')
  threading.excepthook = hold('threading')
  succeeded = False
  try:
    yield
    succeeded = True
  finally:
    if not succeeded:  # Orbax raised on the first failed write: let its other threads end
      _join_write_threads(timeout=_WRITE_THREADS_TIMEOUT_S)
    for logger in loggers:
      logger.removeFilter(keep_log)
    sys.excepthook, sys.unraisablehook = hooks['excepthook'], hooks['unraisablehook']
    threading.excepthook = hooks['threading']
    with lock:
      reports, held[:] = list(held), []
    if not succeeded:
      _drop_late_closed_loop_reports()
    for kind, report in reports:
      if succeeded and kind == 'log':
        logging.getLogger(report.name).handle(report)
      elif succeeded:
        hooks[kind](*report)
      elif kind == 'log':
        log.debug('held during the failed save: %s', report.getMessage(), exc_info=report.exc_info)
      else:
        log.debug('held during the failed save (%s): %r', kind, report)


# How long a failed save waits for Orbax's other write threads to end, in seconds.
_WRITE_THREADS_TIMEOUT_S = 30.0


def _join_write_threads(timeout: float) -> None:
  """Waits, at most `timeout` seconds in all, for Orbax's write threads to end.

  Orbax writes a checkpoint from threads of its own (`_SignalingThread`s) and raises as soon
  as one fails; the others end later, each logging its error through absl.
  """
  deadline = time.monotonic() + timeout
  for thread in threading.enumerate():
    if type(thread).__name__ == '_SignalingThread' and thread is not threading.current_thread():
      thread.join(max(0.0, deadline - time.monotonic()))


def _is_late_closed_loop_report(exc_type: type, exc: BaseException, tb: Any) -> bool:
  """Whether an excepthook report is a TensorStore callback finding Orbax's loop closed."""
  if threading.current_thread() is threading.main_thread():
    return False  # an uncaught error of the program itself: always shown
  if not (issubclass(exc_type, RuntimeError) and str(exc) == 'Event loop is closed'):
    return False
  frames = [frame.f_code.co_name for frame, _ in traceback.walk_tb(tb)]
  return 'call_soon_threadsafe' in frames


def _drop_late_closed_loop_reports() -> None:
  """After a failed save, drops the reports of its abandoned writes that finish later.

  TensorStore goes on with the writes Orbax abandoned; as each ends, its callback calls
  `call_soon_threadsafe` on Orbax's event loop, long closed, and TensorStore reports that
  RuntimeError from its own thread through `sys.unraisablehook` (or `sys.excepthook`),
  after the one-line error. From the first failed save on (the run is stopping with that
  error), exactly those reports, from threads other than the main one, go to the DEBUG log
  instead; every other call of the hooks is passed on unchanged.
  """
  if not getattr(sys.unraisablehook, 'drops_late_closed_loop_reports', False):
    unraisablehook = sys.unraisablehook

    def quiet_unraisablehook(unraisable: Any) -> None:
      if _is_late_closed_loop_report(
        unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback
      ):
        log.debug('an abandoned checkpoint write ended after its save failed')
      else:
        unraisablehook(unraisable)

    quiet_unraisablehook.drops_late_closed_loop_reports = True
    sys.unraisablehook = quiet_unraisablehook
  if not getattr(sys.excepthook, 'drops_late_closed_loop_reports', False):
    excepthook = sys.excepthook

    def quiet_excepthook(exc_type: type, exc: BaseException, tb: Any) -> None:
      if _is_late_closed_loop_report(exc_type, exc, tb):
        log.debug('an abandoned checkpoint write ended after its save failed')
      else:
        excepthook(exc_type, exc, tb)

    quiet_excepthook.drops_late_closed_loop_reports = True
    sys.excepthook = quiet_excepthook


@contextlib.contextmanager
def _absl_records_to_debug() -> Iterator[None]:
  """Sends the `absl` logger's records to the DEBUG log (`log`) while the block runs: Orbax
  warns through absl, twice, that item 'state' "could not be restored" when the metadata of a
  checkpoint that failed to read is looked up; the failure itself is reported in one line."""

  def to_debug(record: logging.LogRecord) -> bool:
    log.debug('absl: %s', record.getMessage())
    return False

  absl = logging.getLogger('absl')
  absl.addFilter(to_debug)
  try:
    yield
  finally:
    absl.removeFilter(to_debug)


# The items of every checkpoint, each a folder in `<step>/`: the state and its digest.
ITEMS = ('state', 'meta')


class MissingCheckpointItemError(UnreadableCheckpointError):
  """A checkpoint folder lacks one of its `ITEMS` (deleted, or copied in part)."""


class Checkpointer:
  """Saves and restores `GANState`s under `<workdir>/checkpoints`.

  Args:
    workdir: the run folder.
    keep: number of most recent checkpoints kept (older ones are deleted after a
      successful save), >= 1.
    subdir: the folder under workdir: 'checkpoints' (the latest ones) or 'best' (the
      best-FID one, kept by the training loop with keep=1).
    read_only: for commands that only read a run (sample, eval, edit, export): the folder
      is not created, and an unreadable newest checkpoint is skipped but left where it is
      (training moves it aside).
  """

  def __init__(
    self, workdir: str, keep: int = 3, subdir: str = 'checkpoints', *, read_only: bool = False
  ):
    self.directory = os.path.join(os.path.abspath(workdir), subdir)
    self.read_only = read_only
    self._manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        create=not read_only,
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
      args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
      try:
        with _held_write_reports():  # ~150 lines of tracebacks when it fails: one line instead
          self._manager.save(step, args=args, force=force)
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

  def _restore(self, step: int, target: Any) -> tuple[Any, dict[str, Any]]:
    restored = self._manager.restore(
      step,
      args=ocp.args.Composite(state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()),
    )
    return restored['state'], restored['meta']

  def _check_items(self, step: int) -> None:
    """Raises MissingCheckpointItemError, naming the folder, if an item of `step` is gone."""
    path = os.path.join(self.directory, str(step))
    missing = [item for item in ITEMS if not os.path.isdir(os.path.join(path, item))]
    if missing:
      names = ' and '.join(repr(item) for item in missing)
      raise MissingCheckpointItemError(
        f'Checkpoint {path} lacks its {names} item{"s" if len(missing) > 1 else ""} (no '
        f'folder {names} in it: deleted, or copied in part)'
      )

  def _read(self, step: int, abstract: Any) -> GANState:
    self._check_items(step)  # before Orbax, which logs its own warnings on a missing item
    try:
      state, meta = self._restore(step, abstract)
    except Exception as err:  # pylint: disable=broad-except  # TensorStore raises plain Exception
      # A run written before a field was added to GANState (e.g. `extras`) lacks it on disk:
      # when the target's value of such fields is empty, restore the others and keep it.
      try:  # the on-disk tree's metadata (known to the manager once a restore was tried)
        with _absl_records_to_debug():
          on_disk = set(self._manager.item_metadata(step)['state'].keys())
      except Exception:  # pylint: disable=broad-except
        raise err from None
      absent = [
        f.name
        for f in dataclasses.fields(GANState)
        if f.name not in on_disk and not jax.tree.leaves(getattr(abstract, f.name))
      ]
      if not absent:
        raise
      reduced = {
        f.name: getattr(abstract, f.name)
        for f in dataclasses.fields(GANState)
        if f.name not in absent
      }
      try:
        state, meta = self._restore(step, reduced)
      except Exception:  # pylint: disable=broad-except
        raise err from None
      state = GANState(**state, **{name: getattr(abstract, name) for name in absent})
    if state_digest(state) != meta['sha256']:
      raise UnreadableCheckpointError(
        f'checkpoint {step} does not match the SHA-256 digest written with it (garbled files)'
      )
    return state

  def restore(self, target: GANState, step: int | None = None) -> GANState:
    """Reads a checkpoint into arrays shaped, typed and sharded like `target`.

    Every checkpoint carries the SHA-256 digest of its state, checked on reading. With
    `step=None` this is the newest *readable* checkpoint: one that fails to read or to match
    its digest (truncated or garbled files) while an older one reads is named in a warning
    and moved aside to `<step>.unreadable` (never deleted, so it can be inspected). If none
    reads, nothing is moved (the cause is then more likely a different state structure than
    damage). A checkpoint that lacks one of its `ITEMS` folders counts as unreadable, named
    with what it lacks. Orbax's atomic saves mean an interrupted save never looks complete;
    this covers damage after the fact (disk errors, partial copies). Checkpoints written
    before a field was added to `GANState` restore with that field's (empty) value from
    `target`.

    Args:
      target: a state of the same structure (e.g. freshly created and replicated); only
        its shapes, dtypes and shardings are used.
      step: which checkpoint (default: the latest readable one).

    Returns:
      the restored `GANState`.

    Raises:
      FileNotFoundError: if there is no checkpoint (at that step), or none is readable.
      UnreadableCheckpointError: if the checkpoint of an explicit `step` fails its digest;
        MissingCheckpointItemError (a subclass) if it lacks one of its `ITEMS` folders.
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
    failed: list[tuple[int, Exception]] = []
    for candidate in steps:
      try:
        state = self._read(candidate, abstract)
      except Exception as err:  # pylint: disable=broad-except  # TensorStore raises plain Exception
        failed.append((candidate, err))
        continue
      # A newer checkpoint failed where an older one of the same run reads: it is damaged.
      for bad, err in failed:
        if self.read_only:  # a reader never changes the run folder
          log.warning(
            '%s; read step %d instead and left it in place.', self._why(bad, err), candidate
          )
          continue
        moved = self.move_aside(bad)
        log.warning(
          '%s; moved it to %s and resumed from step %d.', self._why(bad, err), moved, candidate
        )
      return state
    # None reads: more likely a state of another structure (another model, config or gan_jax
    # version) than every checkpoint damaged, so nothing is moved.
    if all(isinstance(err, MissingCheckpointItemError) for _, err in failed):
      raise FileNotFoundError(
        f'no checkpoint in {self.directory} is whole; they were left in place. '
        + '. '.join(str(err) for _, err in failed)
        + '. Put the missing folders back, or start a new run with another --workdir.'
      )
    bad, err = failed[0]
    reason = ' '.join(str(err).split())[:300]
    raise FileNotFoundError(
      f'none of the checkpoints in {self.directory} (steps {steps}) can be read into this '
      f'run\'s state; they were left in place. Checkpoint {bad}: {type(err).__name__}: '
      f'{reason}. If they were written with another config or gan_jax version, use those, '
      'or start a new run with another --workdir.'
    )

  def _why(self, step: int, err: Exception) -> str:
    """One line saying why checkpoint `step` could not be read."""
    if isinstance(err, MissingCheckpointItemError):
      return str(err)
    first_line = (str(err).strip().splitlines() or [''])[0][:160]
    path = os.path.join(self.directory, str(step))
    return f'Checkpoint {path} is unreadable ({type(err).__name__}: {first_line})'

  def move_aside(self, step: int) -> str:
    """Renames checkpoint `step` to `<step>.unreadable[.N]` so Orbax no longer lists it.

    Process 0 renames; with several processes all of them wait for each other before (so
    all name the same new folder) and after it (so none lists the old one again).
    """
    distributed.barrier(f'unreadable_{step}_before')
    src = os.path.join(self.directory, str(step))
    dst, n = f'{src}.unreadable', 0
    while os.path.exists(dst):
      n += 1
      dst = f'{src}.unreadable.{n}'
    if distributed.is_writer():
      os.rename(src, dst)
    distributed.barrier(f'unreadable_{step}_after')
    self._manager.reload()
    return dst

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc: Any) -> None:
    self.close()


def read_run_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run folder was trained with, from its `config.json`.

  Raises:
    FileNotFoundError: the folder has no config.json (not a gan-jax run folder).
    UnreadableCheckpointError: config.json is not a JSON object (garbled, cut short, or
      replaced by another tool's file); one line naming the file and the parse error.
  """
  config_path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(config_path):
    raise FileNotFoundError(
      f'{workdir!r} holds no config.json: not a gan-jax run folder (train first with '
      '`gan-jax train --config ... --workdir ...`).'
    )
  try:
    with open(config_path, encoding='utf-8') as f:
      raw = json.load(f)
  except (ValueError, UnicodeDecodeError) as e:
    raise UnreadableCheckpointError(
      f'{config_path!r} is not valid JSON ({e}); it is written by gan-jax train: restore it, '
      'or train again in a new folder.'
    ) from None
  if not isinstance(raw, dict):
    raise UnreadableCheckpointError(
      f'{config_path!r} holds a JSON {type(raw).__name__}, not the object gan-jax train '
      'writes: restore it, or train again in a new folder.'
    )
  return ml_collections.ConfigDict(raw)


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
    replicated on the current devices, ready for `gan_jax.core.sampling.sample(gan, state, z)`.

  Raises:
    FileNotFoundError: if workdir, its config.json or the checkpoint is missing.
    UnreadableCheckpointError: config.json is garbled or describes no buildable model, or
      the checkpoint cannot be read.
  """
  config = read_run_config(workdir)
  try:
    gan, state = create_state(config)
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    raise UnreadableCheckpointError(
      f'{os.path.join(workdir, "config.json")!r} does not describe a model gan-jax can build '
      f'({type(e).__name__}: {e}); it is written by gan-jax train: restore it, or train again '
      'in a new folder.'
    ) from None
  state = replicate(state, make_mesh())
  subdir = 'best' if best else 'checkpoints'
  if not os.path.isdir(os.path.join(workdir, subdir)):
    raise FileNotFoundError(
      f'{workdir!r} has no {"best-FID " if best else ""}checkpoint yet; '
      + ('train with evaluation on (eval_every > 0, metrics with fid).' if best else 'train first.')
    )
  keep = 1 if best else config.keep_checkpoints
  with Checkpointer(workdir, keep=keep, subdir=subdir, read_only=True) as ckpt:
    if ckpt.latest_step() is None:
      raise FileNotFoundError(
        f'{workdir!r} has no {"best-FID " if best else ""}checkpoint yet; '
        + (
          'train with evaluation on (eval_every > 0, metrics with fid).' if best else 'train first.'
        )
      )
    try:
      state = ckpt.restore(state, step)
    except (FileNotFoundError, UnreadableCheckpointError):
      raise
    except Exception as err:  # pylint: disable=broad-except  # TensorStore raises plain Exception
      # An explicit step whose files are garbled or cut short: Orbax and TensorStore raise
      # JSON, Unicode, ValueError or plain Exceptions with many-line messages.
      raise UnreadableCheckpointError(
        f'{ckpt._why(step, err)}; it was left in place. Read another step (there are: '
        f'{ckpt.all_steps()}), or restore its files.'
      ) from None
  return config, gan, state
