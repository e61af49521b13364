"""Stopping a run cleanly on SIGTERM / SIGINT (preemption, Ctrl-C).

No JAX here: `gan-jax sweep` uses it before (or without) importing the training code.
"""

from __future__ import annotations

import signal
import threading
from typing import Any


class StopOnSignal:
  """Turns SIGTERM / SIGINT into a request to stop after the step in flight.

  The loop then checkpoints the current step and returns, so a preempted or interrupted
  run loses nothing and the same command resumes it. A second signal of the same kind
  while stopping gets the default behaviour (e.g. a second Ctrl-C raises
  KeyboardInterrupt). Only installed from the main thread (Python's rule for handlers).
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.received: str | None = None
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    self.received = signal.Signals(signum).name
    signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))

  def __enter__(self) -> StopOnSignal:
    if threading.current_thread() is threading.main_thread():
      for sig in self.SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc: Any) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
