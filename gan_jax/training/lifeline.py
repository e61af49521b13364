"""A `gan-jax train` started by `gan-jax sweep --jobs N` stops when the sweep dies.

The sweep starts its children in their own session (so that a terminal's Ctrl-C reaches the
sweep only, which forwards it once), so nothing else would stop them when the sweep itself
is killed (SIGKILL, an OOM kill): they kept training, and a rerun of the sweep started a
second trainer on the same folder. Now the sweep names itself in the child's environment
(`child_env`) and the child, first thing, asks to be sent SIGTERM when its parent dies
(`die_with_parent`): Linux's prctl(PR_SET_PDEATHSIG), or elsewhere a thread that polls the
parent's PID once a second. SIGTERM makes the child stop as on any SIGTERM: it finishes the
step in flight, saves a checkpoint and exits, so a rerun of the sweep resumes it (the run
folder's lock refuses a second trainer while it is still saving).

The death signal is SIGUSR2, turned here into one SIGTERM: Linux sends it each time the
child is reparented, once per exiting thread of a multi-threaded parent, and a second
SIGTERM would kill a stopping run mid-checkpoint (the first only asks it to stop).

Done in the child rather than in a `preexec_fn` of the sweep's `subprocess.Popen`, which is
unsafe in a process with threads. No JAX here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

ENV = 'GAN_JAX_DIE_WITH_PARENT'  # the PID of the parent whose death stops this process
_PR_SET_PDEATHSIG = 1


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
  """The environment for a child that must stop when this process dies."""
  return {**(os.environ if env is None else env), ENV: str(os.getpid())}


def _prctl_pdeathsig(sig: int) -> bool:
  if not sys.platform.startswith('linux'):
    return False
  try:
    libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True)
    return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
  except (OSError, AttributeError):
    return False


_stopping = False


def _stop_once(signum=None, frame=None) -> None:
  """Sends this process one SIGTERM, however often the parent's death is reported."""
  del signum, frame
  global _stopping
  if not _stopping:
    _stopping = True
    os.kill(os.getpid(), signal.SIGTERM)


def _watch(parent: int, interval_s: float) -> None:
  while os.getppid() == parent:
    time.sleep(interval_s)
  _stop_once()


def die_with_parent(interval_s: float = 1.0) -> bool:
  """If the environment names a parent (`ENV`), get SIGTERM when it dies; returns whether
  it did. The variable is removed, so that this process's own children do not inherit it."""
  raw = os.environ.pop(ENV, None)
  if not raw:
    return False
  try:
    parent = int(raw)
  except ValueError:
    return False
  death_signal = getattr(signal, 'SIGUSR2', None)
  main_thread = threading.current_thread() is threading.main_thread()
  if death_signal is not None and main_thread:
    signal.signal(death_signal, _stop_once)
  if not (death_signal is not None and main_thread and _prctl_pdeathsig(death_signal)):
    threading.Thread(target=_watch, args=(parent, interval_s), daemon=True).start()
  if os.getppid() != parent:  # it died before we asked: stop now, nothing is written yet
    _stop_once()
  return True
