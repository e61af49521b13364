"""One writer per run folder: an exclusive OS lock on `<workdir>/.gan_jax.lock`.

Every command that writes a run folder (`gan-jax train`, each replica folder of a K-replica
run, a sweep's runs, `gan-jax edit`'s direction cache) holds the lock while it writes. A
second writer finds it held and refuses at once (`WorkdirLockedError`, printed by `gan-jax`
as one line with exit status 2) naming the holder: its PID, host and start time, which the
holder writes into the lock file. Nothing else in the folder is touched by the refused one.

The lock is `fcntl.flock` on the open lock file, so the kernel releases it when the holder's
process ends, however it ends: after a SIGKILL or a power cut there is no stale lock to
remove, only a lock file with the dead holder's details, which the next writer replaces. A
holder that ends normally removes the file (after checking that the path still names the
file it locked, so that two writers can never hold locks on two different files).

Read-only commands (`sample`, `eval`) never take it. In a multi-process run only process 0
takes it (all processes of one run write the same folder together). Re-entrant within a
process: a K-replica `train` holds its folder and each replica folder; the sweep's in-process
runs each take and release their own.

No JAX or other heavy import here.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import functools
import inspect
import json
import os
import socket
import sys
import time
from typing import Any, Callable, Iterator, Sequence

from gan_jax.errors import WorkdirLockedError

LOCK_NAME = '.gan_jax.lock'

try:  # Windows has no fcntl: there the lock is a no-op (documented in `hold`)
  import fcntl
except ImportError:  # pragma: no cover
  fcntl = None

# realpath of a workdir -> [file descriptor, depth] of the locks this process holds.
_held: dict[str, list[int]] = {}


def lock_path(workdir: str) -> str:
  return os.path.join(workdir, LOCK_NAME)


def _read_holder(fd: int) -> dict[str, Any] | None:
  """The holder details in an open lock file, or None (empty: its holder is still writing)."""
  try:
    raw = os.pread(fd, 4096, 0)
    holder = json.loads(raw.decode('utf-8', 'replace'))
  except (OSError, ValueError):
    return None
  return holder if isinstance(holder, dict) else None


def describe(holder: dict[str, Any] | None) -> str:
  """'PID 123 on host h since 2026-12-04 16:50:00 UTC', from a lock file's details."""
  if not holder:
    return 'another process (it has not written its details yet)'
  pid, host, since = holder.get('pid', '?'), holder.get('host', '?'), holder.get('since', '?')
  return f'PID {pid} on host {host} since {since}'


def _refusal(workdir: str, holder: dict[str, Any] | None) -> WorkdirLockedError:
  pid = holder.get('pid') if holder else None
  stop = f' or stop it (kill {pid})' if pid else ''
  error = WorkdirLockedError(
    f'workdir {workdir!r} is being written by another gan-jax process: {describe(holder)} '
    f'(lock {lock_path(workdir)}); wait for it to finish{stop}, or choose another --workdir.'
  )
  error.holder = holder or {}
  return error


def holder(workdir: str) -> dict[str, Any] | None:
  """The details of the process holding `workdir`'s lock, or None if nobody holds it.

  Changes nothing in the folder (the lock file is only opened for reading). A lock held by
  this process counts as not held.
  """
  if fcntl is None or os.path.realpath(workdir) in _held:
    return None
  try:
    fd = os.open(lock_path(workdir), os.O_RDONLY | getattr(os, 'O_CLOEXEC', 0))
  except OSError:
    return None
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
      return _wait_for_details(fd)
    return None
  finally:
    os.close(fd)  # also drops the shared lock, if taken


def busy(workdir: str) -> str | None:
  """The one-line refusal a writer of `workdir` would get now, or None if it is free."""
  details = holder(workdir)
  return None if details is None else str(_refusal(workdir, details))


def _wait_for_details(fd: int, timeout_s: float = 1.0) -> dict[str, Any]:
  """The holder's details; a holder that just took the lock writes them a moment later."""
  deadline = time.monotonic() + timeout_s
  while True:
    details = _read_holder(fd)
    if details is not None or time.monotonic() > deadline:
      return details or {}
    time.sleep(0.02)


def _is_writer() -> bool:
  """Process 0 of a multi-process run (or the only one); asks JAX only if it is loaded,
  without starting a backend."""
  jax = sys.modules.get('jax')
  if jax is None:
    return True
  try:
    from jax._src import distributed as jax_distributed  # pylint: disable=g-import-not-at-top

    return not jax_distributed.global_state.process_id
  except Exception:  # pylint: disable=broad-except  (a private API; fall back to the public one)
    return jax.process_index() == 0


def _acquire(workdir: str) -> int | None:
  """Takes the lock; returns its file descriptor, or None where no lock can be taken (a
  folder that cannot be created or written: the run's own writability check reports it).

  Raises:
    WorkdirLockedError: another process holds it.
  """
  path = lock_path(workdir)
  while True:
    try:
      fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, 'O_CLOEXEC', 0), 0o644)
      writable = True
    except OSError as err:
      if err.errno not in (errno.EACCES, errno.EROFS, errno.EPERM):
        return None
      try:  # a read-only lock file (or folder) can still be locked, and must be honoured
        fd = os.open(path, os.O_RDONLY | getattr(os, 'O_CLOEXEC', 0))
        writable = False
      except OSError:
        return None
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
      details = _wait_for_details(fd)
      os.close(fd)
      if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        raise _refusal(workdir, details) from None
      return None  # a file system without flock: nothing to lock with
    try:  # the holder before us may have removed the file after we opened it: try again
      same = os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
      same = False
    if not same:
      os.close(fd)
      continue
    if writable:
      details = {
        'pid': os.getpid(),
        'host': socket.gethostname(),
        'since': datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M:%S UTC'),
        'command': ' '.join(sys.argv)[:1000],
      }
      try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(details) + '\n').encode(), 0)
      except OSError:
        pass  # a full disk: the lock holds all the same, its details are just missing
    return fd


def _make_folder(workdir: str) -> list[str]:
  """Creates `workdir` (and missing parents); returns the folders created, deepest first."""
  created, folder = [], os.path.abspath(workdir)
  while not os.path.exists(folder):
    created.append(folder)
    parent = os.path.dirname(folder)
    if parent == folder:
      break
    folder = parent
  os.makedirs(workdir, exist_ok=True)
  return created


def _remove_empty(created: list[str]) -> None:
  """Removes the folders `_make_folder` created, deepest first, while they are empty."""
  for folder in created:
    try:
      os.rmdir(folder)
    except OSError:
      return


def _release(workdir: str, fd: int, created: list[str]) -> None:
  path = lock_path(workdir)
  try:
    if os.path.samestat(os.fstat(fd), os.stat(path)):
      os.remove(path)  # while still locked: nobody can have locked the file we remove
  except OSError:
    pass
  os.close(fd)
  _remove_empty(created)  # a run that failed its checks leaves no empty folder behind


@contextlib.contextmanager
def hold(workdirs: str | Sequence[str]) -> Iterator[None]:
  """Holds the lock of each folder in `workdirs` (created if missing) for the `with` block.

  A folder this process already holds is held once more (re-entrant). A folder this block
  created is removed again at the end if it is still empty. Where a lock cannot be taken at
  all (a folder that cannot be created or written, a platform without flock) the block runs
  without it; writing there then fails with the run's own message.

  Raises:
    WorkdirLockedError: another process holds one of them (none is held then).
  """
  if isinstance(workdirs, (str, os.PathLike)):
    workdirs = [workdirs]
  if fcntl is None or not _is_writer():
    yield
    return
  taken: list[tuple[str, str, int | None, list[str]]] = []
  try:
    for workdir in workdirs:
      workdir = os.fspath(workdir)
      key = os.path.realpath(workdir)
      if key in _held:
        _held[key][1] += 1
        taken.append((key, workdir, None, []))
        continue
      try:
        created = _make_folder(workdir)
      except OSError:
        continue  # reported by the run's writability check
      try:
        fd = _acquire(workdir)
      except BaseException:
        _remove_empty(created)
        raise
      if fd is None:
        _remove_empty(created)
        continue
      _held[key] = [fd, 1]
      taken.append((key, workdir, fd, created))
    yield
  finally:
    for key, workdir, fd, created in reversed(taken):
      if fd is None:
        _held[key][1] -= 1
      else:
        del _held[key]
        _release(workdir, fd, created)


def holds_workdir(argument: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
  """Decorates a function that writes the run folder(s) named by its parameter `argument`
  (a path, or a sequence of paths) to run under `hold` of them."""

  def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
      workdirs = signature.bind(*args, **kwargs).arguments[argument]
      with hold(workdirs):
        return fn(*args, **kwargs)

    return wrapper

  return decorate
